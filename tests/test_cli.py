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


@pytest.fixture
def here(capsys):
    """The same command line run in this process by ``mtl_core.cli.main`` (no new interpreter and
    torch import per call: the subprocess ``cli`` above covers ``python -m mtl_core`` itself)."""
    from types import SimpleNamespace

    from mtl_core.cli import main

    def run(*args, runs_dir, check=True):
        capsys.readouterr()
        try:
            code = main([*args, "--runs-dir", str(runs_dir)])
        except SystemExit as e:  # argparse's refusals
            code = e.code
        out, err = capsys.readouterr()
        if check and code != 0:
            raise AssertionError(f"exit {code}\n{out}\n{err}")
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


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


def test_bad_flag_values_name_the_field(tmp_path, here):
    p = here("train", "--steps", "0", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "optim.steps" in p.stderr
    p = here("train", "--tasks", "classification,segmentation", "--weights", "1", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "--weights" in p.stderr
    p = here("evaluate", "../../etc", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "run id" in p.stderr


def test_inspect_writes_one_row_per_sample_and_prints_the_matrices(trained, tmp_path, here):
    import csv

    from mtl_core.inspection.outputs import cache_path
    from mtl_core.store.store import RunStore
    from mtl_core.tasks import TASKS

    runs, run_id, _ = trained
    out = tmp_path / "errors.csv"
    p = here("inspect", run_id, "--out", str(out), runs_dir=runs)
    store = RunStore(runs)
    n = store.get_run(run_id)["config"]["data"]["val_size"]
    rows = list(csv.reader(out.open()))
    header = rows[0]
    assert len(rows) == 1 + n and [int(r[0]) for r in rows[1:]] == list(range(n))
    tasks = ("classification", "detection", "segmentation", "depth")
    assert header[:2] == ["sample", "tasks_failed"]
    assert header[2:] == [f"{t}/{c.name}" for t in tasks for c in TASKS.get(t).display_type().error_columns]
    assert f"split val: {n} samples" in p.stdout
    assert "classification confusion (rows true, columns predicted):" in p.stdout
    assert "detection confusion (boxes; " in p.stdout and "segmentation confusion (pixels; " in p.stdout
    assert "IoU: mean " in p.stdout and "tasks failing together" in p.stdout
    # the outputs are kept beside the checkpoint the run chose, so the dashboard opens the split at once
    ck = store.chosen_checkpoint(run_id)  # the best-on-validation model: what Inspect opens
    assert cache_path(ck["path"], "val").is_file()
    few = here("inspect", run_id, "--out", str(out), "--limit", "5", "--threshold", "0.05", runs_dir=runs)
    assert len(list(csv.reader(out.open()))) == 1 + 5 and "split val: 5 samples" in few.stdout


def test_inspect_errors_say_what_to_do(trained, tmp_path, here):
    runs, run_id, _ = trained
    p = here("inspect", "no-such-run", "--out", str(tmp_path / "e.csv"), runs_dir=runs, check=False)
    assert p.returncode == 2 and "no-such-run" in p.stderr and "list" in p.stderr
    p = here("inspect", run_id, "--split", "train", "--out", str(tmp_path / "e.csv"), runs_dir=runs, check=False)
    assert p.returncode == 2 and "--split val" in p.stderr
    from mtl_core.store.store import RunStore

    store = RunStore(runs)
    fresh = store.create_run(store.get_run(run_id)["config"], "untrained", "cli", 4)
    p = here("inspect", fresh, "--out", str(tmp_path / "e.csv"), runs_dir=runs, check=False)
    assert p.returncode == 2 and "no checkpoint" in p.stderr and fresh in p.stderr
    assert not (tmp_path / "e.csv").exists()


def test_importance_writes_a_row_per_channel_and_prints_who_uses_them(trained, tmp_path, here):
    import csv

    runs, run_id, _ = trained
    out = tmp_path / "importance.csv"
    p = here("importance", run_id, "--batches", "1", "--out", str(out), runs_dir=runs)
    rows = list(csv.DictReader(out.open()))
    tasks = ["classification", "detection", "segmentation", "depth"]
    assert list(rows[0]) == ["layer", "channel", *tasks]
    features = [r for r in rows if r["layer"] == "features"]
    assert [int(r["channel"]) for r in features] == list(range(len(features))) and len(features) > 1
    assert {r["layer"] for r in rows} > {"features", "stage1"}  # the stages too
    for t in tasks:  # every task's importance is a share: it sums to one over a layer's channels
        assert abs(sum(float(r[t]) for r in features) - 1) < 1e-6
    assert "features:" in p.stdout and f"of {len(features)} channels serve all 4 tasks" in p.stdout
    assert "serve detection only" in p.stdout and "serve no task" in p.stdout
    assert f"({len(rows)} rows)" in p.stdout
    p = here("importance", run_id, "--batches", "0", "--out", str(out), runs_dir=runs, check=False)
    assert p.returncode == 2 and "--batches 0" in p.stderr


def test_compress_prune_channels_prints_the_four_model_table(trained, here):
    runs, run_id, _ = trained
    p = here("compress", run_id, "--prune-channels", "0.5", "--finetune-steps", "2", "--eval-limit", "8", runs_dir=runs)
    lines = p.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model "))
    assert "multiply-adds" in lines[header] and "latency b32 (ms)" in lines[header]
    assert "classification/accuracy" in lines[header] and "depth/abs_rel" in lines[header]
    names = [line.split()[0] for line in lines[header + 1:header + 5]]
    assert names == ["original", "channel-pruned", "fine-tuned", "int8"]
    params = [int(line.split()[1]) for line in lines[header + 1:header + 3]]
    assert params[1] < params[0] / 2  # half the channels: well under half the parameters
    assert any(line.startswith("model written to ") and line.endswith("channels-50.pt") for line in lines)
    p = here("compress", run_id, runs_dir=runs, check=False)
    assert p.returncode != 0 and "--prune-channels" in p.stderr


def test_image_size_takes_a_square_or_height_by_width(tmp_path, here):
    from mtl_core.cli import _parser, config_from_args

    def size(flag: str):
        return config_from_args(_parser().parse_args(["train", "--image-size", flag])).data.image_size

    assert size("64") == 64 and size("288x384") == (288, 384) and size("48X80") == (48, 80)
    p = here("train", "--image-size", "wide", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "--image-size" in p.stderr and "288x384" in p.stderr
    p = here("train", "--image-size", "16x80", "--steps", "1", runs_dir=tmp_path, check=False)
    assert p.returncode == 2 and "data.image_size" in p.stderr and "height" in p.stderr


def test_predict_on_a_photo_of_another_shape_writes_the_overlay_at_its_size(tmp_path, here):
    from PIL import Image

    runs = tmp_path / "runs"
    config = tmp_path / "letterbox.json"
    config.write_text(json.dumps({"data": {"resize": "letterbox", "val_size": 8, "test_size": 8}}))
    p = here("train", "--config", str(config), "--tasks", "detection,segmentation,depth", "--steps", "2",
             "--batch-size", "4", "--image-size", "32x48", "--train-size", "8", "--device", "cpu", "--quiet",
             "--eval-every", "100", "--checkpoint-every", "100", runs_dir=runs)
    run_id = p.stdout.split("run id: ")[1].split()[0]
    photo = tmp_path / "tall.png"
    Image.new("RGB", (50, 120), (30, 200, 30)).save(photo)  # width x height: taller than the model's 48 x 32
    out = tmp_path / "overlay.png"
    p = here("predict", run_id, str(photo), "--out", str(out), runs_dir=runs)
    assert Image.open(out).size == (50, 120)
    assert "50 px wide, 120 high, as the image (the model sees 48 x 32, fitted by letterbox" in p.stdout


def test_list_finds_runs_by_words_status_and_tag(tmp_path, capsys):
    from mtl_core.cli import main
    from mtl_core.store.store import RunStore

    store = RunStore(tmp_path)
    keep = store.create_run({"tasks": ["depth"], "weighting": {"method": "cagrad"}}, "depth with cagrad",
                            status="finished")
    store.create_run({"tasks": ["segmentation"], "weighting": {"method": "ew"}}, "segmentation alone", status="failed")
    store.set_labels(keep, ["paper-figure"])
    assert main(["list", "--runs-dir", str(tmp_path), "--search", "cagrad"]) == 0
    out = capsys.readouterr().out
    assert "runs (1 of 1, newest first):" in out and keep in out and "[paper-figure]" in out
    assert "segmentation alone" not in out
    assert main(["list", "--runs-dir", str(tmp_path), "--status", "failed"]) == 0
    out = capsys.readouterr().out
    assert "segmentation alone" in out and keep not in out
    assert main(["list", "--runs-dir", str(tmp_path), "--tag", "paper-figure", "--limit", "5"]) == 0
    assert keep in capsys.readouterr().out
