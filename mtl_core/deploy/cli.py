"""The deploy commands of the CLI: ``export``, ``compress`` (int8, magnitude or channel pruning)
and ``importance``; ``mtl_core.cli`` adds their parsers and hands them their parsed arguments."""
from __future__ import annotations

from mtl_core.deploy.compress import compress_run
from mtl_core.deploy.export import export_run
from mtl_core.deploy.importance import DEFAULT_THRESHOLD, run_importance
from mtl_core.deploy.structured import format_table, prune_run
from mtl_core.errors import MTLError
from mtl_core.training.checkpoint import atomic_write_bytes

COMMANDS = ("export", "compress", "importance")


def add_parsers(sub, runs_dir) -> None:
    """The deploy subcommands on ``sub`` (argparse subparsers); ``runs_dir(parser)`` adds --runs-dir."""
    ex = sub.add_parser("export", help="export a run's model to ONNX or TorchScript, checked against PyTorch")
    runs_dir(ex)
    ex.add_argument("run_id")
    ex.add_argument("--format", required=True, choices=("onnx", "torchscript"))
    ex.add_argument("--out", required=True, help="file to write, e.g. model.onnx")
    ex.add_argument("--checkpoint", help="a checkpoint to export instead of the run's latest (e.g. a pruned one)")
    ex.add_argument("--samples", type=int, default=4, help="validation images the check runs on")

    cp = sub.add_parser("compress", help="int8-quantize or prune a run's model; report size, latency, metrics")
    runs_dir(cp)
    cp.add_argument("run_id")
    cp.add_argument("--method", choices=("int8", "int8-dynamic", "prune"),
                    help="int8 / int8-dynamic quantization, or prune: unstructured magnitude pruning, which zeroes "
                         "weights but keeps every shape, so the model is NOT faster and its file no smaller "
                         "(use --prune-channels for that)")
    cp.add_argument("--amount", type=float, default=0.5, help="prune: fraction of conv/linear weights to zero")
    cp.add_argument("--prune-channels", type=float, metavar="AMOUNT",
                    help="structured pruning: remove this fraction of every layer's channels outside the task heads "
                         "(a genuinely smaller, faster model), then fine-tune and int8-quantize it; prints a table")
    cp.add_argument("--finetune-steps", type=int, default=0, help="--prune-channels: fine-tuning steps after pruning")
    cp.add_argument("--importance", choices=("magnitude", "taylor"), default="magnitude",
                    help="--prune-channels: rank channels by weight norm or by |weight x gradient|")
    cp.add_argument("--eval-limit", type=int, help="validation images to score on (default: all)")

    im = sub.add_parser("importance", help="how much each task relies on each channel of the shared backbone")
    runs_dir(im)
    im.add_argument("run_id")
    im.add_argument("--batches", type=int, default=4, help="validation batches (of 16 images) to average over")
    im.add_argument("--layer", action="append", help="only this layer (features, stage1 ...); repeat for more")
    im.add_argument("--threshold", type=float, help="a task uses a channel with at least this x its mean importance (0.1)")
    im.add_argument("--out", default="importance.csv", help="CSV to write: layer, channel, one column per task")


def dispatch(store, a) -> int:
    """Run the deploy command ``a.command`` on the run ``a.run_id`` (the caller has checked it exists)."""
    return {"export": _export, "compress": _compress, "importance": _importance}[a.command](store, a)


def _export(store, a) -> int:
    result = export_run(store, a.run_id, a.format, a.out, checkpoint=a.checkpoint, samples=a.samples)
    print(result.summary())
    for name, diff in result.max_abs_diff.items():
        print(f"  {name:24s} max abs diff {diff:.2e}")
    return 1 if result.ok is False else 0


def _compress(store, a) -> int:
    if a.prune_channels is not None:
        return _prune_channels(store, a)
    if a.method is None:
        raise MTLError("compress needs --method (int8, int8-dynamic or prune) or --prune-channels AMOUNT")
    report = compress_run(store, a.run_id, a.method, a.amount, eval_limit=a.eval_limit)
    print(f"{report.method}: {report.note}")
    for row in report.rows():
        print(f"  {row['measure']:40s} {row['before']:>14.4f} -> {row['after']:>14.4f}  ({row['relative']:+.1%})")
    for kind, path in report.files.items():
        print(f"{kind} written to {path}")
    return 0


def _importance(store, a) -> int:
    imp = run_importance(store, a.run_id, batches=a.batches, layers=a.layer,
                         threshold=DEFAULT_THRESHOLD if a.threshold is None else a.threshold)
    atomic_write_bytes(a.out, imp.to_csv().encode())
    print(f"first-order Taylor importance on {imp.batches} validation batches; a task uses a channel with at "
          f"least {imp.threshold:g} x its mean importance")
    for layer in imp.layers:
        print(f"{layer}:\n" + "\n".join(f"  {line}" for line in imp.summary(layer)))
    print(f"importance written to {a.out} ({sum(v.shape[1] for v in imp.layers.values())} rows)")
    return 0


def _prune_channels(store, a) -> int:
    report = prune_run(store, a.run_id, a.prune_channels, a.finetune_steps, importance=a.importance,
                       eval_limit=a.eval_limit)
    spec = report["spec"]
    print(f"channel pruning: {spec['amount']:.0%} of every layer's channels outside the task heads removed "
          f"({spec['importance']} importance), {spec['finetune_steps']} fine-tuning steps, then int8; "
          f"multiply-adds counted by torch.utils.flop_counter.FlopCounterMode, latency = median CPU ms")
    print(format_table(report["rows"]))
    for kind, path in report["files"].items():
        print(f"{kind} written to {path}")
    return 0
