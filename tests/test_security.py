"""Security settings a deployment relies on: localhost by default, bounded uploads, no pickle,
no code built from user text."""
import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_server_listens_on_localhost_with_an_upload_limit():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert cfg["server"]["address"] in ("localhost", "127.0.0.1")
    assert 0 < cfg["server"]["maxUploadSize"] <= 50


def test_readme_says_how_to_expose_it_safely():
    text = (ROOT / "README.md").read_text()
    assert "ssh -L" in text and "reverse proxy" in text


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            yield node


def test_no_eval_exec_or_unsafe_torch_load_anywhere():
    for path in [*ROOT.glob("mtl_core/**/*.py"), *ROOT.glob("pages/*.py"), *ROOT.glob("ui/*.py"), ROOT / "app.py"]:
        for call in _calls(path):
            builtin = call.func.id if isinstance(call.func, ast.Name) else None
            assert builtin not in ("eval", "exec", "compile"), f"{path}: {builtin}() is never allowed"
            name = builtin or getattr(call.func, "attr", None)
            if name == "load" and getattr(getattr(call.func, "value", None), "id", None) == "torch":
                kw = {k.arg: k.value for k in call.keywords}
                assert "weights_only" in kw and getattr(kw["weights_only"], "value", None) is True, \
                    f"{path}:{call.lineno}: torch.load without weights_only=True"
            if name in ("execute", "executemany") and call.args:
                sql = call.args[0]
                assert not isinstance(sql, ast.JoinedStr), f"{path}:{call.lineno}: SQL built with an f-string"
