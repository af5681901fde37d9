"""The numbers a protocol preset publishes, shown beside a run's (mtl_core.protocols.benchmarks)."""
from __future__ import annotations

import streamlit as st

from mtl_core.errors import MTLError
from mtl_core.protocols.benchmarks import beside, load_preset, published_delta_m


def published_table(name: str, values: dict, method: str) -> None:
    """The run's metrics beside the numbers its protocol preset publishes, each with its citation."""
    try:
        preset = load_preset(name)
    except MTLError as e:
        st.caption(f"Protocol preset {name!r} cannot be read here: {e}")
        return
    st.markdown(f"**Beside the published numbers** · {preset.title}")
    if not preset.published:
        st.caption(f"This preset carries no published numbers: {preset.missing or 'no source given'}")
        return
    table = []
    for row in beside(values, preset):
        arrow = "↑" if preset.higher_is_better.get(row.key, True) else "↓"
        table.append({"metric": f"{row.key} {arrow}", "ours": row.ours,
                      **{f"published · {label}": v for label, v in row.published.items()}})
    st.dataframe(table, hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4f")
                                                        for c in table[0] if c != "metric"})
    dm = published_delta_m(values, preset)
    if dm is not None:
        st.markdown(f"Δm against the published single-task numbers: **{dm:+.2f}%** "
                    f"({'every metric counts once' if preset.delta_m == 'per_metric' else 'each task counts once'}, "
                    "as the source computes it)")
    mine = preset.row(method)
    if mine is not None:
        st.caption(f"The published row for this run's method is **{mine.label}**.")
    for r in preset.published:
        st.caption(f"{r.label}: {r.citation} — {r.source}" + (f" ({r.note})" if r.note else ""))
    if preset.missing:
        st.caption(f"Not published here: {preset.missing}")
