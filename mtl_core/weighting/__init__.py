"""Loss-weighting and gradient-combination methods, registered by name."""
from mtl_core.registry import load_plugins
from mtl_core.weighting import (  # noqa: F401  (registers)
    aligned_mtl,
    cagrad,
    config_grad,
    db_mtl,
    dualproj,
    dwa,
    ew,
    excess_mtl,
    fairgrad,
    famo,
    gls,
    graddrop,
    gradnorm,
    gradvac,
    imtl,
    imtl_g,
    imtl_l,
    mgda,
    moco,
    modo,
    nash_mtl,
    pcgrad,
    rlw,
    sdmgrad,
    static,
    stch,
    upgrad,
    uw,
)
from mtl_core.weighting.base import (
    WEIGHTINGS,
    GradWeighting,
    LossWeighting,
    MultiBatchWeighting,
    StepContext,
    Weighting,
    register_weighting,
)

WEIGHTINGS.prefer("static", "ew")
load_plugins()


def method_meta(name: str) -> dict[str, str]:
    """What a page needs to know of a method without building it: its family (``kind``), whether
    and as what it uses a person's task weights (``uses_weights``, ``weights_note``) and its paper."""
    cls = WEIGHTINGS.get(name) if name in WEIGHTINGS else None
    return {"kind": getattr(cls, "kind", ""), "uses_weights": getattr(cls, "uses_weights", ""),
            "weights_note": getattr(cls, "weights_note", "") or ("an unknown method" if cls is None else ""),
            "citation": getattr(cls, "citation", "")}


def build_weighting(method: str, tasks, params=None, weights=None, rep_grad: bool = False) -> Weighting:
    return WEIGHTINGS.get(method, "weighting.method")(tasks, params=params, weights=weights, rep_grad=rep_grad)


__all__ = ["WEIGHTINGS", "GradWeighting", "LossWeighting", "MultiBatchWeighting", "StepContext", "Weighting",
           "build_weighting", "method_meta", "register_weighting"]
