"""Loss-weighting and gradient-combination methods, registered by name."""
from mtl_core.weighting.base import WEIGHTINGS, GradWeighting, LossWeighting, SharedRep, Weighting, register_weighting
# static and EW first: registry order is the order the dashboard offers them in
from mtl_core.weighting import static, ew  # noqa: F401,I001  (registers)
from mtl_core.weighting import db_mtl, dwa, famo, gls, gradnorm, imtl_l, rlw, stch, uw  # noqa: F401  (registers)
from mtl_core.weighting import (  # noqa: F401  (registers)
    aligned_mtl, cagrad, fairgrad, graddrop, gradvac, imtl_g, mgda, moco, nash_mtl, pcgrad, upgrad,
)


def build_weighting(method: str, tasks, params=None, weights=None, rep_grad: bool = False) -> Weighting:
    return WEIGHTINGS.get(method, "weighting.method")(tasks, params=params, weights=weights, rep_grad=rep_grad)


__all__ = ["WEIGHTINGS", "GradWeighting", "LossWeighting", "SharedRep", "Weighting", "build_weighting", "register_weighting"]
