"""Every page's first statement after its imports is ``through_app()`` (ui/entry.py): a link to it
opened first on a fresh server still runs through app.py's navigation. The browser test of the
playground opens such a link and sees the app's navigation."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "pages").glob("*.py"))


def test_there_are_pages():
    assert len(PAGES) >= 10


@pytest.mark.parametrize("path", PAGES, ids=lambda p: p.name)
def test_a_page_starts_by_running_through_the_app(path):
    body = ast.parse(path.read_text()).body
    first = next(node for node in body if not isinstance(node, (ast.Import, ast.ImportFrom))
                 and not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)))  # the docstring
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Call), (path.name, ast.dump(first)[:80])
    assert getattr(first.value.func, "id", None) == "through_app", path.name
