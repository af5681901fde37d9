"""Headless use: ``python -m mtl_core train|resume|evaluate|predict|inspect|export|compress|importance|list|study|playground``.

The CLI maps flags onto the config dataclasses; no argparse lives in the library itself.
Every subcommand takes ``--runs-dir`` (default ``$MTL_RUNS_DIR`` or ``./runs``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path

from mtl_core.config import ON_ERROR, RESIZE_POLICIES, SELECT_USES, ExperimentConfig, merge, parse_image_size, parse_set
from mtl_core.data import DATASETS, build_dataset
from mtl_core.data.celeba import CELEBA_GROUPS, expand_task_groups
from mtl_core.data.check import check_data
from mtl_core.deploy import cli as deploy_cli
from mtl_core.errors import MTLError
from mtl_core.inference.images import decode_image, encode_png
from mtl_core.inference.predictor import Predictor
from mtl_core.inspection.outputs import split_outputs
from mtl_core.inspection.table import co_failure, error_table, summary, to_csv
from mtl_core.models import ARCHITECTURES, BACKBONES
from mtl_core.playground import cli as playground_cli
from mtl_core.protocols.benchmarks import config_file
from mtl_core.store.ids import check_run_id, default_runs_dir
from mtl_core.store.liveness import HEARTBEAT_STALE_S
from mtl_core.store.status import STATUSES, RunStatus
from mtl_core.store.store import RunStore
from mtl_core.studies import cli as study_cli
from mtl_core.tasks import KINDS, TASKS
from mtl_core.training import distributed
from mtl_core.training.builders import resolve_device
from mtl_core.training.checkpoint import atomic_write_bytes
from mtl_core.training.control import Control
from mtl_core.training.distributed import RankStore
from mtl_core.training.evaluation import evaluate
from mtl_core.training.loop import Trainer
from mtl_core.training.validation import check, dataset_tasks
from mtl_core.weighting import WEIGHTINGS

ALL_TASKS_HELP = "comma-separated, e.g. classification,detection,segmentation,depth"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m mtl_core", description="MTL Studio, headless.")
    sub = p.add_subparsers(dest="command", required=True)

    def runs_dir(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--runs-dir", default=None, help="runs directory (default $MTL_RUNS_DIR or ./runs)")

    def data_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--tasks", help=ALL_TASKS_HELP + "; of a label table: its column names (default: every column); "
                        f"of CelebA: attribute names, or celeba:GROUP for a group ({', '.join(CELEBA_GROUPS)})")
        sp.add_argument("--dataset", help="scenes (built-in), manifest (a label table), coco, image_folder ... (see `list`)")
        sp.add_argument("--data-root", help="the dataset's file or folder (a label table: the .csv or .jsonl file)")
        sp.add_argument("--resize", choices=RESIZE_POLICIES, help="how other shapes reach the image size (default: "
                        "letterbox for real photos)")
        sp.add_argument("--on-error", choices=ON_ERROR, help="data with problems: fail (default) or skip those rows")

    t = sub.add_parser("train", help="train a run and record it in the run store")
    runs_dir(t)
    t.add_argument("--config", help="experiment config JSON (as downloaded from Setup) or a protocol preset "
                   "(assets/benchmarks/nyuv2.json, or its name: nyuv2); flags override it")
    t.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="any config field, e.g. --set optim.steps=5 --set data.root=/data/nyuv2 (JSON values; "
                   "tasks=a,b takes a comma list); laid over --config and the other flags")
    t.add_argument("--use", choices=SELECT_USES, help="which model the run reports and predicts with: best (on "
                   "validation, the default), last, or mean_last (the mean of the last evaluations)")
    t.add_argument("--name", help="run name")
    data_flags(t)
    t.add_argument("--steps", type=int)
    t.add_argument("--batch-size", type=int)
    t.add_argument("--image-size", help="the model's input: 64 (a square) or 288x384 (height x width)")
    t.add_argument("--lr", type=float)
    t.add_argument("--weights", help="static task weights in task order, e.g. 1,1,1")
    t.add_argument("--method", help="weighting method (see `list`)")
    t.add_argument("--arch", help="architecture (see `list`)")
    t.add_argument("--norm", choices=("batch", "group"), help="normalisation layers (group: batch-independent)")
    t.add_argument("--train-size", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--device", help="auto, cpu or cuda")
    t.add_argument("--time-limit", type=float, help="seconds of training at most")
    t.add_argument("--eval-every", type=int)
    t.add_argument("--checkpoint-every", type=int)
    t.add_argument("--baselines", action="store_true",
                   help="then train a single-task baseline per task (same backbone, data, budget) for Δm")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    r = sub.add_parser("resume", help="continue an interrupted or stopped run from its last checkpoint")
    runs_dir(r)
    r.add_argument("run_id")
    r.add_argument("--quiet", action="store_true")

    e = sub.add_parser("evaluate", help="evaluate a run's final checkpoint")
    runs_dir(e)
    e.add_argument("run_id")
    e.add_argument("--split", default="test", choices=("val", "test"))
    e.add_argument("--checkpoint", choices=("best", "last"), help="the run's best-on-validation model or its "
                   "last (default: the run's own select.use)")

    pr = sub.add_parser("predict", help="draw a run's predictions on an image of any shape, at its own size")
    runs_dir(pr)
    pr.add_argument("run_id")
    pr.add_argument("image")
    pr.add_argument("--out", default="overlay.png")
    pr.add_argument("--threshold", type=float, default=0.3)
    pr.add_argument("--opacity", type=float, default=0.5)
    pr.add_argument("--checkpoint", choices=("best", "last"), help="best on validation or last (default: the run's rule)")

    ins = sub.add_parser("inspect", help="per-sample errors of a run on a split: a CSV, summaries, confusion matrices")
    runs_dir(ins)
    ins.add_argument("run_id")
    ins.add_argument("--split", default="val", help="val or test (default val)")
    ins.add_argument("--out", default="errors.csv", help="CSV to write, one row per sample")
    ins.add_argument("--threshold", type=float, default=0.3, help="score threshold of the boxes (default 0.3)")
    ins.add_argument("--limit", type=int, help="the first N samples of the split only (default: all)")
    ins.add_argument("--checkpoint", choices=("best", "last"), help="best on validation or last (default: the run's rule)")

    deploy_cli.add_parsers(sub, runs_dir)

    ls = sub.add_parser("list", help="available tasks, architectures, weighting methods, datasets, and runs")
    runs_dir(ls)
    ls.add_argument("--dataset", help="list this dataset's tasks (with --data-root for one on disk)")
    ls.add_argument("--data-root", help="the dataset's file or folder")
    ls.add_argument("--search", help="runs whose name, method, tasks, study, level, tag or note hold these words")
    ls.add_argument("--status", choices=STATUSES, help="runs in this status only")
    ls.add_argument("--tag", help="runs with this tag of yours")
    ls.add_argument("--limit", type=int, default=20, help="at most this many runs, newest first (default 20)")

    cd = sub.add_parser("check-data", help="every problem of a dataset (missing images, unknown classes, boxes outside "
                        "their image ...) with its file and row, before a run trips over it")
    cd.add_argument("--config", help="experiment config JSON or a protocol preset; flags override it")
    cd.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="any config field")
    data_flags(cd)

    study_cli.add_parser(sub, runs_dir)
    playground_cli.add_parser(sub)
    return p


def config_from_args(a: argparse.Namespace) -> ExperimentConfig:
    given = config_file(a.config) if a.config else {}
    cfg = ExperimentConfig.from_dict(merge(ExperimentConfig().to_dict(), given)) if a.config else ExperimentConfig()
    r = dataclasses.replace
    if getattr(a, "name", None) is None:  # check-data has only the data flags
        a = argparse.Namespace(**{**{k: None for k in ("name", "steps", "batch_size", "lr", "method", "weights", "arch",
                                                        "norm", "seed", "device", "time_limit", "eval_every",
                                                        "checkpoint_every")}, **vars(a)})
    if a.tasks:
        cfg = r(cfg, tasks=tuple(t.strip() for t in a.tasks.split(",") if t.strip()))
    if any(t.startswith("celeba:") for t in cfg.tasks):  # a group of CelebA's attributes stands for its members
        cfg = r(cfg, tasks=expand_task_groups(cfg.tasks))
    if a.name:
        cfg = r(cfg, name=a.name)
    optim = {k: v for k, v in (("steps", a.steps), ("batch_size", a.batch_size), ("lr", a.lr)) if v is not None}
    if optim:
        cfg = r(cfg, optim=r(cfg.optim, **optim))
    size = parse_image_size(a.image_size, "--image-size") if getattr(a, "image_size", None) is not None else None
    data = {k: v for k, v in (("image_size", size), ("train_size", getattr(a, "train_size", None)),
                               ("dataset", a.dataset), ("root", a.data_root), ("resize", a.resize),
                               ("on_error", a.on_error)) if v is not None}
    if data:
        cfg = r(cfg, data=r(cfg.data, **data))
    if a.dataset and a.dataset != "scenes" and not a.tasks and "tasks" not in given:
        cfg = r(cfg, tasks=dataset_tasks(cfg) or cfg.tasks)  # a dataset of its own: every task it supplies
    if a.method:
        cfg = r(cfg, weighting=r(cfg.weighting, method=a.method))
    if a.weights:
        try:
            values = [float(x) for x in a.weights.split(",")]
        except ValueError:
            raise MTLError(f"--weights: expected numbers like 1,0.5,2, got {a.weights!r}") from None
        if len(values) != len(cfg.tasks):
            raise MTLError(f"--weights: {len(values)} weights for {len(cfg.tasks)} tasks ({', '.join(cfg.tasks)})")
        cfg = r(cfg, weighting=r(cfg.weighting, weights=dict(zip(cfg.tasks, values))))
    if a.arch:
        cfg = r(cfg, model=r(cfg.model, architecture=a.arch))
    if a.norm:
        cfg = r(cfg, model=r(cfg.model, norm=a.norm))
    for flag, field in (("seed", "seed"), ("device", "device"), ("time_limit", "time_limit"), ("eval_every", "eval_every"),
                        ("checkpoint_every", "checkpoint_every")):
        if getattr(a, flag) is not None:
            cfg = r(cfg, **{field: getattr(a, flag)})
    if getattr(a, "use", None):
        cfg = r(cfg, select=r(cfg.select, use=a.use))
    if getattr(a, "set", None):
        cfg = ExperimentConfig.from_dict(merge(cfg.to_dict(), parse_set(a.set)))
    return cfg


class ProgressBar:
    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.t0 = total, quiet, time.time()

    def __call__(self, p: dict) -> None:
        if self.quiet:
            return
        frac = min(1.0, p["step"] / max(1, self.total))
        bar = "#" * int(frac * 30)
        losses = " ".join(f"{k[:4]}={v:.3f}" for k, v in p.get("losses", {}).items())
        sys.stderr.write(f"\r[{bar:<30}] {p['step']}/{self.total} {p.get('images_per_s', 0):.0f} img/s "
                         f"eta {p.get('eta_s', 0):.0f}s {losses}   ")
        sys.stderr.flush()


def _train(store, cfg: ExperimentConfig, run_id: str, resume: bool, quiet: bool) -> int:
    control = Control()
    previous = signal.signal(signal.SIGINT, lambda *_: control.stop())
    try:
        status = Trainer(cfg, store, run_id, control, resume=resume, on_progress=ProgressBar(cfg.optim.steps, quiet)).run()
    finally:
        signal.signal(signal.SIGINT, previous)
    if not distributed.env_info().is_main:
        return 0 if status != RunStatus.FAILED else 1
    run = store.get_run(run_id)
    if not quiet:
        sys.stderr.write("\n")
    print(f"run {run_id}: {status} at step {run['step']}")
    if status == RunStatus.FAILED:
        print(f"reason: {run['error']}", file=sys.stderr)
        return 1
    return 0


def _new_run(store, cfg: ExperimentConfig, info: distributed.DistInfo, source: str) -> str:
    """Record a run: in a single process, or by rank 0 alone under torchrun, which sends every
    other rank its id (so each run is created once, whatever the number of processes)."""
    if not info.enabled:
        return store.create_run(cfg.to_dict(), cfg.name, source, cfg.optim.steps)
    import torch.distributed

    ids = [store.create_run(cfg.to_dict(), cfg.name, source, cfg.optim.steps) if info.is_main else None]
    torch.distributed.broadcast_object_list(ids, src=0)
    return ids[0]


def main(argv: list[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    try:
        return _dispatch(a)
    except MTLError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _dispatch(a: argparse.Namespace) -> int:
    import torch
    import torch.distributed  # noqa: F401  (torchrun runs)


    if a.command == "list":
        return _list(a)
    if a.command == "check-data":
        report = check_data(config_from_args(a))
        print(report.text())
        return 0 if report.ok else 1
    if a.command == "study":
        return study_cli.main(a)
    if a.command == "playground":
        return playground_cli.main(a)
    if a.command == "train" and not distributed.env_info().is_main:
        store = RankStore(a.runs_dir or default_runs_dir())  # rank 0 alone opens the database
    else:
        store = RunStore(a.runs_dir)
    if a.command == "train":
        cfg = check(config_from_args(a))
        info, device = distributed.env_info(), None
        if info.enabled:  # under torchrun: rank 0 records each run, every rank trains it

            info, device = distributed.setup(resolve_device(cfg.device))
        quiet = a.quiet or not info.is_main
        try:
            run_id = _new_run(store, cfg, info, "torchrun" if info.enabled else "cli")
            if info.is_main:
                print(f"run id: {run_id}", flush=True)
            code = _train(store, cfg, run_id, False, quiet)
            # every rank decides alike whether the baselines follow (a failure fails every rank)
            if a.baselines and not distributed.any_flag(code != 0, info, device):
                for base in cfg.single_task_baselines(run_id):
                    bid = _new_run(store, base, info, "baseline")
                    if info.is_main:
                        print(f"baseline run id: {bid} ({base.tasks[0]})", flush=True)
                    code = max(code, _train(store, base, bid, False, quiet))
        finally:
            distributed.cleanup(info)
        return code
    if a.command == "resume":
        return _resume(store, a)
    if a.command == "evaluate":
        return _evaluate(store, a)
    if a.command == "predict":
        return _predict(store, a)
    if a.command == "inspect":
        return _inspect(store, a)
    if a.command in deploy_cli.COMMANDS:
        _run_or_error(store, a.run_id)
        return deploy_cli.dispatch(store, a)
    return 2


def _run_or_error(store, run_id: str) -> dict:
    run = store.get_run(check_run_id(run_id))
    if run is None:
        raise MTLError(f"no run {run_id!r} in {store.root}; `python -m mtl_core list` shows the runs")
    return run


def _checkpoint_path(store, run_id: str, use: str | None = None) -> str:
    """The checkpoint a command uses: ``use`` (best or last), else the run's own rule."""
    ck = store.chosen_checkpoint(run_id, use or "")
    if ck is None:
        raise MTLError(f"run {run_id} has no checkpoint yet")
    print(f"checkpoint: {ck['chosen']}", file=sys.stderr)
    return ck["path"]


