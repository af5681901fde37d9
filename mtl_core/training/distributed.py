"""Data-parallel training under ``torchrun`` (gloo on CPU, NCCL on GPU).

Every rank holds a full replica and takes its share of each global batch. Gradients are
averaged across ranks by hand after the weighting method has run (not by a
DistributedDataParallel wrapper, which cannot follow the several backward passes that
gradient methods make), and gradient methods average the per-task gradients across ranks
*before* combining them, so every rank computes the same update as one process on the whole
global batch would. Rank 0 alone writes the run store and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from mtl_core.errors import ConfigError
from mtl_core.store.ids import check_run_id


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_info() -> DistInfo:
    """What ``torchrun`` put in the environment (a single process when nothing is there)."""
    return DistInfo(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))


def setup(device: torch.device) -> tuple[DistInfo, torch.device]:
    """Join the process group when launched by torchrun; returns the rank info and this rank's device."""
    info = env_info()
    if not info.enabled:
        return info, device
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The average of ``t`` over ranks (``t`` itself in a single process)."""
    if not info.enabled:
        return t
    t = t.detach().clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world


def average_grads(params: list[torch.Tensor], info: DistInfo, skip: set[int] | None = None) -> None:
    """Average ``.grad`` of ``params`` across ranks, in one flat all-reduce."""
    if not info.enabled:
        return
    todo = [p for p in params if p.grad is not None and (skip is None or id(p) not in skip)]
    if not todo:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in todo])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= info.world
    i = 0
    for p in todo:
        n = p.grad.numel()
        p.grad.copy_(flat[i:i + n].view_as(p.grad))
        i += n


def any_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """True on every rank when any rank raised ``flag`` (a stop request, say)."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def shard(indices: list[int], info: DistInfo) -> list[int]:
    """This rank's contiguous share of a global batch."""
    if not info.enabled:
        return indices
    if len(indices) % info.world:
        raise ConfigError("optim.batch_size", f"the global batch size {len(indices)} must be divisible by the "
                          f"number of processes ({info.world})")
    n = len(indices) // info.world
    return indices[info.rank * n:(info.rank + 1) * n]


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


class RankStore:
    """The run store as ranks other than 0 see it: they never open its database (SQLite's WAL
    needs every process that opens it on one host, and rank 0 may train on another node), every
    write is dropped, and what they need to know (the checkpoint to resume from) rank 0 sends."""

    WRITES = {"create_run", "set_status", "update_progress", "log_metrics", "add_event", "add_checkpoint",
              "truncate_metrics", "truncate_events", "delete_run", "rename", "mark_interrupted", "heartbeat",
              "set_owner", "register_owner", "owner_heartbeat", "remove_owner", "send_command", "mark_command"}

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def run_dir(self, run_id: str) -> Path:
        return self.root / check_run_id(run_id)

    def __getattr__(self, name: str):
        if name in self.WRITES:
            return lambda *a, **k: None
        raise AttributeError(f"ranks other than 0 do not read the run store (asked for {name})")
