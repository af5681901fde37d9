"""``python -m mtl_core playground``: the table, the CSV of every step, and errors that name the field."""
from __future__ import annotations

import csv

from mtl_core.cli import main


def test_the_cli_writes_every_step_and_names_the_method_nearest_the_optimum(tmp_path, capsys):
    out = tmp_path / "paths.csv"
    code = main(["playground", "--problem", "three_bowls", "--methods", "ew,mgda", "--steps", "300",
                 "--starts=-9,-2;8,8", "--out", str(out)])
    text = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and text[-1] == "nearest the average optimum: ew"
    assert any(line.startswith("mgda") and "(-4, -3)" in line and " on " in line for line in text)
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * 2 * 301 and rows[0]["method"] == "ew" and rows[0]["x"] == "-9"
    assert {"loss_A", "weight_C", "update_x"} <= set(rows[0]) and rows[1]["weight_A"] == "1"


def test_a_typed_problem_and_a_bad_formula(tmp_path, capsys):
    assert main(["playground", "--expr", "(x-1)**2 + y**2", "--expr", "(x+1)**2 + y**2", "--methods", "mgda",
                 "--steps", "50"]) == 0
    assert main(["playground", "--expr", "x**2", "--expr", "open('f')"]) == 2
    err = capsys.readouterr().err
    assert "playground.expressions[1]" in err and "'open'" in err
    assert main(["playground", "--methods", "ew,nope"]) == 2
    assert "nope" in capsys.readouterr().err