def _resume(store, a) -> int:
    run = _run_or_error(store, a.run_id)
    if store.run_alive(run):  # heard from within HEARTBEAT_STALE_S (a queued run: its dashboard was)
        host = f" on host {run['host']}" if run.get("host") else ""
        raise MTLError(f"run {a.run_id} is still {run['status']}{host}; stop it first (a run whose process died "
                       f"can be resumed once it has not been heard from for {HEARTBEAT_STALE_S:.0f} s)")
    if store.latest_checkpoint(a.run_id) is None:
        raise MTLError(f"run {a.run_id} has no checkpoint yet")
    cfg = ExperimentConfig.from_dict(run["config"])
    print(f"run id: {a.run_id} (resuming)", flush=True)
    return _train(store, cfg, a.run_id, True, a.quiet)


def _evaluate(store, a) -> int:
    import torch


    _run_or_error(store, a.run_id)
    pred = Predictor(_checkpoint_path(store, a.run_id, a.checkpoint))
    ds = build_dataset(pred.config, a.split, pred.config.seed)
    with torch.no_grad():
        metrics = evaluate(pred.model, pred.tasks, ds, resolve_device("cpu"))
    for k, v in sorted(metrics.items()):
        print(f"{k:32s} {v:.4f}")
    print(json.dumps(metrics))
    return 0


