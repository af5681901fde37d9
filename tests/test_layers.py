"""The house in layers: every module of mtl_core, ui and pages sits on one floor of the README's
layer table and imports only from its own floor or below, and no two modules (nor two parts of
one floor) import each other in a circle. Every import counts: at the top of a file, inside a
function, or through ``importlib.import_module`` with a literal name. Read with ``ast``: nothing
is executed. The table is the README's, so the map a newcomer reads is the one this test checks."""
from __future__ import annotations

import ast
import re
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("mtl_core", "ui", "pages")


def read_layers(readme: str) -> list[tuple[str, list[str]]]:
    """The floors, bottom first, as ``(name, [unit, ...])``: a unit is a dotted module or package
    name. The table sits between ``<!-- layers -->`` and ``<!-- /layers -->``; each row is
    ``| floor | `unit`, `unit` | what it holds |``."""
    m = re.search(r"<!-- layers -->(.*?)<!-- /layers -->", readme, re.S)
    assert m, "README.md has no layer table between <!-- layers --> and <!-- /layers -->"
    floors = []
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 2 or set(cells[0]) <= set("-: ") or cells[0] == "floor":
            continue
        units = re.findall(r"`([\w.]+)`", cells[1])
        if units:
            floors.append((cells[0], units))
    return floors


def modules_under(root: Path) -> dict[str, tuple[Path, bool]]:
    """Every module of the dashboard and engine: dotted name -> (file, is a package's __init__)."""
    found = {}
    files = [p for pkg in PACKAGES for p in (root / pkg).rglob("*.py")] + [root / "app.py"]
    for p in files:
        if not p.exists():
            continue
        parts = list(p.relative_to(root).with_suffix("").parts)
        is_init = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_init else parts)] = (p, is_init)
    return found


def imports_of(name: str, path: Path, is_init: bool, modules: dict) -> set[str]:
    """The repository's modules that ``name`` imports, wherever the import stands."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    targets: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_init else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from mod import name`` the module
            targets += [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__"):
                targets.append(node.args[0].value)
    found = set()
    for t in targets:
        while t and t not in modules and "." in t:
            t = t.rsplit(".", 1)[0]
        if t in modules and t != name:
            found.add(t)
    return found


def unit_of(module: str, units: list[str]) -> str | None:
    """The longest table unit that is the module or a package above it."""
    best = None
    for u in units:
        if (module == u or module.startswith(u + ".")) and (best is None or len(u) > len(best)):
            best = u
    return best


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def check(root: Path, readme: str) -> list[str]:
    """Every way the tree breaks the table: a module on no floor, a unit that does not exist, an
    import from a floor above, a circle of modules, a circle of a floor's parts."""
    floors = read_layers(readme)
    level = {u: i for i, (_, units) in enumerate(floors) for u in units}
    units = list(level)
    modules = modules_under(root)
    problems = [f"{u} is in the layer table but not in the tree" for u in units
                if not any(m == u or m.startswith(u + ".") for m in modules)]
    edges = {m: imports_of(m, p, init, modules) for m, (p, init) in modules.items()}
    unit_edges: dict[str, set[str]] = defaultdict(set)
    for m in sorted(modules):
        u = unit_of(m, units)
        if u is None:
            problems.append(f"{m} is on no floor of the layer table")
            continue
        for t in sorted(edges[m]):
            v = unit_of(t, units)
            if v is None:
                continue
            if level[v] > level[u]:
                problems.append(f"{m} ({floors[level[u]][0]}) imports {t} from a floor above ({floors[level[v]][0]})")
            elif v != u:
                unit_edges[u].add(v)
    problems += [f"modules import each other in a circle: {' -> '.join(c)}" for c in cycles(edges)]
    problems += [f"parts of one floor import each other in a circle: {' -> '.join(c)}" for c in cycles(unit_edges)]
    return problems


def test_every_import_keeps_to_the_layer_table():
    assert check(ROOT, (ROOT / "README.md").read_text(encoding="utf-8")) == []


def test_the_table_names_every_package_of_the_engine_once():
    floors = read_layers((ROOT / "README.md").read_text(encoding="utf-8"))
    named = [u for _, units in floors for u in units]
    assert len(named) == len(set(named)), "a unit is on two floors"
    on_disk = {f"mtl_core.{p.name}" for p in (ROOT / "mtl_core").iterdir() if (p / "__init__.py").exists()}
    on_disk |= {f"mtl_core.{p.stem}" for p in (ROOT / "mtl_core").glob("*.py") if p.stem != "__init__"}
    assert on_disk == {u for u in named if u.startswith("mtl_core.")}


TABLE = """<!-- layers -->
| floor | units | holds |
| --- | --- | --- |
| base | `pkg.base` | |
| top | `pkg.top`, `pkg.side` | |
<!-- /layers -->"""


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    for rel, text in {"mtl_core/pkg/__init__.py": "", **files}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    return tmp_path


@pytest.mark.parametrize("files, says", [
    ({"mtl_core/pkg/base.py": "def f():\n    from mtl_core.pkg.top import x\n", "mtl_core/pkg/top.py": ""},
     "mtl_core.pkg.base (base) imports mtl_core.pkg.top from a floor above (top)"),
    ({"mtl_core/pkg/base.py": "import importlib\nimportlib.import_module('mtl_core.pkg.top')\n",
      "mtl_core/pkg/top.py": ""}, "from a floor above"),
    ({"mtl_core/pkg/base.py": "", "mtl_core/pkg/top.py": "from mtl_core.pkg.side import y\n",
      "mtl_core/pkg/side.py": "def g():\n    from . import top\n"},
     "modules import each other in a circle: mtl_core.pkg.side -> mtl_core.pkg.top"),
    ({"mtl_core/pkg/base.py": "", "mtl_core/pkg/top.py": "", "mtl_core/pkg/extra.py": ""},
     "mtl_core.pkg.extra is on no floor"),
    ({"mtl_core/pkg/top.py": ""}, "pkg.base is in the layer table but not in the tree"),
])
def test_the_checker_sees_an_upward_import_a_circle_and_a_module_off_the_map(tmp_path, files, says):
    table = TABLE.replace("pkg.", "mtl_core.pkg.")
    problems = check(_tree(tmp_path, files), table)
    assert any(says in p for p in problems), problems


def test_a_tree_that_keeps_the_table_passes(tmp_path):
    root = _tree(tmp_path, {"mtl_core/pkg/base.py": "", "mtl_core/pkg/top.py": "from mtl_core.pkg import base\n",
                            "mtl_core/pkg/side.py": "from mtl_core.pkg.top import x\n"})
    table = TABLE.replace("pkg.", "mtl_core.pkg.").replace("`mtl_core.pkg.base`", "`mtl_core.pkg.base`, `mtl_core.pkg`")
    assert check(root, table) == []


def test_what_is_inside_names_every_folder_of_the_repository():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## What is inside", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `([\w.]+)/?`", section, re.M)) | set(re.findall(r"`([\w.]+)/`", section))
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    folders = {line.split("/")[0] for line in tracked.splitlines() if "/" in line and not line.startswith(".")}
    assert folders <= named, f"folders the README's 'What is inside' leaves out: {sorted(folders - named)}"
