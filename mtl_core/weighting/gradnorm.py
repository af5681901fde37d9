"""GradNorm: Chen, Badrinarayanan, Lee, Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018.

Learnable task weights ``w_t`` are tuned so that the gradient norms ``G_t = ||grad_W w_t L_t||`` on
the last shared layer ``W`` match ``mean(G) * r_t^alpha``, with ``r_t`` the relative inverse
training rate ``(L_t / L_t(0)) / mean_i(L_i / L_i(0))``: a task that trains slower is pushed
harder. The weights are renormalised to sum to ``T`` after each update. The model is trained on
``sum_t w_t L_t`` with the weights detached.

The weights are this method's own state, stepped by its own Adam (``lr``, default 0.025), not
by the engine's optimiser. Since the targets are held constant (as in the paper), the
derivative of ``sum_t |G_t - target_t|`` is ``sign(G_t - target_t) ||grad_W L_t||``: exact,
without a second-order backward. ``W`` is the last shared tensor with at least two dimensions
(a layer's weight, not a bias or norm scale), or the last shared tensor when none has.
``L_t(0)`` are the losses at the first step this method sees.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from mtl_core.weighting.base import LossWeighting, register_weighting


def last_shared_weight(shared_params: list[Tensor]) -> Tensor:
    """The tensor GradNorm measures gradients on: the last shared layer's weight."""
    trainable = [p for p in shared_params if p.requires_grad]
    if not trainable:
        raise ValueError("GradNorm needs at least one shared parameter that requires grad")
    matrices = [p for p in trainable if p.dim() >= 2]
    return (matrices or trainable)[-1]


@register_weighting("gradnorm")
class GradNorm(LossWeighting):
    weights_note = "it learns the weights that balance the tasks' gradient norms, which undoes any multiplier"
    citation = ("Chen, Badrinarayanan, Lee, Rabinovich (2018). GradNorm: Gradient Normalization for Adaptive "
                "Loss Balancing in Deep Multitask Networks. ICML.")
    defaults = {"alpha": 1.5, "lr": 0.025}
    state_attrs = ("opt",)
    fuse_reads_params = True
    batched = True

    def __init__(self, tasks, params=None, weights=None, rep_grad=False) -> None:
        super().__init__(tasks, params, weights, rep_grad)
        # (T,) stepped here by its own optimiser, so frozen: the trainer's optimiser leaves it alone
        self.w = nn.Parameter(torch.ones(len(self.tasks)), requires_grad=False)
        self.opt = torch.optim.Adam([self.w], lr=self.params["lr"])
        self.register_buffer("initial", None)  # (T,) L_t(0)

    def fuse(self, losses, step, shared_params):
        w = self.w.detach().to(losses.dtype).clone()  # (T,) this step's weights; a copy: w is stepped below
        total = (w * losses).sum()
        layer = last_shared_weight(shared_params)
        norms = []
        for loss in losses:
            (g,) = torch.autograd.grad(loss, layer, retain_graph=True, allow_unused=True)
            norms.append(torch.linalg.vector_norm(g).float() if g is not None else losses.new_zeros((), dtype=torch.float))
        norms = torch.stack(norms)  # (T,) ||grad_W L_t||
        current = losses.detach().float()  # (T,)
        if self.initial is None:
            self.initial = current.clone()
        self.initial = self.initial.to(current.device)
        self._balance(self.w, self.opt, current, self.initial, norms)
        return total, w

    def _balance(self, w: Tensor, opt: torch.optim.Optimizer, current: Tensor, initial: Tensor, norms: Tensor) -> None:
        """Step the weights ``w (..., T)`` towards balanced gradient norms ``w_t ||grad_W L_t||``, given
        the losses now and at the first step and the norms ``||grad_W L_t||`` (each ``(..., T)``)."""
        ratio = current / initial.clamp_min(1e-12)  # inverse training rate
        r = ratio / ratio.mean(-1, keepdim=True).clamp_min(1e-12)
        g = w.detach() * norms  # G_t
        target = g.mean(-1, keepdim=True) * r ** self.params["alpha"]
        opt.zero_grad(set_to_none=True)
        w.grad = torch.sign(g - target) * norms
        opt.step()
        w.grad = None  # stepped: no other optimiser holding it may step it again
        with torch.no_grad():  # renormalise to sum T; keep weights positive
            w.clamp_(min=1e-6)
            w.mul_(w.shape[-1] / w.sum(-1, keepdim=True))

    def fuse_batch(self, losses, step, grads=None):
        """The same on ``S`` problems ``losses (S, T)``, whose task gradients on the shared
        parameters are ``grads (S, T, D)`` (the playground's model is all shared, so they are those
        on its last layer): each problem with its own weights, Adam and first losses
        (``_batch_w (S, T)``..., kept apart from the one-problem state; one Adam over the ``(S, T)``
        weights is an Adam per problem)."""
        if grads is None:
            raise ValueError("GradNorm reads the task gradients on the shared parameters: pass grads (S, T, D)")
        s, t = losses.shape
        w = getattr(self, "_batch_w", None)
        if w is None or w.shape != (s, t):
            w = self.w.detach().expand(s, t).clone()  # a plain tensor: not one of the module's parameters
            self._batch_w = w
            self._batch_opt = torch.optim.Adam([w], lr=self.params["lr"])
            self._batch_initial = None if self.initial is None else self.initial.expand(s, t).clone()
        current = losses.detach().float()  # (S, T)
        if self._batch_initial is None:
            self._batch_initial = current.clone()
        weights = w.detach().to(losses.dtype).clone()  # this step's weights, before they are stepped
        self._balance(w, self._batch_opt, current, self._batch_initial, torch.linalg.vector_norm(grads, dim=-1).float())
        return (weights * losses).sum(-1), weights
