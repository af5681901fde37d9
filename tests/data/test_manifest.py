"""The label table (manifest dataset): every column type, the kinds it infers and refuses, every
data problem named with its file and row, missing labels masked, and the boxes and masks of a
letterboxed photo where a hand computation puts them."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from mtl_core.config import ExperimentConfig, TaskSpec
from mtl_core.data import build_dataset, collate
from mtl_core.data.check import check_data
from mtl_core.data.manifest import DataProblemsError
from mtl_core.data.table import infer_kind, load_table
from mtl_core.errors import ConfigError
from mtl_core.inference.samples import dataset_sample
from mtl_core.store.store import RunStore
from mtl_core.tasks import build_tasks
from mtl_core.training.loop import Trainer
from mtl_core.training.validation import check
from tests.label_tables import every_kind_table, mask_file, write_table


def config(path: Path, tasks: list[str], **data) -> ExperimentConfig:
    return ExperimentConfig.from_dict({"tasks": tasks, "data": {"dataset": "manifest", "root": str(path),
                                                                 "image_size": [32, 48], **data}})


def _split(i: int) -> str:
    return ("train", "train", "val", "test")[i % 4]


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return every_kind_table(tmp_path)


def test_every_column_type_gets_its_kind_and_its_targets(table):
    t = load_table(table)
    kinds = {c: s.kind for c, s in t.specs.items()}
    assert kinds == {"animal": "classification", "digit": "classification", "smiling": "binary", "age": "regression",
                     "tags": "multilabel", "mask": "segmentation", "depth": "depth", "surface": "normals",
                     "boxes": "detection", "people": "count"}
    assert t.specs["animal"].classes == ("bird", "cat", "dog")
    assert t.specs["digit"].classes == ("0", "1", "2")  # indices: "2" is class 2
    assert t.specs["tags"].classes == ("bird", "cat", "dog")
    assert t.specs["mask"].classes == ("class 1", "class 2")
    assert t.specs["boxes"].classes == ("car", "person")
    ds = build_dataset(config(table, list(kinds)), "train")
    image, targets = ds[1]  # row 1: dog, digit 1, smiling -1, age 21.5, "dog", mask value 2, boxes person
    assert image.shape == (3, 32, 48)
    assert int(targets["animal"]) == 2 and int(targets["digit"]) == 1 and int(targets["smiling"]) == 0
    assert float(targets["age"]) == pytest.approx(21.5)
    assert targets["tags"].tolist() == [0.0, 0.0, 1.0]
    assert set(targets["mask"].unique().tolist()) <= {0, 2, 255} and (targets["mask"] == 2).any()
    assert targets["depth"].shape == (1, 32, 48) and float(targets["depth"].max()) == pytest.approx(3.0)
    # normals letterboxed like a mask: 40 x 30 -> 48 x 36 cut to 32 rows; the padding and the top rows unlabelled
    surface = targets["surface"]
    assert surface.shape == (3, 32, 48) and surface[:, 31, 30].tolist() == pytest.approx([0.0, 0.0, 1.0])
    assert surface[:, 31, 5].tolist() == pytest.approx([-0.6, 0.0, 0.8]) and not surface[:, 0].any()
    assert targets["boxes"]["labels"].tolist() == [1]
    images, batch = collate([ds[i] for i in range(len(ds))])
    assert batch["boxes"]["boxes"].shape == (len(ds), 1, 4)


def test_json_lines_reads_like_csv(tmp_path):
    rows = [{"image": f"a/{i}.png", "label": ("x", "y")[i % 2], "score": i * 0.5} for i in range(6)]
    t = load_table(write_table(tmp_path, rows, "labels.jsonl"))
    assert t.specs["label"].kind == "classification" and t.specs["score"].kind == "regression"
    assert [r.line for r in t.rows] == [1, 2, 3, 4, 5, 6]


def test_regression_statistics_come_from_the_training_rows_only(tmp_path):
    rows = [{"image": f"i/{k}.png", "split": s, "v": v} for k, (s, v) in
            enumerate([("train", 1.5), ("train", 3.5), ("val", 100.5), ("test", 200.5)])]
    spec = load_table(write_table(tmp_path, rows)).specs["v"]
    assert spec.options["mean"] == pytest.approx(2.5) and spec.options["std"] == pytest.approx(1.0)


@pytest.mark.parametrize("values, kind", [
    (["0", "1", "1"], "binary"), (["-1", "1"], "binary"), (["yes", "no"], "binary"), (["3", "7", "1"], "classification"),
    (["0.5", "2"], "regression"), (["a|b", "c"], "multilabel"), (['[[1, 2, 3, 4, "x"]]'], "detection"),
    (["d/1.npy"], "depth"), (["n/1.npy"], "normals")])
def test_a_column_whose_cells_say_their_kind_is_inferred(tmp_path, values, kind):
    for folder, shape in (("d", (4, 5)), ("n", (4, 5, 3))):  # a depth map and a normal map
        (tmp_path / folder).mkdir(exist_ok=True)
        np.save(tmp_path / folder / "1.npy", np.zeros(shape, np.float32))
    assert infer_kind("c", values, tmp_path)[0] == kind


def test_a_normal_map_as_an_rgb_image_is_read_as_unit_vectors_black_unlabelled(tmp_path):
    from PIL import Image

    rgb = np.zeros((30, 40, 3), np.uint8)
    rgb[:, 20:] = (128, 128, 255)  # facing the camera
    rgb[:, 10:20] = (255, 128, 128)  # facing right
    (tmp_path / "n").mkdir()
    rows = []
    for k in range(4):
        Image.fromarray(rgb).save(tmp_path / "n" / f"{k}.png")
        rows.append({"image": f"i/{k}.png", "split": _split(k), "facing": f"n/{k}.png"})
    path = write_table(tmp_path, rows)
    (tmp_path / "tasks.json").write_text(json.dumps({"facing": {"kind": "normals"}}))
    _, targets = build_dataset(config(path, ["facing"], resize="stretch"), "train")[0]
    n = targets["facing"]  # (3, 32, 48): stretched 1.2 across and 32 / 30 down
    assert n.shape == (3, 32, 48) and not n[:, :, :12].any()  # black: no label
    assert torch.allclose(n.norm(dim=0)[:, 12:], torch.ones(1), atol=1e-5)
    assert n[:, 5, 40].tolist() == pytest.approx([0.0, 0.0, 1.0], abs=0.01)
    assert n[0, 5, 18] > 0.99  # facing right stays facing right (the stretch only tilts it less)


def test_many_whole_numbers_are_refused_until_their_kind_is_declared(tmp_path):
    rows = [{"image": f"i/{k}.png", "age": str(18 + k)} for k in range(30)]
    path = write_table(tmp_path, rows)
    with pytest.raises(DataProblemsError) as e:
        build_dataset(config(path, ["age"]), "train")
    assert "age" in str(e.value) and "declare its kind" in str(e.value) and "tasks.json" in str(e.value)
    (tmp_path / "tasks.json").write_text(json.dumps({"age": {"kind": "regression"}}))
    assert build_dataset(config(path, ["age"]), "train").info.specs["age"].kind == "regression"
    # or in the config, which wins over tasks.json
    cfg = config(path, ["age"])
    cfg = ExperimentConfig.from_dict({**cfg.to_dict(), "task_specs": {"age": {"kind": "count"}}})
    assert build_dataset(cfg, "train").info.specs["age"].kind == "count"


def test_a_table_without_an_image_column_or_rows_is_refused_naming_what_to_do(tmp_path):
    (tmp_path / "t.csv").write_text("path,label\na.png,x\n")
    with pytest.raises(ConfigError, match="no 'image' column; its columns: path, label"):
        load_table(tmp_path / "t.csv")
    (tmp_path / "u.csv").write_text("image,label\n")
    with pytest.raises(ConfigError, match="no rows"):
        load_table(tmp_path / "u.csv")
    (tmp_path / "v.jsonl").write_text('{"image": "a.png"}\n[1, 2]\n')
    with pytest.raises(ConfigError, match="v.jsonl, line 2"):
        load_table(tmp_path / "v.jsonl")


def test_an_empty_cell_is_a_missing_label_masked_for_that_task_only(tmp_path):
    rows = [{"image": f"i/{k}.png", "split": _split(k), "kind": ("a", "b")[k % 2], "size": "" if k == 0 else f"{k}.5"}
            for k in range(8)]
    ds = build_dataset(config(write_table(tmp_path, rows), ["kind", "size"]), "train")
    first = [ds[i] for i in range(len(ds)) if ds.table.rows[ds.indices[i]].line == 2][0]
    assert first[1]["valid"] == {"kind": True, "size": False}
    assert ds.label_count("size") == ds.label_count("kind") - 1


def _problem_rows(tmp_path: Path) -> list[dict]:
    rows = []
    for k in range(8):
        rows.append({"image": f"i/{k}.png", "split": _split(k), "animal": ("cat", "dog")[k % 2],
                     "mask": mask_file(tmp_path, f"{k}.png", 1), "depth": "", "boxes": json.dumps([[1, 1, 5, 5, "car"]])})
    return rows


def test_every_problem_is_named_with_its_file_row_and_column(tmp_path):
    rows = _problem_rows(tmp_path)
    rows[1]["image"], rows[1]["_no_file"] = "i/missing.png", True  # line 3
    (tmp_path / "i").mkdir(exist_ok=True)
    (tmp_path / "i" / "broken.png").write_bytes(b"not a png")
    rows[2]["image"], rows[2]["_no_file"] = "i/broken.png", True  # line 4
    rows[3]["mask"] = mask_file(tmp_path, "bad.png", 7)  # line 5: value 7 beyond the classes
    np.save(tmp_path / "small.npy", np.ones((5, 5), np.float32))
    rows[4]["depth"] = "small.npy"  # line 6: a depth map of another size
    rows[5]["boxes"] = json.dumps([[30, 20, 20, 20, "car"]])  # line 7: reaches x = 50 > 40
    rows[6]["animal"] = "fish"  # line 8: a class seen in test only
    table = write_table(tmp_path, rows)
    specs = {"mask": TaskSpec(kind="segmentation", classes=("thing",))}
    cfg = ExperimentConfig.from_dict({**config(table, ["animal", "mask", "depth", "boxes"]).to_dict(),
                                      "task_specs": {"mask": {"kind": "segmentation", "classes": ["thing"]},
                                                     "depth": {"kind": "depth"}}})
    with pytest.raises(DataProblemsError) as e:
        build_dataset(cfg, "train")
    text = str(e.value)
    assert "labels.csv, row 3, image: i/missing.png does not exist" in text
    assert "labels.csv, row 4, image: i/broken.png cannot be read as an image" in text
    assert "labels.csv, row 5, mask: mask masks/bad.png has value 7 beyond its 1 classes" in text
    assert "labels.csv, row 6, depth: depth map small.npy is 5x5, its image 40x30" in text
    assert "labels.csv, row 7, boxes: box [30, 20, 20, 20] reaches outside its 40x30 image" in text
    assert "labels.csv, animal: class 'fish' never occurs in train" in text
    assert "labels.csv, depth: no label in the val split" in text
    assert "data.on_error to skip" in text
    assert specs  # the declared spec reached the check: without it the mask would have 7 classes
    report = check_data(cfg)
    assert not report.ok and len(report.problems) == len(e.value.problems)


def test_at_most_fifty_problems_are_listed_and_the_rest_counted(tmp_path):
    rows = [{"image": f"gone/{k}.png", "_no_file": True, "label": ("a", "b")[k % 2]} for k in range(70)]
    with pytest.raises(DataProblemsError) as e:
        build_dataset(config(write_table(tmp_path, rows), ["label"]), "train")
    lines = str(e.value).splitlines()
    assert len(lines) == 1 + 50 + 1 and lines[-1].startswith("… and 20 more (20 in image)")


def test_skip_leaves_the_bad_rows_out_and_says_how_many_and_why(tmp_path):
    rows = _problem_rows(tmp_path)
    rows[0]["image"], rows[0]["_no_file"] = "i/missing.png", True
    rows[4]["image"], rows[4]["_no_file"] = "i/missing2.png", True
    rows[1]["boxes"] = json.dumps([[30, 20, 20, 20, "car"]])
    table = write_table(tmp_path, rows)
    tasks = ["animal", "boxes"]
    train = build_dataset(config(table, tasks, on_error="skip"), "train")
    assert train.skipped == {"image: does not exist": 2, "boxes: reaches outside": 1}
    assert len(train) == 4 - 3 + 0  # train rows 0, 1, 4, 5: three of them bad
    assert all(train.table.rows[i].line not in (2, 3, 6) for i in train.indices)


def test_a_letterboxed_photo_moves_its_boxes_and_mask_exactly(tmp_path):
    # a 40 x 30 photo into 24 x 32 (H x W): scale 0.8 both ways, 24 x 32 exactly, no padding;
    # into 32 x 32: scale 0.8, content 24 x 32, 4 px of padding above and below
    rows = [{"image": f"i/{k}.png", "split": _split(k), "mask": mask_file(tmp_path, f"{k}.png", 1),
             "boxes": json.dumps([[5, 10, 20, 10, "car"]])} for k in range(4)]
    table = write_table(tmp_path, rows)
    cfg = ExperimentConfig.from_dict({**config(table, ["mask", "boxes"]).to_dict(),
                                      "data": {"dataset": "manifest", "root": str(table), "image_size": 32}})
    ds = build_dataset(cfg, "train")
    image, t = ds[0]
    assert t["boxes"]["boxes"].tolist() == [[4.0, 4.0 + 8.0, 20.0, 4.0 + 16.0]]  # x*0.8, y*0.8 + 4
    mask = t["mask"]
    assert (mask[:4] == 255).all() and (mask[-4:] == 255).all()  # the letterbox's bands: not labelled
    ys, xs = torch.nonzero(mask == 1, as_tuple=True)
    assert (int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())) == (4 + 8, 4 + 15, 8, 23)
    assert torch.allclose(image[:, :4], torch.full_like(image[:, :4], 0.5))  # grey padding


def test_the_config_names_columns_and_a_run_records_them_resolved(tmp_path):
    rows = [{"image": f"i/{k}.png", "split": _split(k), "left": str(k % 3), "right": str((k + 1) % 3)} for k in range(8)]
    cfg = check(config(write_table(tmp_path, rows), ["left", "right"]))
    assert cfg.task_specs["left"] == TaskSpec(kind="classification", column="left", classes=("0", "1", "2"))
    with pytest.raises(ConfigError, match="unknown task .lefft.: the manifest dataset has no task or column.*did you mean left"):
        check(config(write_table(tmp_path, rows), ["lefft"]))


def test_a_run_on_skipped_rows_records_how_many_and_why(tmp_path):
    rows = [{"image": f"i/{k}.png", "split": _split(k), "label": ("a", "b")[k % 2]} for k in range(12)]
    rows[4]["image"], rows[4]["_no_file"] = "i/gone.png", True
    cfg = config(write_table(tmp_path, rows), ["label"], on_error="skip")
    cfg = ExperimentConfig.from_dict({**cfg.to_dict(), "optim": {"steps": 2, "batch_size": 2},
                                      "model": {"width": 4}, "eval_every": 2, "first_eval": 0, "checkpoint_every": 0})
    store = RunStore(tmp_path / "runs")
    run_id = store.create_run(check(cfg).to_dict(), "skip", "test", 2)
    Trainer(check(cfg), store, run_id).run()
    assert store.get_run(run_id)["status"] == "finished"
    (event,) = store.events(run_id, "skipped_rows")
    assert event["payload"] == {"rows": 1, "why": {"image: does not exist": 1}}


def test_a_runs_dataset_samples_read_the_kinds_its_config_declared(tmp_path):
    # Predict's "Dataset samples": a column whose kind only the config declares still has its truth
    rows = [{"image": f"i/{k}.png", "split": _split(k), "age": str(18 + k)} for k in range(30)]
    cfg = ExperimentConfig.from_dict({**config(write_table(tmp_path, rows), ["age"]).to_dict(),
                                      "task_specs": {"age": {"kind": "regression"}}})
    cfg = check(cfg)
    tasks = build_tasks(cfg, build_dataset(cfg, "val").info)
    image, truth = dataset_sample(cfg, "val", 0, tasks)
    assert image.dtype == torch.uint8 and set(truth) == {"age"} and truth["age"]["value"] >= 18


def test_a_sample_reads_only_the_columns_the_config_chose(tmp_path):
    # a column not chosen is neither checked nor read: its missing masks cannot stop a run of the others
    rows = [{"image": f"i/{k}.png", "split": _split(k), "animal": ("cat", "dog")[k % 2], "mask": f"masks/gone{k}.png"}
            for k in range(8)]
    cfg = ExperimentConfig.from_dict({**config(write_table(tmp_path, rows), ["animal"]).to_dict(),
                                      "task_specs": {"mask": {"kind": "segmentation", "classes": ["thing"]}}})
    ds = build_dataset(cfg, "train")
    image, targets = ds[0]
    assert set(targets) == {"animal", "valid"} and targets["valid"] == {"animal": True}
    assert "mask" in ds.info.tasks  # still listed as a task the table supplies
