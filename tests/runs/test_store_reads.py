"""Incremental reads: a live poll costs the same at 200,000 rows as at 2,000."""
import statistics
import time

import pytest

from mtl_core.store.store import RunStore
from ui.metrics import MetricCache

BIG = 200_000


def run_rows(n: int, first_step: int = 1) -> list[tuple]:
    """``n`` rows shaped as a trainer writes them: 8 training rows per step, a validation pass
    every 100 steps."""
    rows, step = [], first_step - 1
    while len(rows) < n:
        step += 1
        for t in ("classification", "detection", "segmentation"):
            rows += [(step, "train", f"loss/{t}", 1.0 / step, 0.0), (step, "train", f"weight/{t}", 1.0, 0.0)]
        rows += [(step, "train", "loss/total", 3.0 / step, 0.0), (step, "train", "lr", 1e-3, 0.0)]
        if step % 100 == 0:
            rows += [(step, "val", f"{t}/score", 0.5, 0.0) for t in ("classification", "detection", "segmentation")]
    return rows[:n]


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    """A store with a 200,000-row run written in flushes beside another run's rows."""
    store = RunStore(tmp_path_factory.mktemp("runs"))
    rid, other = store.create_run({}, "big", status="running"), store.create_run({}, "other", status="running")
    rows = run_rows(BIG)
    for i in range(0, BIG, 20_000):
        store.log_metrics(rid, rows[i:i + 20_000])
        store.log_metrics(other, run_rows(500))
    return store, rid, rows[-1][0]


class Traced:
    """The SQL a store runs (with its parameters bound), while the block runs."""

    def __init__(self, store: RunStore):
        self.conn, self.statements = store._conn(), []

    def __enter__(self):
        self.conn.set_trace_callback(self.statements.append)
        return self

    def __exit__(self, *exc):
        self.conn.set_trace_callback(None)


def plan(store: RunStore, sql: str) -> list[str]:
    return [row[-1] for row in store._conn().execute("EXPLAIN QUERY PLAN " + sql)]


def reads_of(store: RunStore, call) -> list[str]:
    with Traced(store) as t:
        call()
    return [s for s in t.statements if s.lstrip().upper().startswith("SELECT")]


def test_the_poll_is_an_index_range_scan_with_no_sort_and_no_count(big):
    store, rid, _ = big
    cache = MetricCache(rid)
    cache.update(store)
    selects = reads_of(store, lambda: cache.update(store))
    assert selects and not any("COUNT(" in s.upper() for s in selects)
    for sql in selects:
        steps = plan(store, sql)
        assert all(s.startswith("SEARCH") and "INDEX" in s for s in steps), (sql, steps)
        assert not any("TEMP B-TREE" in s or s.startswith("SCAN") for s in steps), (sql, steps)


@pytest.mark.parametrize("kwargs", [{}, {"since_step": 100}, {"split": "train", "key": "loss/total"}])
def test_reading_a_run_or_one_series_in_step_order_needs_no_sort(big, kwargs):
    store, rid, _ = big
    (sql,) = reads_of(store, lambda: store.metrics(rid, **kwargs))
    steps = plan(store, sql)
    assert not any("TEMP B-TREE" in s or s.startswith("SCAN") for s in steps), steps
    rows = store.metrics(rid, **kwargs)
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_a_poll_at_200000_rows_reads_only_the_new_rows(big):
    store, rid, last_step = big
    cache = MetricCache(rid)
    assert cache.update(store) == BIG and cache.last_step == last_step
    returned = []
    real = store.metrics_after

    def spy(*args, **kwargs):
        rows, last = real(*args, **kwargs)
        returned.append(len(rows))
        return rows, last

    store.metrics_after = spy
    try:
        store.log_metrics(rid, [(last_step + 1, "train", "loss/total", 0.1, 0.0), (last_step, "val", "x/y", 0.2, 0.0)])
        assert cache.update(store) == 2 and returned == [2]
        assert cache.update(store) == 0 and returned == [2, 0]
    finally:
        del store.metrics_after
    assert cache.get("train", "loss/total")[0][-1] == last_step + 1 and cache.count == BIG + 2