def _predict(store, a) -> int:
    _run_or_error(store, a.run_id)
    pred = Predictor(_checkpoint_path(store, a.run_id, a.checkpoint))
    path = Path(a.image)
    if not path.is_file():
        raise MTLError(f"{a.image}: no such file")
    image = decode_image(path.read_bytes(), path.name)
    preds, seconds = pred.predict(image)
    atomic_write_bytes(a.out, encode_png(pred.overlay(image, preds, opacity=a.opacity, score_threshold=a.threshold)))
    for t, p in preds.items():  # what a person reads off the overlay, per task
        print(f"{t}: {pred.tasks[t].display.summarize(p, a.threshold)}")
    (h, w), (mh, mw) = image.shape[-2:], pred.input_size
    print(f"overlay written to {a.out}: {w} px wide, {h} high, as the image (the model sees {mw} x {mh}, "
          f"fitted by {pred.resize_policy}; {seconds * 1000:.1f} ms)")
    return 0


def _text_table(corner: str, rows: list[str], cols: list[str], cells: list[list[str]]) -> list[str]:
    """A small right-aligned text table with row and column labels."""
    first = max([len(corner), *map(len, rows)])
    widths = [max([len(c), *(len(r[j]) for r in cells)]) for j, c in enumerate(cols)]
    lines = ["  " + corner.ljust(first) + "".join(f"  {c:>{w}}" for c, w in zip(cols, widths, strict=True))]
    for name, row in zip(rows, cells, strict=True):
        lines.append("  " + name.ljust(first) + "".join(f"  {v:>{w}}" for v, w in zip(row, widths, strict=True)))
    return lines


