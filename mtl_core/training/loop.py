"""The training loop: steps, evaluation, checkpoints, pause/stop, weight changes, NaN guard.

Knows nothing of Streamlit. A :class:`Trainer` writes everything to the run store and is
steered through it (:mod:`mtl_core.training.control`): a command sent from a page, the CLI or
another process reaches it at its next step, on every rank at the same step under torchrun.
"""
from __future__ import annotations

import dataclasses
import itertools
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch

from mtl_core.config import ExperimentConfig
from mtl_core.data.augment import Augmenter
from mtl_core.data.base import collate, select, to_device
from mtl_core.data.labels import apply_budget, scale_losses
from mtl_core.errors import ConfigError
from mtl_core.isolation import pin_threads
from mtl_core.protocols.selection import BEST_SPLIT
from mtl_core.store.liveness import HEARTBEAT_SECONDS, Heartbeat, host_and_pid
from mtl_core.store.status import RunStatus
from mtl_core.store.store import RunStore
from mtl_core.tasks import target_kinds
from mtl_core.training import distributed
from mtl_core.training.best import BestSoFar, mean_last_steps
from mtl_core.training.builders import autocast, autocast_dtype, build_all, build_optimizer, lr_factor, resolve_device
from mtl_core.training.checkpoint import check_compatible, load_checkpoint, save_checkpoint
from mtl_core.training.control import Control, Decision, Steering, finite_losses
from mtl_core.training.evaluation import evaluate, split_batches
from mtl_core.training.failure import record_failure
from mtl_core.training.gradstats import gradient_stats, rep_gradients, task_gradients
from mtl_core.weighting import StepContext, build_weighting

PAUSE_POLL_SECONDS = 0.2  # how often a paused run looks for its next command


def masked_loss(task, output, target, valid: torch.Tensor | None) -> torch.Tensor:
    """The task's loss over the samples that have its label; 0 (still in the graph) when none do."""
    if valid is None or bool(valid.all()):
        return task.loss(output, target).float()
    if not bool(valid.any()):
        return 0.0 * sum(o.float().sum() for o in _tensors(output))
    return task.loss(select(output, valid), select(target, valid)).float()


