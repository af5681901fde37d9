"""The Setup page, driven as a person would with Streamlit's AppTest."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Block

from mtl_core.config import DataConfig, ExperimentConfig, OptimConfig, WeightingConfig
from mtl_core.weighting import WEIGHTINGS
from mtl_core.weights import WEIGHT_MAX, WEIGHT_MIN

APP = str(Path(__file__).resolve().parents[2] / "app.py")
K = "cfg."


@pytest.fixture
def setup_page(runs_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.run()
    at.switch_page("pages/setup.py").run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def elements(at: AppTest) -> list:
    """Every element of the page in document order (layout blocks left out)."""
    return [n for n in at.main if not isinstance(n, Block)]


def element_after(at: AppTest, widget) -> object:
    flat = elements(at)
    i = next(i for i, n in enumerate(flat) if getattr(n, "key", None) == widget.key and n.type == widget.type)
    return flat[i + 1]


def start_button(at: AppTest):
    return at.button(key="setup.start")


def test_the_widgets_are_there_and_a_default_config_can_start(setup_page):
    at = setup_page
    assert at.multiselect(key=K + "tasks").value == ["classification", "detection", "segmentation"]
    assert set(at.multiselect(key=K + "tasks").options) >= {"Classification", "Detection", "Segmentation", "Depth"}
    method = at.selectbox(key=K + "weighting.method")
    assert method.value == "static" and len(method.options) == len(WEIGHTINGS.available())
    for t in ("classification", "detection", "segmentation"):  # one weight slider per selected task
        slider = at.slider(key=f"{K}weighting.weights.{t}")
        assert slider.value == 1.0 and (slider.min, slider.max) == (WEIGHT_MIN, WEIGHT_MAX)  # the one range
    for key in ("data.height", "data.max_objects", "data.noise"):
        at.slider(key=K + key)
    for key in ("data.train_size", "optim.lr", "optim.batch_size", "optim.steps", "seed"):
        at.number_input(key=K + key)
    for key in ("model.architecture", "model.backbone", "optim.optimizer", "device", "data.dataset"):
        at.selectbox(key=K + key)
    assert at.selectbox(key=K + "device").options == ["auto", "cpu", "cuda"]
    assert at.checkbox(key=K + "augment_on.hflip").value is True  # the default config flips with p=0.5
    assert at.checkbox(key=K + "augment_on.rotation").value is False
    assert len(at.image) == 8  # 4 training samples, original and augmented
    assert not at.error
    assert start_button(at).disabled is False


def test_a_gradient_method_offers_its_hyperparameters_and_rep_grad(setup_page):
    at = setup_page
    assert not at.toggle  # static is a loss method: no rep_grad
    at.selectbox(key=K + "weighting.method").set_value("cagrad").run()
    assert at.number_input(key=f"{K}weighting.params.cagrad.c").value == pytest.approx(0.5)
    at.number_input(key=f"{K}weighting.params.cagrad.c").set_value(0.25)
    at.toggle(key=K + "weighting.rep_grad").set_value(True).run()
    w = at.session_state["setup.config"].weighting
    assert (w.method, w.params["c"], w.rep_grad) == ("cagrad", 0.25, True)
    # an architecture without one shared representation cannot combine there: said at the toggle
    at.selectbox(key=K + "model.architecture").set_value("mtan").run()
    assert "no single shared representation" in element_after(at, at.toggle(key=K + "weighting.rep_grad")).value.lower()
    assert start_button(at).disabled is True


def test_no_task_shows_an_error_at_the_tasks_and_disables_start(setup_page):
    at = setup_page
    at.multiselect(key=K + "tasks").set_value([]).run()
    error = element_after(at, at.multiselect(key=K + "tasks"))
    assert error.type == "error" and "select at least one task" in error.value.lower()
    assert start_button(at).disabled is True
    at.multiselect(key=K + "tasks").set_value(["depth"]).run()
    assert not at.error and start_button(at).disabled is False


def test_all_weights_zero_shows_an_error_at_the_weights(setup_page):
    at = setup_page
    for t in ("classification", "detection", "segmentation"):
        at.slider(key=f"{K}weighting.weights.{t}").set_value(0.0)
    at.run()
    error = element_after(at, at.slider(key=f"{K}weighting.weights.segmentation"))
    assert error.type == "error" and "all task weights are zero" in error.value.lower()
    assert start_button(at).disabled is True
    at.slider(key=f"{K}weighting.weights.detection").set_value(0.5).run()
    assert not at.error and start_button(at).disabled is False
    assert at.session_state["setup.config"].weighting.weights == {"classification": 0.0, "detection": 0.5,
                                                                   "segmentation": 0.0}


def test_a_batch_larger_than_the_training_set_is_flagged_at_the_batch_size(setup_page):
    at = setup_page
    at.number_input(key=K + "data.train_size").set_value(32)
    at.number_input(key=K + "optim.batch_size").set_value(64).run()
    error = element_after(at, at.number_input(key=K + "optim.batch_size"))
    assert error.type == "error" and "bigger than the training set" in error.value.lower()


def test_the_downloaded_config_is_the_one_on_screen(setup_page, monkeypatch):
    saved: list[bytes] = []
    original = MemoryMediaFileStorage.load_and_get_id

    def capture(self, data, mimetype, kind, filename=None):
        if filename and filename.endswith(".json"):
            saved.append(data if isinstance(data, bytes) else data.encode())
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", capture)
    at = setup_page
    at.number_input(key=K + "optim.lr").set_value(0.01)
    at.number_input(key=K + "optim.steps").set_value(123)
    at.selectbox(key=K + "weighting.method").set_value("uw")
    at.checkbox(key=K + "augment_on.rotation").set_value(True)
    at.text_input(key=K + "name").set_value("round trip").run()
    assert saved, "no config was offered for download"
    downloaded = ExperimentConfig.from_json(saved[-1])
    assert downloaded == at.session_state["setup.config"]
    assert (downloaded.name, downloaded.optim.lr, downloaded.optim.steps) == ("round trip", 0.01, 123)
    assert downloaded.weighting.method == "uw" and downloaded.augment.rotation == 15.0
    assert at.download_button(key="setup.download").proto.label.startswith("Download")


def test_an_uploaded_config_fills_the_widgets(setup_page):
    cfg = ExperimentConfig(
        name="from a file", tasks=("detection", "depth"),
        data=DataConfig(image_size=48, max_objects=3, noise=0.1, train_size=1000),
        weighting=WeightingConfig(method="dwa", weights={"detection": 2.0, "depth": 0.5},
                                  params={"temperature": 3.0, "window": 20.0}),
        optim=OptimConfig(lr=0.02, batch_size=32, steps=77),
        augment=dataclasses.replace(ExperimentConfig().augment, hflip=0.0, rotation=20.0), seed=7, device="cpu",
    )
    at = setup_page
    at.file_uploader(key="setup.upload").set_value(("mine.json", cfg.to_json().encode(), "application/json")).run()
    assert not at.exception and not at.error
    assert at.multiselect(key=K + "tasks").value == ["detection", "depth"]
    assert at.slider(key=K + "data.height").value == 48
    assert at.slider(key=f"{K}weighting.weights.detection").value == 2.0
    assert at.selectbox(key=K + "weighting.method").value == "dwa"
    assert at.number_input(key=f"{K}weighting.params.dwa.temperature").value == 3.0
    assert at.number_input(key=K + "optim.lr").value == 0.02
    assert at.number_input(key=K + "seed").value == 7
    assert at.checkbox(key=K + "augment_on.hflip").value is False
    assert at.slider(key=K + "augment.rotation").value == 20.0
    assert at.text_input(key=K + "name").value == "from a file"
    assert at.session_state["setup.config"] == cfg
    assert any("mine.json" in s.value for s in at.success)


def test_a_bad_config_file_names_the_field_and_changes_nothing(setup_page):
    at = setup_page
    bad = b'{"optim": {"learning_rate": 0.5}}'
    at.file_uploader(key="setup.upload").set_value(("bad.json", bad, "application/json")).run()
    messages = [e.value for e in at.error]
    assert any("optim.learning_rate" in m and "unknown key" in m for m in messages), messages
    assert at.number_input(key=K + "optim.lr").value == OptimConfig().lr
    at.file_uploader(key="setup.upload").set_value(("broken.json", b"{not json", "application/json")).run()
    assert any("not valid JSON" in e.value for e in at.error)


def test_a_tiny_run_started_from_setup_finishes(setup_page, runs_dir):
    from mtl_core.runs.manager import get_manager

    at = setup_page
    for key, value in {"data.train_size": 64, "data.val_size": 32, "data.test_size": 32, "optim.batch_size": 16,
                       "optim.steps": 5, "eval_every": 5, "optim.warmup_steps": 0}.items():
        at.number_input(key=K + key).set_value(value)
    at.slider(key=K + "data.height").set_value(32)
    at.selectbox(key=K + "device").set_value("cpu")
    at.text_input(key=K + "name").set_value("tiny from setup").run()
    assert start_button(at).disabled is False
    start_button(at).click().run()
    run_id = at.session_state["run_id"]
    manager = get_manager(runs_dir)
    assert manager.wait(run_id, timeout=60) == "finished"
    run = manager.store.get_run(run_id)
    assert run["name"] == "tiny from setup" and run["step"] == 5
    assert ExperimentConfig.from_dict(run["config"]).data.image_size == 32


def test_another_dataset_keeps_the_tasks_it_supplies_and_needs_its_files(setup_page, tmp_path):
    from PIL import Image

    at = setup_page
    at.selectbox(key=K + "data.dataset").set_value("image_folder").run()
    assert at.multiselect(key=K + "tasks").value == ["classification"]  # the only task it supplies
    error = element_after(at, at.text_input(key=K + "data.root"))
    assert error.type == "error" and "needs data.root" in error.value.lower()
    assert start_button(at).disabled is True
    root = tmp_path / "pictures"
    for cls in ("cats", "dogs"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (40, 30), (40 * i, 100, 200)).save(root / cls / f"{i}.png")
    at.text_input(key=K + "data.root").set_value(str(root))
    at.number_input(key=K + "optim.batch_size").set_value(2).run()
    assert not at.error, [e.value for e in at.error]
    assert start_button(at).disabled is False


EXAMPLE_FILES = sorted((Path(__file__).resolve().parents[2] / "assets" / "configs").glob("*.json"))


def test_there_are_example_configs_to_offer():
    assert len(EXAMPLE_FILES) >= 4, EXAMPLE_FILES
    names = [ExperimentConfig.from_json(p.read_text()).name for p in EXAMPLE_FILES]
    assert all(names) and len(set(names)) == len(names), names  # every one has its own readable name


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: p.name)
def test_every_example_config_loads_and_validates(path):
    from mtl_core.training.validation import check
    from ui import config_state as cs

    cfg = ExperimentConfig.from_json(path.read_text())
    check(cfg)  # raises, naming the field, when something is wrong
    assert cs.parse_upload(path.read_bytes()) == cfg  # the Setup form has a widget for everything it sets
    example = next(e for e in cs.examples() if e.file == path.name)
    assert example.error is None and example.config == cfg and example.name == cfg.name
    assert ", ".join(cfg.tasks) in example.description


def test_the_example_menu_fills_the_form(setup_page):
    at = setup_page
    menu = at.selectbox(key="setup.example")
    assert menu.value is None  # nothing loaded until a person picks one
    from mtl_core.protocols.benchmarks import presets

    assert len(menu.options) == len(EXAMPLE_FILES) + len(presets())  # the examples, then the papers' protocols
    assert "MTAN with attention maps (see them on Predict) (mtan_attention.json)" in menu.options  # name and file
    menu.set_value("mtan_attention.json").run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key=K + "model.architecture").value == "mtan"
    assert at.multiselect(key=K + "tasks").value == ["classification", "segmentation", "depth"]
    assert any("MTAN with attention maps" in s.value and "mtan_attention.json" in s.value for s in at.success)
    assert at.session_state["setup.config"].model.architecture == "mtan"
    assert at.selectbox(key="setup.example").value is None  # back to the placeholder: ready for the next one
    assert start_button(at).disabled is False
    at.selectbox(key="setup.example").set_value("four_tasks_depth.json").run()
    assert at.slider(key=f"{K}weighting.weights.depth").value == 0.5
    assert at.selectbox(key=K + "model.architecture").value == "hard_sharing"
    assert any("Four tasks with depth" in s.value for s in at.success)
    assert not any("MTAN" in s.value for s in at.success)  # one message: the latest load's
    # a protocol preset fills the paper's model and names itself, so the run shows its published numbers
    at.selectbox(key="setup.example").set_value("benchmarks/nyuv2.json").run()
    assert at.selectbox(key=K + "model.backbone").value == "resnet50_dilated"
    assert at.selectbox(key=K + "model.head").value == "aspp"
    assert at.session_state["setup.config"].benchmark == "nyuv2"
    assert any("set the data folder" in s.value for s in at.success)


def study_section(at: AppTest):
    """The "Start as a study" section's size line (or refusal) and its two buttons."""
    return at.button(key="setup.study_start"), at.download_button(key="setup.study_download")