def _inspect(store, a) -> int:
    if a.split not in ("val", "test"):
        raise MTLError(f"--split {a.split!r}: use --split val or --split test")
    if not 0 <= a.threshold <= 1:
        raise MTLError(f"--threshold {a.threshold}: a score threshold is between 0 and 1, e.g. --threshold 0.3")
    if a.limit is not None and a.limit < 1:
        raise MTLError(f"--limit {a.limit}: use --limit 1 or more, or leave it out for the whole split")
    _run_or_error(store, a.run_id)
    ck = store.chosen_checkpoint(a.run_id, a.checkpoint or "")
    if ck is None:
        raise MTLError(f"run {a.run_id} has no checkpoint yet; let it train until one is saved "
                       f"(or `python -m mtl_core resume {a.run_id}`)")
    outputs = split_outputs(ck["path"], a.split, limit=a.limit)  # kept beside the checkpoint for next time
    table = error_table(outputs, a.threshold)
    atomic_write_bytes(a.out, to_csv(table).encode())
    print(f"split {a.split}: {len(outputs)} samples, checkpoint {ck['chosen']}, "
          f"box score threshold {a.threshold:g}")
    for t, lines in summary(outputs.tasks, table).items():
        print(f"{t}:")
        for line in lines:
            print(f"  {line}")
    for t in outputs.tasks:
        for m in outputs.confusions(t, a.threshold):
            what = "" if m.unit == "samples" else f"{m.unit}; "
            title = outputs.tasks[t].title
            part = m.title.removeprefix(f"{title}: ") if m.title != title else ""
            heading = f"{t} ({part})" if part and part.lower() != t else t
            print(f"{heading} confusion ({what}rows true, columns predicted):")
            print("\n".join(_text_table("", m.rows, m.cols, [[str(v) for v in r] for r in m.counts])))
    failed = co_failure(list(outputs.tasks), table)
    names = failed["tasks"]
    cells = [["-" if v != v else f"{v:.0%}" for v in row] for row in failed["share"]]
    print("tasks failing together (of the samples where the row's task failed, the share where the column's "
          "failed too; diagonal: failure rate):")
    print("\n".join(_text_table("", names, names, cells)))
    print(f"errors written to {a.out} ({len(table['sample'])} rows)")
    return 0


