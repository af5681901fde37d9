"""Loss-weighting and gradient-combination methods, registered by name."""
from mtl_core.weighting import (  # noqa: F401  (registers)
    aligned_mtl,
    cagrad,
    db_mtl,
    dwa,
    ew,
    fairgrad,
    famo,
    gls,
    graddrop,
    gradnorm,
    gradvac,
    imtl_g,
    imtl_l,
    mgda,
    moco,
    nash_mtl,
    pcgrad,
    rlw,
    static,
    stch,
    upgrad,
    uw,
)
from mtl_core.weighting.base import WEIGHTINGS, GradWeighting, LossWeighting, SharedRep, Weighting, register_weighting

WEIGHTINGS.prefer("static", "ew")


def build_weighting(method: str, tasks, params=None, weights=None, rep_grad: bool = False) -> Weighting:
    return WEIGHTINGS.get(method, "weighting.method")(tasks, params=params, weights=weights, rep_grad=rep_grad)


__all__ = ["WEIGHTINGS", "GradWeighting", "LossWeighting", "SharedRep", "Weighting", "build_weighting", "register_weighting"]
