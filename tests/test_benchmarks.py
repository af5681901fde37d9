"""Protocol presets (assets/benchmarks): they load as configs, cite every published number, and Δm
against their published single-task numbers is computed as their sources compute it."""
import json

import pytest

from mtl_core.config import ExperimentConfig, merge, parse_set
from mtl_core.errors import ConfigError
from mtl_core.protocols.benchmarks import PRESETS_DIR, load_preset, parse_preset, presets, published_delta_m
from mtl_core.tasks import KINDS, TASKS, task_meta
from mtl_core.training.validation import validate


def test_every_preset_file_is_a_preset():
    files = sorted(p.stem for p in PRESETS_DIR.glob("*.json"))
    assert files and sorted(presets()) == files


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.json")))
def test_a_preset_is_a_valid_config_that_names_itself(name):
    preset = load_preset(name)
    cfg = preset.experiment()
    assert cfg.benchmark == name
    # everything but the data's files (not on this machine) is valid as it stands
    problems = [e for e in validate(cfg) if not e.field.startswith("data.root")]
    assert problems == [], problems


@pytest.mark.parametrize("name", sorted(p.stem for p in PRESETS_DIR.glob("*.json")))
def test_published_numbers_are_metrics_the_run_reports_with_a_citation(name):
    preset = load_preset(name)
    cfg = preset.experiment()
    meta = task_meta(cfg.tasks, cfg.task_specs)
    for row in preset.published:
        assert row.citation and row.source, row
        for key in row.metrics:
            task, metric = key.split("/", 1)
            assert task in cfg.tasks, key
            kind = meta[task]["kind"]
            assert kind in KINDS or task in TASKS
    if not preset.published or preset.single_task() is None:
        assert preset.missing, f"{name} lacks published numbers and does not say why"


def _preset(rows, delta="per_metric"):
    return parse_preset({"name": "x", "config": {}, "delta_m": delta,
                         "higher_is_better": {"a/acc": True, "b/err": False, "b/rel": False},
                         "published": rows}, "x.json")


STL = {"method": "single-task", "citation": "paper", "source": "table 1",
       "metrics": {"a/acc": 0.5, "b/err": 0.2, "b/rel": 0.4}}


def test_published_delta_m_counts_each_metric_or_each_task_as_its_source_does():
    ours = {"a/acc": 0.6, "b/err": 0.2, "b/rel": 0.2}  # a: +20 %; b/err: 0; b/rel: +50 %
    assert published_delta_m(ours, _preset([STL])) == pytest.approx((20 + 0 + 50) / 3)  # Nash-MTL's delta_fn
    assert published_delta_m(ours, _preset([STL], "per_task")) == pytest.approx((20 + 25) / 2)  # LibMTL's
    assert published_delta_m(STL["metrics"], _preset([STL])) == pytest.approx(0.0)
    assert published_delta_m({"c/x": 1.0}, _preset([STL])) is None
    assert published_delta_m(ours, _preset([])) is None  # no single-task row: nothing to measure against


def test_a_published_row_without_its_source_or_direction_is_refused():
    with pytest.raises(ConfigError, match="citation"):
        _preset([{**STL, "source": " "}])
    with pytest.raises(ConfigError, match="no direction for c/x"):
        _preset([{**STL, "metrics": {"c/x": 1.0}}])
    with pytest.raises(ConfigError, match="x.json: config.optim.lr"):
        parse_preset({"name": "x", "config": {"optim": {"lr": "fast"}}, "published": []}, "x.json")


def test_set_flags_lay_fields_over_a_config():
    over = parse_set(["optim.steps=5", "tasks=segmentation,depth", "model.pretrained=false", "data.root=/d/nyu",
                      "data.image_size=[72, 96]"])
    cfg = ExperimentConfig.from_dict(merge(ExperimentConfig().to_dict(), over))
    assert cfg.optim.steps == 5 and cfg.tasks == ("segmentation", "depth") and cfg.model.pretrained is False
    assert cfg.data.root == "/d/nyu" and cfg.data.hw == (72, 96)
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        parse_set(["optim.steps"])
    with pytest.raises(ConfigError, match="optim.stpes"):
        ExperimentConfig.from_dict(merge(ExperimentConfig().to_dict(), parse_set(["optim.stpes=5"])))


def test_cli_reads_a_preset_by_name_or_path(tmp_path):
    from mtl_core.protocols.benchmarks import config_file

    name = sorted(presets())[0]
    assert config_file(name)["benchmark"] == name
    assert config_file(str(PRESETS_DIR / f"{name}.json"))["benchmark"] == name
    plain = tmp_path / "c.json"
    plain.write_text(json.dumps({"optim": {"steps": 3}}))
    assert config_file(str(plain)) == {"optim": {"steps": 3}}