def test_the_study_section_shows_its_size_and_starts_the_study(setup_page, runs_dir, monkeypatch):
    from streamlit.runtime.media_file_manager import MediaFileManager

    from mtl_core.runs.manager import get_manager
    from mtl_core.studies.runner import StudyRunner
    from mtl_core.studies.spec import StudySpec, expand
    from mtl_core.studies.store import StudyStore

    saved: dict[str, object] = {}  # file name -> what writes it (the spec is written when clicked)
    original = MediaFileManager.add_deferred

    def capture(self, data, mimetype, coordinates, file_name=None, **kw):
        saved[file_name] = data
        return original(self, data, mimetype, coordinates, file_name=file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", capture)
    at = setup_page
    at.multiselect(key=K + "tasks").set_value(["classification", "segmentation"])
    for key, value in {"data.train_size": 64, "data.val_size": 32, "data.test_size": 32, "optim.batch_size": 16,
                       "optim.steps": 4, "eval_every": 2, "optim.warmup_steps": 0}.items():
        at.number_input(key=K + key).set_value(value)
    at.slider(key=K + "data.height").set_value(32)
    at.selectbox(key=K + "device").set_value("cpu").run()
    at.multiselect(key="study.methods").set_value(["ew", "rlw"])
    at.number_input(key="study.seeds").set_value(2)
    at.text_input(key="study.name").set_value("from setup").run()
    assert not at.exception
    assert any(m.value == "**2 methods x 2 seeds + 4 baselines = 8 runs**" for m in at.markdown)
    start, download = study_section(at)
    assert not start.disabled and not download.proto.disabled
    spec = StudySpec.from_json(saved["from_setup.json"]())  # the JSON `python -m mtl_core study run` takes
    assert spec.name == "from setup" and spec.factors == {"weighting.method": ["ew", "rlw"]}
    assert spec.seeds == 2 and spec.baselines and len(expand(spec)) == 8
    assert spec.base_config().optim.steps == 4 and spec.base_config().tasks == ("classification", "segmentation")
    start.click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    store = get_manager(runs_dir).store
    studies = StudyStore(store).list()
    assert [s["name"] for s in studies] == ["from setup"]
    sid = studies[0]["id"]
    assert at.session_state["study_id"] == sid and any(t.value == "Studies" for t in at.title)
    plan = StudyStore(store).plan(sid)
    assert len(plan) == 8 and all(row["run"] is not None and row["run"]["source"] == "study" for row in plan)
    assert {row["run"]["status"] for row in plan} <= {"queued", "running", "finished"}
    runner = StudyRunner(get_manager(runs_dir))
    runner.stop(sid)
    for row in plan:
        get_manager(runs_dir).wait(row["run_id"], timeout=60)


def test_the_quick_switch_and_a_refused_factor_show_in_the_study_section(setup_page):
    at = setup_page
    at.checkbox(key="study.quick").set_value(True).run()
    assert any("32 px · 600 steps" in c.value and c.value.startswith("Runs like") for c in at.caption)
    assert any(m.value.startswith("**1 config x 3 seeds + 9 baselines") for m in at.markdown)
    at.checkbox(key="study.sweep").set_value(True).run()
    assert at.selectbox(key="study.sweep_task").value == "segmentation"  # the last task, by default
    at.number_input(key="study.sweep_lo").set_value(0.0).run()
    assert not at.exception
    refusal = [e.value for e in at.error if "This study is refused" in e.value]
    assert refusal and "factors.weighting.weights.segmentation" in refusal[0] and "lo > 0" in refusal[0]
    start, download = study_section(at)
    assert start.disabled and download.proto.disabled
    at.number_input(key="study.sweep_lo").set_value(0.5).run()
    assert any(m.value.startswith("**3 segmentation weights x 3 seeds + 9 baselines = 18 runs") for m in at.markdown)
    assert not study_section(at)[0].disabled


# ------------------------------------------------------------------ the setup in the URL
LINKED = ExperimentConfig.from_dict({"tasks": ["classification", "segmentation"], "model": {"width": 8},
                                     "weighting": {"method": "pcgrad"},
                                     "data": {"label_fraction": {"segmentation": 0.05}}})


def _plain(cfg: ExperimentConfig) -> ExperimentConfig:
    """The config without weights of 1.0 nor a method's default hyperparameters (the form lists them all)."""
    w = {t: v for t, v in cfg.weighting.weights.items() if v != 1.0}
    defaults = WEIGHTINGS.get(cfg.weighting.method).defaults
    p = {k: v for k, v in cfg.weighting.params.items() if v != defaults.get(k)}
    return dataclasses.replace(cfg, weighting=dataclasses.replace(cfg.weighting, weights=w, params=p))


def _setup_with(runs_dir, **params) -> AppTest:
    at = AppTest.from_file(str(Path(APP).parent / "pages" / "setup.py"), default_timeout=30)
    for k, v in params.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, [e.message for e in at.exception]
    return at


def test_a_link_fills_the_form_and_the_form_writes_its_setup_to_the_url(runs_dir):
    at = _setup_with(runs_dir, config=LINKED.to_link())
    assert at.multiselect(key=K + "tasks").value == ["classification", "segmentation"]
    assert at.selectbox(key=K + "weighting.method").value == "pcgrad"
    assert at.session_state[K + "data.label_fraction.segmentation"] == 0.05
    assert _plain(at.session_state["setup.config"]) == LINKED
    assert any("Loaded the setup from the link" in s.value for s in at.success)
    at.slider(key=K + "data.height").set_value(48).run()
    token = at.query_params["config"]
    token = token[0] if isinstance(token, list) else token
    assert _plain(ExperimentConfig.from_link(token)) == dataclasses.replace(LINKED, data=dataclasses.replace(LINKED.data, image_size=48))


@pytest.mark.parametrize("token, says", [("c1.not-a-config", "damaged"), ("hello", "not a link made by MTL Studio")])
def test_a_malformed_link_shows_an_error_and_the_default_setup(runs_dir, token, says):
    at = _setup_with(runs_dir, config=token)
    assert any(says in e.value and "default setup" in e.value for e in at.error), [e.value for e in at.error]
    assert _plain(at.session_state["setup.config"]) == ExperimentConfig()


def test_an_invalid_link_names_the_field(runs_dir):
    import base64
    import json
    import zlib

    bad = "c1." + base64.urlsafe_b64encode(zlib.compress(json.dumps({"optim": {"lr": -1}}).encode())).decode().rstrip("=")
    at = _setup_with(runs_dir, config=bad)
    assert any("optim.lr" in e.value for e in at.error)


def test_an_instructor_link_shows_only_the_sections_the_exercise_changes(runs_dir):
    at = _setup_with(runs_dir, config=LINKED.to_link(), instructor="1")
    subheaders = [h.value for h in at.subheader]
    expanders = [e.label for e in at.expander]
    assert "Settings this exercise leaves as they are" in expanders
    assert not [s for s in at.selectbox if s.key == "setup.example"]  # no examples menu for a class
    # data, tasks, model, fusion and start are changed or always shown; the rest is tucked away
    hidden = next(e for e in at.expander if e.label == "Settings this exercise leaves as they are")
    inside = [h.value for h in hidden.subheader]
    assert "Augmentation" in inside and "Optimisation" in inside
    assert "Model" not in inside and "Loss fusion" not in inside and "Start" in subheaders
    plain = _setup_with(runs_dir, config=LINKED.to_link())
    assert "Settings this exercise leaves as they are" not in [e.label for e in plain.expander]


def test_a_label_table_lists_its_task_columns_and_trains_any_subset(setup_page, runs_dir):
    at = setup_page
    at.selectbox(key=K + "data.dataset").set_value("manifest").run()
    assert any("data.root: set it to a label table" in e.value for e in at.error) or \
        any("label table" in e.value.lower() for e in at.error)  # what data.root should be
    assert start_button(at).disabled is True
    at.button(key="setup.example_table").click().run()
    assert not at.exception, [e.message for e in at.exception]
    table = at.dataframe[0].value
    assert list(table["task"]) == ["subject", "outdoor", "brightness"]
    assert list(table["kind"]) == ["classification", "binary", "regression"]
    assert list(table["labels (train / val / test)"]) == ["84 / 18 / 18"] * 3
    assert at.multiselect(key=K + "tasks").value == ["subject", "outdoor", "brightness"]
    assert (at.slider(key=K + "data.height").value, at.slider(key=K + "data.width").value) == (96, 128)
    at.multiselect(key=K + "tasks").set_value(["subject", "brightness"])
    at.slider(key=K + "data.height").set_value(48)
    at.slider(key=K + "data.width").set_value(64)
    at.number_input(key=K + "optim.steps").set_value(4)
    at.number_input(key=K + "optim.batch_size").set_value(4).run()
    assert not at.error, [e.value for e in at.error]
    cfg = at.session_state["setup.config"]
    assert cfg.tasks == ("subject", "brightness") and cfg.data.image_size == (48, 64)
    assert cfg.data.dataset == "manifest" and cfg.data.root.endswith("photos.csv")
    assert start_button(at).disabled is False


def test_forty_tasks_are_weighted_in_a_table_not_forty_sliders(setup_page, tmp_path):
    from tests.label_tables import split_of, write_table  # noqa: PLC0415

    attrs = [f"attr_{k:02d}" for k in range(40)]
    rows = [{"image": f"i/{i}.png", "split": split_of(i), **{a: str((i + k) % 2) for k, a in enumerate(attrs)}}
            for i in range(8)]
    table = write_table(tmp_path, rows)
    at = setup_page
    at.selectbox(key=K + "data.dataset").set_value("manifest").run()
    at.text_input(key=K + "data.root").set_value(str(table)).run()
    at.button(key="setup.all_tasks").click().run()
    assert not at.exception, [e.message for e in at.exception]
    assert len(at.multiselect(key=K + "tasks").value) == 40
    assert not [s for s in at.slider if s.key.startswith(K + "weighting.weights.")]
    weights = next(d for d in at.dataframe if getattr(d, "key", None) == "setup.weights_table")
    assert len(weights.value) == 40 and list(weights.value["weight"][:2]) == [1.0, 1.0]
    at.session_state[K + "weighting.weights.attr_07"] = 2.5  # what the table's edit callback writes
    at.run()
    assert at.session_state["setup.config"].weighting.weights["attr_07"] == 2.5


def test_a_table_edit_reaches_the_tasks_own_keys_and_the_config():
    from ui import config_state as cs  # noqa: PLC0415

    ss: dict = {}
    cs.load(ss, ExperimentConfig(tasks=("a", "b", "c"), task_specs={}))
    edits = {"edited_rows": {1: {"weight": 3.5, "task": "ignored"}, 2: {"weight": None}, 7: {"weight": 9.0}}}
    cs.apply_table_edits(ss, edits, ["a", "b", "c"], {"weight": "weighting.weights"})
    cs.apply_table_edits(ss, {"edited_rows": {"0": {"labelled": 0.25}}}, ["a", "b", "c"],
                         {"labelled": "data.label_fraction"})
    cfg = cs.build(ss)
    assert cfg.weighting.weights == {"a": 1.0, "b": 3.5, "c": 1.0}  # a cleared cell and row 7 change nothing
    assert cfg.data.label_fraction == {"a": 0.25}


def test_a_rerun_that_carries_an_older_url_of_this_form_does_not_undo_a_change(runs_dir):
    # the browser sends its URL with every rerun; one asked for before it took the form's newest
    # token carries the token the form wrote one change earlier (CI: a slider moved back by itself)
    at = _setup_with(runs_dir)
    older = at.query_params["config"]
    older = older[0] if isinstance(older, list) else older
    at.slider(key=K + "data.height").set_value(48).run()
    at.query_params["config"] = older
    at.run()
    assert at.slider(key=K + "data.height").value == 48
    assert not any("Loaded the setup from the link" in s.value for s in at.success)
