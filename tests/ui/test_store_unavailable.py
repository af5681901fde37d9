"""The dashboard with a run store it cannot open (a PostgreSQL server that does not answer): every
page says so, naming the database without its password, instead of a traceback; and it opens once
the store is there (a failure is not cached)."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("page", ["app.py", "pages/live.py", "pages/studies.py"])
def test_a_page_on_an_unreachable_database_says_so_and_names_it_without_its_password(page, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("MTL_RUNS_DB", f"postgresql://ann:s3cret@127.0.0.1:{free_port()}/runs")
    at = AppTest.from_file(str(ROOT / page), default_timeout=60)
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    (error,) = [e.value for e in at.error]
    assert "The run store cannot be opened" in error and "postgresql://ann:***@127.0.0.1" in error
    assert "s3cret" not in error and "MTL_RUNS_DB" in error


def test_the_dashboard_opens_once_the_database_answers(postgres_url, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path / "runs"))
    good = postgres_url
    monkeypatch.setenv("MTL_RUNS_DB", f"postgresql://mtl@127.0.0.1:{free_port()}/postgres")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    assert at.error
    monkeypatch.setenv("MTL_RUNS_DB", good)
    at.run()
    assert not at.error and not at.exception


def test_home_says_where_the_runs_are_kept(postgres_url, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MTL_RUNS_DIR", str(tmp_path / "runs"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
    at.run()
    captions = " ".join(c.value for c in at.caption)
    assert f"Run store: PostgreSQL {postgres_url}" in captions and "new runs train in this process" in captions
