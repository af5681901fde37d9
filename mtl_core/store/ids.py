"""Run ids and the runs directory: what may become a path under it."""
from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from mtl_core.errors import ConfigError

RUNS_DIR_ENV = "MTL_RUNS_DIR"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")



def default_runs_dir() -> Path:
    return Path(os.environ.get(RUNS_DIR_ENV, "runs"))


def check_run_id(run_id: str) -> str:
    """A run id is letters, digits, '-' and '_' only: never a path outside the runs directory."""
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id):
        raise ConfigError("run_id", f"{str(run_id)[:80]!r} is not a run id (letters, digits, '-' and '_', at most 64)")
    return run_id


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)