def _tensors(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    return [t for v in obj.values() for t in _tensors(v)] if isinstance(obj, dict) else []


def _info_dict(info) -> dict[str, Any]:
    d = dataclasses.asdict(info)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


class Trainer:
    """Trains one run and records it in ``store``. ``run()`` never raises: a failure becomes the
    run's status, reason and traceback."""

    flush_seconds = 0.5

    def __init__(self, config: ExperimentConfig, store: RunStore, run_id: str, control: Control | None = None,
                 resume: bool = False, on_progress: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.run_id = run_id
        self.control = control or Control()
        self.resume = resume
        self.on_progress = on_progress
        self.step = 0
        self.heartbeat: Heartbeat | None = None
        self._rows: list[tuple[int, str, str, float, float]] = []
        self._last_flush = 0.0
        self._eval_batches: dict[str, list | None] = {}  # split -> its batches, made at the first evaluation
        self._last_progress = 0.0  # its own clock: forced flushes (checkpoints) must not starve it
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)  # the data order of the epoch drawn from

    # -- public -----------------------------------------------------------------
    def run(self) -> str:
        """Train to the end (or stop/failure); returns the final status."""
        pin_threads()  # this thread's intra-op threads, fixed now, whatever another thread does later
        try:
            status = self._train()
        except Exception as e:  # any fault inside a run ends that run only (MemoryError included)
            status = record_failure(self.store, self.run_id, self.step, e, traceback.format_exc(),
                                    lambda: self._flush(force=True))
        finally:
            if self.heartbeat is not None:
                self.heartbeat.stop()
        return status

    # -- internals --------------------------------------------------------------
    def _log(self, step: int, split: str, values: dict[str, float]) -> None:
        now = time.time()
        self._rows.extend((step, split, k, float(v), now) for k, v in values.items())

    def _flush(self, force: bool = False) -> None:
        if self._rows and (force or time.time() - self._last_flush > self.flush_seconds):
            self.store.log_metrics(self.run_id, self._rows)
            self._rows = []
            self._last_flush = time.time()

    def _setup(self) -> None:
        cfg = self.config
        self.dist, self.device = distributed.setup(resolve_device(cfg.device))
        if self.dist.enabled and cfg.weighting.rep_grad:
            raise ConfigError("weighting.rep_grad", "rep_grad is per-sample and cannot be averaged across processes; "
                              "turn it off for multi-process training")
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        built = build_all(cfg, ("train", "val", "test"))
        self.datasets, self.tasks, self.model = built["datasets"], built["tasks"], built["model"]
        self.model.to(self.device)
        # channels-last: faster convolutions on CUDA and with oneDNN on CPU (measured +20% on 2 cores)
        self.model.to(memory_format=torch.channels_last)
        if self.device.type == "cuda":
            if self.dist.enabled and cfg.model.norm == "batch":
                self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.method = build_weighting(cfg.weighting.method, list(self.tasks), cfg.weighting.params,
                                      cfg.weighting.weights, cfg.weighting.rep_grad).to(self.device)
        if cfg.weighting.rep_grad and not self.model.supports_rep:
            self.model._no_rep()
        # the method's learnable parameters (UW's log-variances) train with the model; those it
        # steps itself (GradNorm's, FAMO's) are frozen to everyone else
        self.method_params = [p for p in self.method.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(list(self.model.parameters()) + self.method_params, cfg.optim)
        self.base_lrs = [g["lr"] for g in self.optimizer.param_groups]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        if self.scaler.is_enabled():  # the scale exists from the first scale() (unscale_ refuses a scaler without
            self.scaler.scale(torch.ones((), device=self.device))  # one); the methods multiply by it themselves

        self.augmenter = Augmenter(cfg.augment, cfg.data.image_size)
        self.augmenter.kinds = target_kinds(self.tasks)  # a label table's "mask" column moves as a mask
        self.shared = self.model.shared_parameters()
        self.steering = Steering(self.store, self.run_id, list(self.tasks), self.method, self.control, self.dist,
                                 self.device, cfg.time_limit)
        self.step = 0
        self.best = BestSoFar(cfg.select, self.tasks)
        self._mean_steps = mean_last_steps(cfg)
        if self.resume:
            self._load_latest()
        elif self.dist.is_main:
            self._record_skipped()

    def _record_skipped(self) -> None:
        """With ``data.on_error: skip``, how many rows of each split were left out and why (an
        event at step 0, which the Live page shows): a run on cleaned data says it was cleaned."""
        ds = self.datasets["train"]  # the check covers the whole table: every split says the same
        if getattr(ds, "skipped", None):
            self.store.add_event(self.run_id, 0, "skipped_rows", {"rows": ds.skipped_rows, "why": ds.skipped})

    def _load_latest(self) -> None:
        ck = None
        if self.dist.is_main:
            for stale in self.store.run_dir(self.run_id).glob(".*.tmp"):  # left by a write killed mid-way
                stale.unlink(missing_ok=True)
            ck = self.store.latest_checkpoint(self.run_id)
        if self.dist.enabled:  # every rank loads the checkpoint rank 0 chose (a path on a shared disk)
            sent = [ck]
            torch.distributed.broadcast_object_list(sent, src=0)
            ck = sent[0]
        if ck is None:
            return
        payload = load_checkpoint(ck["path"], map_location=self.device)
        check_compatible(payload["config"], self.config)
        self.model.load_state_dict(payload["model"])
        if "optimizer" in payload:
            self.optimizer.load_state_dict(payload["optimizer"])
        if "method" in payload:
            self.method.load_state_dict(payload["method"])  # with the task weights in force at that step
        # the best model as of that step: what came after it is undone, like its metrics
        self.best.restore(payload.get("select") or {})
        self.step = int(payload["step"])
        # what happened after the checkpoint is undone: its metrics and its events (a weight change
        # made later is no longer in force, so it must not be drawn on the curves)
        self.store.truncate_metrics(self.run_id, self.step)
        self.store.truncate_events(self.run_id, self.step, after_wall=ck.get("wall"))
        self.store.add_event(self.run_id, self.step, "resumed_from_checkpoint", {"path": ck["path"]})

    def _checkpoint(self, kind: str) -> None:
        if not self.dist.is_main:
            return
        self._flush(force=True)  # every step up to the checkpoint is in the store before it exists
        name = {"final": "final.pt", "best": "best.pt"}.get(kind, "last.pt")
        path = self.store.run_dir(self.run_id) / name
        extra: dict[str, Any] = {"info": _info_dict(self.datasets["train"].info), "select": self.best.state()}
        if kind != "best":  # the best model is for predictions: training goes on from last.pt
            extra.update(optimizer=self.optimizer.state_dict(), method=self.method.state_dict())
        save_checkpoint(path, self.config, self.step, self.model.state_dict(), extra)
        self.store.add_checkpoint(self.run_id, self.step, str(path), kind)

    def _test_best(self, last: dict[str, float]) -> None:
        """The best model's test metrics (split ``test_best`` at its step): ``last`` (the last
        model's) when it is the best, else best.pt's weights, loaded into the model after final.pt
        is written."""
        step = self.best.step
        if not self.dist.is_main or step is None:
            return
        if step == self.step:
            self._log(step, BEST_SPLIT, last)
            self._flush(force=True)
            return
        ck = self.store.latest_checkpoint(self.run_id, "best")
        if ck is None:
            return
        self.model.load_state_dict(load_checkpoint(ck["path"], map_location=self.device)["model"])
        self._evaluate("test", split_name=BEST_SPLIT, step=step)

    def _draw(self, d: int):
        """The ``d``-th batch of the run's data order (a fresh seeded permutation per epoch); a step
        draws ``batches_per_step`` consecutive ones, so the step alone says which (and a resumed
        run draws on where it stopped)."""
        n, bs = len(self.datasets["train"]), self.config.optim.batch_size
        e, pos = divmod(d * bs, max(1, n - n % bs) if n >= bs else n)
        if e != self._epoch:
            self._epoch = e
            self._order = torch.randperm(n, generator=torch.Generator().manual_seed(self.config.seed * 7919 + e))
        return self._batch(self._order, pos, d)

    def _batch(self, order: torch.Tensor, pos: int, d: int):
        ds = self.datasets["train"]
        bs = self.config.optim.batch_size
        idx = distributed.shard(order[pos:pos + bs].tolist(), self.dist)
        on_gpu = self.device.type == "cuda" and getattr(ds, "renders_on_device", False)
        if on_gpu:  # the procedural scenes are drawn on the GPU itself, or it would starve
            images, targets = ds.get_batch(idx, device=self.device)
        elif hasattr(ds, "get_batch"):
            images, targets = ds.get_batch(idx)
        else:
            images, targets = collate([ds[i] for i in idx], ds.info.max_objects or None)
        targets = apply_budget(targets, idx, self.tasks, self.config.data, self.config.seed)
        if not self.augmenter.is_identity:
            g = torch.Generator().manual_seed(self.config.seed * 1_000_003 + d)  # d = step, one batch a step
            images, targets = self.augmenter.augment_batch(images, targets, generator=g)
        nb = self.device.type == "cuda"
        images = images.to(self.device, non_blocking=nb).contiguous(memory_format=torch.channels_last)
        return images, to_device(targets, self.device, nb)

    def _evaluate(self, split: str = "val", split_name: str = "", step: int | None = None) -> dict[str, float]:
        """Evaluate on ``split`` and log it (as ``split_name`` at ``step`` when given); a validation
        evaluation also decides whether this model is the best so far, and with ``mean_last``
        one of the last evaluations scores the test split too."""
        ds = self.datasets[split]
        bs = max(64, self.config.optim.batch_size)
        if split not in self._eval_batches:
            self._eval_batches[split] = split_batches(ds, bs)
        result = evaluate(self.model, self.tasks, ds, self.device, batch_size=bs, amp_dtype=self.amp_dtype,
                          batches=self._eval_batches[split])
        self._log(self.step if step is None else step, split_name or split, result)
        self._flush(force=True)
        if split == "val" and not split_name:
            if self.best.improves(result, self.step):
                self._checkpoint("best")
            if self.step in self._mean_steps and self.step < self.config.optim.steps:
                self._evaluate("test")
        return result

    def _apply(self, d: Decision) -> None:
        """Record what rank 0 noticed and apply new task weights from this step on."""
        for kind, payload in d.notes:
            self.store.add_event(self.run_id, self.step, kind, payload)
        if d.weights is not None:
            old = dict(self.method.user_weights)
            self.method.set_user_weights(d.weights)
            self.store.add_event(self.run_id, self.step, "weights", {"old": old, "new": dict(self.method.user_weights)})

    def _pause(self, d: Decision) -> Decision:
        """Wait, paused, until a command resumes or stops the run (weight changes apply meanwhile)."""
        self._flush(force=True)
        self.store.update_progress(self.run_id, self.step)  # the step it waits at, not the last one reported
        self.store.set_status(self.run_id, RunStatus.PAUSED)
        self.store.add_event(self.run_id, self.step, "paused")
        while d.paused and not d.stop:
            self.steering.wait(PAUSE_POLL_SECONDS)
            d = self.steering.decide(self.step)
            self._apply(d)
        if not d.stop:
            self.store.set_status(self.run_id, RunStatus.RUNNING)
            self.store.add_event(self.run_id, self.step, "resumed")
        return d

    def _start_heartbeat(self) -> None:
        """Beat from the start: building datasets and the model can take longer than the
        staleness limit (a large real dataset being indexed), and the run is alive meanwhile."""
        if not distributed.env_info().is_main:
            return
        host, pid = host_and_pid()
        store = self.store
        self.heartbeat = Heartbeat(lambda: store.heartbeat(self.run_id, host, pid), HEARTBEAT_SECONDS,
                                   name=f"heartbeat-{self.run_id}").start()

    def _train(self) -> str:
        cfg = self.config
        if not distributed.env_info().is_main:
            self.store = distributed.RankStore(getattr(self.store, "root", "."))
        self.store.set_status(self.run_id, RunStatus.RUNNING)
        self._start_heartbeat()
        self._setup()
        host, pid = host_and_pid()
        self.params = sum(p.numel() for p in self.model.parameters())
        self.store.update_progress(self.run_id, self.step, {"pid": pid, "host": host, "phase": "training",
                                                            "params": self.params}, device=str(self.device))
        self.model.train()
        k = self.method.batches_per_step
        imgs_done = 0
        last_eval_step = -1
        while self.step < cfg.optim.steps:
            d = self.steering.decide(self.step)  # the same decision on every rank
            self._apply(d)
            if d.paused:
                d = self._pause(d)
            if d.stop:
                return self._finish(RunStatus.STOPPED)
            if d.time_up:
                self.store.add_event(self.run_id, self.step, "time_limit", {"seconds": cfg.time_limit})
                break
            batches = [self._draw(self.step * k + j) for j in range(k)]  # (images, targets) each
            for group, base in zip(self.optimizer.param_groups, self.base_lrs):
                group["lr"] = base * lr_factor(self.step, cfg.optim, d.time_fraction)
            losses = self._train_step(batches)
            self.step += 1
            imgs_done += sum(images.shape[0] for images, _ in batches)
            if (self.step % cfg.eval_every == 0 or self.step == cfg.first_eval) and self.step < cfg.optim.steps:
                self._evaluate("val")
                last_eval_step = self.step
            if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                self._checkpoint("periodic")
            self._progress(losses, imgs_done)
        if last_eval_step != self.step:
            self._evaluate("val")
        last = self._evaluate("test")
        self._checkpoint("final")
        self._test_best(last)
        return self._finish(RunStatus.FINISHED)

    def _losses(self, images, targets, seen: list[dict[str, float]]):
        """One batch's forward: its per-task losses and shared representation. Their values (the
        global batch's under torchrun) are appended to ``seen`` after the NaN guard; the step's
        first batch also gives the gradient statistics."""
        with autocast(self.device, self.amp_dtype):
            outputs, rep = self.model.forward_train(images, rep_grad=self.method.rep_grad)
            losses = {t: masked_loss(task, outputs[t], *task.target_of(targets)) for t, task in self.tasks.items()}
            losses = scale_losses(losses, self.config.data.loss_scale)
        values_t = torch.stack([v.detach() for v in losses.values()])  # (T,)
        if self.dist.enabled:
            # every rank sees the global batch's loss values (so weights agree, and a NaN on one
            # rank is a NaN on all of them) and keeps its own graph
            mean_t = distributed.mean(values_t, self.dist)
            losses = {t: v + (mean_t[i] - v.detach()) for i, (t, v) in enumerate(losses.items())}
            values_t = mean_t
        values = dict(zip(losses, values_t.tolist()))
        finite_losses(values, self.step)
        every = self.config.gradstats_every
        if not seen and every and self.step % every == 0 and len(losses) > 1:
            # conflict where the method combines the tasks: on the shared representation under
            # rep_grad (what the heads' detached copies receive), else on the shared parameters
            grads = rep_gradients(losses, rep) if rep is not None else \
                task_gradients(losses, self.shared) if self.shared else None
            if grads is not None:
                self._log(self.step + 1, "train", gradient_stats(grads))
        seen.append(values)
        return losses, rep

    def _train_step(self, batches: list) -> dict[str, float]:
        """One update from this step's batches: one, or the method's ``batches_per_step``. The
        losses logged (and returned) are their mean over the batches: every batch is evaluated at
        the same parameters, so it is the loss on all the samples the step drew."""
        self.optimizer.zero_grad(set_to_none=True)
        seen: list[dict[str, float]] = []
        # the first batch's forward runs now: the method takes it first anyway, and its shared
        # representation (rep_grad, one batch a step) goes in the step's context; each later
        # forward runs when the method takes its batch, after the previous one's backward
        first, rep = self._losses(*batches[0], seen)
        rest = (self._losses(images, targets, seen)[0] for images, targets in batches[1:])
        ctx = StepContext(
            step=self.step,
            # fp16: the method weighs the true losses and scales only what it back-propagates
            loss_scale=float(self.scaler.get_scale()) if self.scaler.is_enabled() else 1.0,
            reduce=(lambda g: distributed.mean(g, self.dist)) if self.dist.enabled else None,
            rep=rep)
        weights = self.method.combine(itertools.chain([first], rest), self.shared, ctx)
        if len(seen) != len(batches):
            raise RuntimeError(f"{self.method.name} used {len(seen)} of its {len(batches)} batches")
        values = {t: sum(v[t] for v in seen) / len(seen) for t in seen[0]}
        if self.dist.enabled:
            done = {id(p) for p in self.shared} if self.method.kind == "gradient" else set()
            distributed.average_grads(list(self.model.parameters()) + self.method_params, self.dist, done)
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
        if self.config.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        row = {f"loss/{t}": v for t, v in values.items()}
        row.update({f"weight/{t}": w for t, w in weights.items()})
        row["loss/total"] = sum(weights[t] * values[t] for t in values)
        row["lr"] = self.optimizer.param_groups[0]["lr"]
        self._log(self.step + 1, "train", row)  # step k = the k-th update, as evaluations and checkpoints count
        return values

    def _progress(self, losses: dict[str, float], imgs_done: int) -> None:
        now = time.time()
        if now - self._last_progress <= self.flush_seconds and self.step < self.config.optim.steps:
            return
        self._last_progress = now
        elapsed = self.steering.training_seconds(now)
        rate = imgs_done / max(elapsed, 1e-9)
        steps_left = self.config.optim.steps - self.step
        eta = steps_left * self.config.optim.batch_size * self.method.batches_per_step / max(rate, 1e-9)
        if self.config.time_limit:
            eta = min(eta, max(0.0, self.config.time_limit - elapsed))
        host, pid = host_and_pid()
        info = {"pid": pid, "host": host, "images_per_s": rate, "eta_s": eta, "elapsed_s": elapsed, "losses": losses,
                "params": self.params}  # the weights in force are the run's config and events (mtl_core.weights)
        if self.device.type == "cuda":
            info["gpu_memory_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
        self._log(self.step, "train", {"images_per_s": rate})
        self._flush()
        self.store.update_progress(self.run_id, self.step, info)
        if self.on_progress:
            self.on_progress({"step": self.step, **info})

    def _finish(self, status: str) -> str:
        self._flush(force=True)
        if status == RunStatus.STOPPED:
            self._checkpoint("periodic")
        self.store.update_progress(self.run_id, self.step)
        self.store.set_status(self.run_id, status)
        return status
