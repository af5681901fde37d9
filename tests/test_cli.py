import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, runs_dir, check=True):
    p = subprocess.run([sys.executable, "-m", "mtl_core", *args, "--runs-dir", str(runs_dir)],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    if check and p.returncode != 0:
        raise AssertionError(f"exit {p.returncode}\n{p.stdout}\n{p.stderr}")
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    runs = tmp_path_factory.mktemp("cli") / "runs"
    p = cli("train", "--tasks", "classification,detection,segmentation,depth", "--steps", "4", "--batch-size", "8",
            "--image-size", "32", "--train-size", "32", "--weights", "1,1,1,0.5", "--seed", "1", "--device", "cpu",
            runs_dir=runs)
    run_id = p.stdout.split("run id: ")[1].split()[0]
    return runs, run_id, p


def test_train_prints_run_id_and_progress(trained):
    runs, run_id, p = trained
    assert "finished at step 4" in p.stdout
    assert "img/s" in p.stderr and "clas=" in p.stderr  # progress bar with per-task losses


def test_evaluate_prints_every_task_metric(trained):
    runs, run_id, _ = trained
    p = cli("evaluate", run_id, runs_dir=runs)
    metrics = json.loads(p.stdout.strip().splitlines()[-1])
    assert {"classification/accuracy", "detection/map50", "segmentation/miou", "depth/abs_rel"} <= set(metrics)


def test_predict_writes_an_overlay(trained, tmp_path):
    runs, run_id, _ = trained
    from PIL import Image

    img = tmp_path / "in.png"
    Image.new("RGB", (80, 60), (200, 30, 30)).save(img)
    out = tmp_path / "overlay.png"
    p = cli("predict", run_id, str(img), "--out", str(out), runs_dir=runs)
    assert out.exists() and Image.open(out).size == (80, 60)
    assert "classification" in p.stdout


def test_list_shows_registries_and_runs(trained):
    runs, run_id, _ = trained
    p = cli("list", runs_dir=runs)
    assert "hard_sharing" in p.stdout and "static" in p.stdout and "detection" in p.stdout and run_id in p.stdout


def test_bad_flag_values_name_the_field(tmp_path):
    p = cli("train", "--steps", "0", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "optim.steps" in p.stderr
    p = cli("train", "--tasks", "classification,segmentation", "--weights", "1", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "--weights" in p.stderr
    p = cli("evaluate", "../../etc", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "run id" in p.stderr
