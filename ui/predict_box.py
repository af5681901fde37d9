"""Predict, then reveal: the box that asks a student to commit to an answer before the result shows,
then puts the answer beside the prediction. In shared mode the owner also sees the class's tally."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import streamlit as st

from ui.access import OWNER, shared_mode
from ui.roles import browser_id, class_predictions, role


def predict_box(question: str, prompt: str, options: Sequence[str], answer: Sequence[str] | None,
                format_func: Callable[[str], str] = str, key: str = "predict") -> bool:
    """Ask ``prompt`` (one of ``options``) under the key ``question``; ``answer``: the right option(s),
    None while unknown. Returns whether this browser has made its prediction (show the result)."""
    book, me = class_predictions(), browser_id()
    mine = book.mine(question, me)
    with st.container(border=True):
        if mine is None or mine not in options:
            st.markdown(f"**Predict first.** {prompt}")
            pick = st.radio("Your prediction", list(options), format_func=format_func, index=None, horizontal=True,
                            key=f"{key}_radio_{question}", label_visibility="collapsed")
            if st.button("Lock in my prediction, then show me", key=f"{key}_lock_{question}", type="primary",
                         disabled=pick is None, icon=":material/lock:"):
                book.predict(question, me, pick)
                st.rerun()
            locked = False
        else:
            locked = True
            said = f"You predicted **{format_func(mine)}**."
            if answer is None:
                st.markdown(f"{said} The answer shows once the paths are computed.")
            elif mine in answer:
                st.success(f"{said} Right: {' and '.join(format_func(a) for a in answer)}.", icon=":material/check:")
            else:
                st.warning(f"{said} The answer: **{' and '.join(format_func(a) for a in answer)}**. "
                           "Look at the paths to see why.", icon=":material/lightbulb:")
            if st.button("Predict again", key=f"{key}_again_{question}", icon=":material/undo:"):
                book.forget(question, me)
                st.rerun()
        if shared_mode() and role() == OWNER:
            tally = book.tally(question)
            total = sum(tally.values())
            if total:
                parts = [f"{format_func(o)}: {tally.get(o, 0)}" + (" ✓" if answer and o in answer else "")
                         for o in options]
                st.caption(f"The class predicted ({total} browser{'s' if total != 1 else ''}): " + " · ".join(parts))
            else:
                st.caption("No one in the class has predicted yet.")
    return locked
