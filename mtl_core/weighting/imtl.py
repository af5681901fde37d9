"""IMTL, both halves of Impartial Multi-Task Learning: Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang,
"Towards Impartial Multi-task Learning", ICLR 2021.

As the paper's hybrid (and LibMTL's ``weighting/IMTL.py``): each task's loss becomes IMTL-L's
``exp(s_t) L_t - s_t`` with a learnable scale ``s_t`` (:func:`imtl_l.scaled_loss`); the task heads
and the ``s_t`` are trained on these scaled losses, and the shared parameters (or the shared
representation) get IMTL-G's closed-form combination of the scaled losses' gradients
(:class:`imtl_g.IMTLG`), whose projections on every unit gradient are equal. The ``s_t`` are
optimised by the engine's optimiser with the model (returned by :meth:`parameters`), towards
``exp(s_t) L_t = 1``.

IMTL-G is unchanged by multiplying a task's gradient, so the shared update is IMTL-G's on the
raw gradients: ``sum_t alpha_t exp(s_t) g_t``. The weight reported for each task is that
``alpha_t exp(s_t)``, the weight of its true loss in the shared update (its head's gradient is
``exp(s_t)`` times its own); :meth:`combine_grads` alone returns the ``alpha_t`` on the gradients
it is given.
"""
from __future__ import annotations

import torch
from torch import nn

from mtl_core.weighting.base import register_weighting
from mtl_core.weighting.imtl_g import IMTLG
from mtl_core.weighting.imtl_l import scaled_loss


@register_weighting("imtl")
class IMTL(IMTLG):
    weights_note = ("it learns a scale for every loss so that the scaled losses are equal, and its shared update is the "
                    "same whatever each gradient is multiplied by, so a multiplier is undone")
    citation = "Liu, Li, Kuang, Xue, Chen, Yang, Liao, Zhang, 'Towards Impartial Multi-task Learning', ICLR 2021 (IMTL)."

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        self.scale = nn.Parameter(torch.zeros(len(self.tasks)))  # (T,) log of each task's scale

    def prepare(self, losses, ctx):
        # one graph per task (the representation mode back-propagates each without retaining it);
        # IMTL-G's weights are on the scaled losses' gradients: exp(s_t) times the true ones
        # (task by task: a task's losses of several problems, with a scale per problem, :meth:`per_problem`)
        scaled = {t: scaled_loss(losses[t], self.scale[..., i].to(losses[t].dtype)) for i, t in enumerate(self.tasks)}
        return scaled, dict(zip(self.tasks, torch.exp(self.scale.detach()).movedim(-1, 0).tolist()))
