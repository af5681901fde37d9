"""Several threads hammer one RunManager: no deadlock, no lost status, every run ends consistent."""
import random
import threading
import time

import pytest

from mtl_core.config import OptimConfig
from mtl_core.errors import ConfigError
from mtl_core.runs.manager import RunManager
from mtl_core.store.status import TERMINAL


@pytest.mark.usefixtures("store_backend")  # many threads' transactions on SQLite's lock and on PostgreSQL's rows
def test_200_mixed_operations_from_several_threads(tmp_path, tiny):
    m = RunManager(tmp_path / "runs", max_concurrent=2)
    cfg = tiny(optim=OptimConfig(batch_size=8, steps=12, warmup_steps=0), eval_every=1000, checkpoint_every=0,
               gradstats_every=0)
    ids: list[str] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(40):
            op = rng.choice(["start", "pause", "resume", "stop", "retune", "retune"])
            try:
                if op == "start" or not ids:
                    rid = m.start(cfg)
                    with lock:
                        ids.append(rid)
                    continue
                with lock:
                    rid = rng.choice(ids)
                if op == "pause":
                    m.pause(rid)
                elif op == "resume":
                    m.resume(rid)
                elif op == "stop":
                    m.stop(rid)
                else:
                    m.set_weights(rid, {"classification": rng.uniform(0.1, 2)})
            except ConfigError:
                pass  # acting on a run that already ended is refused politely
            except BaseException as e:  # anything else is a bug
                errors.append(e)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "deadlock: a worker never finished"
    assert not errors, errors[:3]
    # unpause everything and let it drain
    for rid in ids:
        try:
            m.resume(rid)
        except ConfigError:
            pass
    deadline = time.time() + 240
    for rid in ids:
        m.wait(rid, max(1.0, deadline - time.time()))
    statuses = {rid: m.store.get_run(rid)["status"] for rid in ids}
    assert all(s in TERMINAL for s in statuses.values()), statuses
    assert set(statuses.values()) <= {"finished", "stopped"}
    assert len(ids) == len(m.store.list_runs())  # no run lost, none duplicated
    m.shutdown()