def test_a_warm_poll_costs_about_the_same_at_200000_rows_as_at_2000(big, tmp_path):
    small = RunStore(tmp_path)
    srid = small.create_run({}, "small", status="running")
    small.log_metrics(srid, run_rows(2_000))
    store, rid, _ = big

    def poll_ms(s, r):
        cache = MetricCache(r)
        cache.update(s)
        times = []
        for _ in range(50):
            t0 = time.perf_counter()
            cache.update(s)
            times.append(time.perf_counter() - t0)
        return statistics.median(times) * 1e3

    small_ms, big_ms = poll_ms(small, srid), poll_ms(store, rid)
    # a poll with nothing new is two key lookups and an empty index range: well under a millisecond
    # on an idle machine; the bound leaves room for a loaded one
    assert big_ms < 5 and big_ms < 5 * small_ms + 1, (small_ms, big_ms)


def test_pending_commands_is_cheap_enough_to_call_every_step(big):
    store, rid, _ = big
    for kind in ("pause", "resume", "stop"):
        store.mark_command(store.send_command(rid, kind), "applied", step=1)
    wanted = store.send_command(rid, "weights", {"detection": 2.0})
    (sql,) = reads_of(store, lambda: store.pending_commands(rid))
    steps = plan(store, sql)
    assert steps and all(s.startswith("SEARCH") and "INDEX" in s for s in steps), steps
    assert not any("TEMP B-TREE" in s for s in steps), steps
    times = []
    for _ in range(200):
        t0 = time.perf_counter()
        pending = store.pending_commands(rid)
        times.append(time.perf_counter() - t0)
    assert [c["id"] for c in pending] == [wanted]
    assert statistics.median(times) < 1e-3  # typically ~20 µs


@pytest.mark.usefixtures("store_backend")
def test_truncating_bumps_history_and_a_cache_then_matches_a_fresh_one(tmp_path):
    store = RunStore(tmp_path)
    rid = store.create_run({}, "resumed", status="running")
    store.log_metrics(rid, run_rows(800))
    cache = MetricCache(rid)
    cache.update(store)
    assert store.metrics_history(rid) == 0 and cache.last_step == 100
    store.truncate_metrics(rid, 60)  # a resume from the checkpoint at step 60
    assert store.metrics_history(rid) == 1
    store.log_metrics(rid, [(s, "train", "loss/classification", 9.0, 0.0) for s in range(61, 71)])
    cache.update(store)
    fresh = MetricCache(rid)
    fresh.update(store)
    assert cache.series == fresh.series and cache.count == fresh.count and cache.last_step == fresh.last_step == 70
    steps, values = cache.get("train", "loss/classification")
    assert steps.tolist() == list(range(1, 71)) and values[-1] == 9.0
    assert cache.get("train", "loss/total")[0][-1] == 60  # nothing past the checkpoint survives
    store.truncate_metrics(rid, 100)  # nothing past step 100 to remove: readers keep their rows
    assert store.metrics_history(rid) == 1


@pytest.mark.usefixtures("store_backend")
def test_reading_after_a_row_id_in_pages_gives_every_row_once_in_the_order_written(tmp_path):
    store = RunStore(tmp_path)
    rid, other = store.create_run({}, "r"), store.create_run({}, "other")
    written = run_rows(250)
    for i in range(0, 250, 50):
        store.log_metrics(rid, written[i:i + 50])
        store.log_metrics(other, run_rows(7))
    got, last = [], 0
    while True:
        rows, after = store.metrics_after(rid, last, limit=40)
        if not rows:
            assert after == last  # nothing new: the same id back
            break
        assert len(rows) <= 40 and after > last
        got, last = got + rows, after
    assert got == written


def test_on_postgresql_a_poll_is_an_index_range_scan_with_no_sort(postgres_url, tmp_path):
    """The same poll on the server: its plan reads this run's new rows from an index, in order."""
    store = RunStore(tmp_path)
    rid, other = store.create_run({}, "big", status="running"), store.create_run({}, "other", status="running")
    for i in range(0, 60_000, 20_000):
        store.log_metrics(rid, run_rows(20_000, first_step=1 + i // 8))
        store.log_metrics(other, run_rows(2_000))
    store.query("ANALYZE metrics")
    rows, last = store.metrics_after(rid, 0)
    assert len(rows) == 60_000
    sql = "SELECT rowid, step, split, key, value, wall FROM metrics WHERE run_id=? AND rowid>? ORDER BY rowid"
    explained = " ".join(r[0] for r in store.query("EXPLAIN " + sql, (rid, last - 10)))
    assert "Index" in explained and "Sort" not in explained and "Seq Scan" not in explained, explained
    assert len(store.metrics_after(rid, last - 10)[0]) == 10
