"""ruff keeps the style uniform (configuration in pyproject.toml)."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing():
    ruff = shutil.which("ruff")
    cmd = [ruff] if ruff else [sys.executable, "-m", "ruff"]
    try:
        p = subprocess.run([*cmd, "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True,
                           text=True, timeout=120)
    except FileNotFoundError:
        pytest.fail("ruff is not installed: pip install -r requirements.txt")
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-1000:]