def _list(a) -> int:
    print("tasks (built-in names): " + ", ".join(TASKS.available()))
    print("architectures:  " + ", ".join(ARCHITECTURES.available()))
    print("backbones:      " + ", ".join(BACKBONES.available()))
    print("weighting:      " + ", ".join(WEIGHTINGS.available()))
    print("datasets and the tasks they supply:")
    for name in DATASETS.available():
        supplies = getattr(DATASETS.get(name), "supplies", None)
        declares = list(getattr(DATASETS.get(name), "declares", {}))
        if declares:  # CelebA's 40 attributes: a few, then how many
            supplies = [*supplies, *declares[:3], f"... ({len(declares)} {DATASETS.get(name).declares[declares[0]].kind} tasks)"]
        print(f"  {name:<14}" + (", ".join(supplies) if supplies else "one task per column of your label table "
                                 "(list --dataset manifest --data-root FILE names them)" if name == "manifest"
                                 else "(list --dataset NAME --data-root PATH)"))
    print("task kinds:     " + ", ".join(KINDS.available()))
    if a.dataset:
        cfg = ExperimentConfig.from_dict({"data": {"dataset": a.dataset, "root": a.data_root or ""}})
        print(f"tasks of {a.dataset}:")
        for t in check_data(dataclasses.replace(cfg, tasks=())).tasks:
            print(f"  {t['name']:<20} {t['kind']}")

    found = RunStore(a.runs_dir).find_runs(a.search or "", statuses=[a.status] if a.status else None,
                                            label=a.tag, limit=a.limit, counts=False)
    if found.rows or a.search or a.status or a.tag:
        print(f"runs ({len(found.rows)} of {found.total}, newest first"
              + (f"; more with --limit {min(found.total, 10 * a.limit)})" if found.total > len(found.rows) else ")")
              + ":")
        for r in found.rows:
            tags = f"  [{', '.join(r['labels'])}]" if r.get("labels") else ""
            print(f"  {r['id']}  {r['status']:<11} step {r['step']}/{r['total_steps']}  {r['name']}{tags}")
    return 0
