"""Pages are UI only and the core runs headless: pages/ and ui/ never import torch; mtl_core never
imports Streamlit or plotly (checked on the source with ast, so nothing is executed)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(source: str) -> set[str]:
    """Top-level package names a module imports: ``import x.y``, ``from x import y`` and
    ``importlib.import_module("x")`` / ``__import__("x")`` with a literal name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
            if name in ("import_module", "__import__"):
                found.add(node.args[0].value.split(".")[0])
    return found


def offenders(files: list[Path], banned: set[str]) -> dict[str, set[str]]:
    out = {}
    for f in files:
        bad = imported_modules(f.read_text(encoding="utf-8")) & banned
        if bad:
            out[str(f.relative_to(ROOT))] = bad
    return out


@pytest.mark.parametrize("source, expected", [
    ("import torch", {"torch"}),
    ("import torch.nn.functional as F", {"torch"}),
    ("from torch import nn", {"torch"}),
    ("from torchvision.utils import draw_bounding_boxes", {"torchvision"}),
    ("def f():\n    import streamlit as st\n", {"streamlit"}),
    ("import importlib\nimportlib.import_module('plotly.express')", {"importlib", "plotly"}),
    ("from . import sibling\nfrom .torch import x", set()),
    ("x = 'import torch'", set()),
])
def test_the_checker_sees_every_form_of_import(source, expected):
    assert imported_modules(source) == expected


def test_pages_and_ui_never_import_torch():
    files = [ROOT / "app.py", *sorted((ROOT / "pages").rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]
    assert len(files) >= 5, "the dashboard's pages and ui modules were not found"
    assert offenders(files, {"torch", "torchvision"}) == {}


def test_core_never_imports_streamlit_or_plotly():
    files = sorted((ROOT / "mtl_core").rglob("*.py"))
    assert len(files) >= 10, "mtl_core's modules were not found"
    assert offenders(files, {"streamlit", "plotly"}) == {}
