"""``python -m mtl_core train --config assets/benchmarks/<preset>.json --set optim.steps=5`` trains on
a folder in the dataset's published layout, and the run reports every metric its preset publishes."""
import pytest

from mtl_core.cli import main
from mtl_core.data.mtan_npy import write_random_copy
from mtl_core.protocols.benchmarks import PRESETS_DIR, load_preset, presets
from mtl_core.store.store import RunStore

MTAN_LAYOUT = sorted(n for n, p in presets().items() if p.experiment().data.dataset in ("nyuv2", "cityscapes"))


@pytest.mark.parametrize("name", MTAN_LAYOUT)
def test_a_preset_trains_five_steps_on_its_published_layout(tmp_path, name, capsys):
    preset = load_preset(name)
    root = write_random_copy(tmp_path / "data", preset.experiment().data.dataset, n_train=6, n_val=3, size=(32, 64))
    runs = tmp_path / "runs"
    code = main(["train", "--config", str(PRESETS_DIR / f"{name}.json"), "--runs-dir", str(runs), "--quiet",
                 "--set", "optim.steps=5", "--set", f"data.root={root}", "--set", "data.image_size=[32, 64]",
                 "--set", "optim.batch_size=2", "--set", "model.pretrained=false", "--set", "eval_every=2",
                 "--set", "model.width=16"])  # SegNet at a quarter of the paper's filters: the plumbing, in seconds
    assert code == 0, capsys.readouterr()
    store = RunStore(runs)
    run = store.list_runs()[0]
    assert run["status"] == "finished" and run["config"]["benchmark"] == name
    assert run["config"]["model"] == {**preset.config_dict()["model"], "pretrained": False, "width": 16}
    reported = {r[2] for r in store.metrics(run["id"], split="test")}
    published = {k for row in preset.published for k in row.metrics}
    assert published and published <= reported, published - reported
