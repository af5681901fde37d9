"""Where a backbone's starting weights come from, never the network: a file the user names
(``model.weights_path``), else with ``model.pretrained`` torchvision's ImageNet weights from the
local torch hub cache, else the random initialisation.

A weights file is read with ``torch.load(..., weights_only=True)`` and may hold:

- a **torchvision state dict** of the whole network the backbone is cut from, e.g.
  ``resnet50-0676ba61.pth`` for ``resnet50_dilated``: every tensor the backbone uses must be there
  with its shape; the ones it leaves out (the classifier ``fc.*``, MobileNet's later blocks) are
  ignored;
- a **state dict of this backbone itself**, as MTL Studio names it, e.g. an earlier run's
  checkpoint (``final.pt`` or ``last.pt`` in its folder of the runs directory), whose ``model``
  holds the backbone under ``backbone.``;
- either of those **under a prefix** (``module.``, ``backbone.``, ``encoder.`` ...) or wrapped in a
  dict under ``model``, ``state_dict``, ``model_state_dict`` or ``module``: the prefix is found from the
  backbone's own tensor names, and the keys outside it (heads, optimiser state) are ignored. When
  several prefixes hold a whole backbone (a ``single_task`` checkpoint has one per task), the one
  with most of its tensors, then the first in the file, is taken.

A tensor the file has under the prefix that the network does not (ResNet-101's ``layer3.6`` given to
ResNet-50) is an error, not ignored: the file is for another network. BatchNorm's
``num_batches_tracked`` may be missing (torchvision's detection backbones save none).
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from mtl_core.errors import ConfigError

FIELD = "model.weights_path"
WRAPPERS = ("model", "state_dict", "model_state_dict", "module")
OPTIONAL = ("num_batches_tracked",)  # BatchNorm's step count: not a weight, absent from frozen-BN files


def torchvision_weights(spec: str):
    """``"ResNet50_Weights.IMAGENET1K_V1"`` -> that entry of ``torchvision.models``."""
    import torchvision.models as tvm

    enum, entry = spec.split(".")
    return getattr(getattr(tvm, enum), entry)


def load_cached_weights(weights) -> dict:
    """The state dict of torchvision ``weights`` from the local torch hub cache, never the network."""
    name = os.path.basename(weights.url)
    path = os.path.join(torch.hub.get_dir(), "checkpoints", name)
    if not os.path.exists(path):
        raise ConfigError(
            "model.pretrained",
            f"ImageNet weights are not cached at {path} and this machine is offline; copy {name} there "
            "(on a machine with internet, building the model once with weights='DEFAULT' downloads it), "
            "or set pretrained to false to start from random weights",
        )
    return torch.load(path, map_location="cpu", weights_only=True)


def torchvision_keys(net: nn.Module, backbone: nn.Module) -> dict[str, str]:
    """``{torchvision key: the backbone's key}`` for every tensor of ``net`` (``""`` for those the
    backbone does not use), found by identity: the backbone holds ``net``'s own modules."""
    ours = {id(t): k for k, t in backbone.state_dict(keep_vars=True).items()}
    return {k: ours.get(id(t), "") for k, t in net.state_dict(keep_vars=True).items()}


def expected_file(cls: type, name: str) -> str:
    """What a weights file for backbone ``name`` should be, and where to get one."""
    earlier = f"a checkpoint of an earlier run with the {name} backbone (its final.pt or last.pt in the runs folder)"
    spec = getattr(cls, "imagenet", "")
    if not spec:
        return earlier
    w = torchvision_weights(spec)
    arch = spec.split("_Weights")[0].lower()
    return (f"torchvision's {arch} state dict such as {os.path.basename(w.url)} (from {w.url}, downloaded on a "
            f"machine with internet and copied here), or {earlier}")


def missing_file_error(path: str | os.PathLike, cls: type, name: str) -> ConfigError:
    """The error for a weights file that is not there: the path, and what file to put there."""
    p = Path(path).expanduser()
    what = "is a folder, not a file" if p.is_dir() else "does not exist"
    return ConfigError(FIELD, f"{p} {what}; expected {expected_file(cls, name)}; "
                       "or clear weights_path to start from ImageNet (pretrained) or random weights")


def read_weights(path: str | os.PathLike, cls: type, name: str) -> dict[str, Tensor]:
    """The tensors of the weights file at ``path`` for backbone ``name`` (class ``cls``); a
    ConfigError naming the path when it is missing or holds no state dict."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise missing_file_error(p, cls, name)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises many kinds for a torn or foreign file
        raise ConfigError(FIELD, f"{p} cannot be read as PyTorch weights ({type(e).__name__}: {str(e)[:160]}); "
                          f"expected {expected_file(cls, name)}") from None
    for key in WRAPPERS:
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
            break
    state = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, Tensor)} if isinstance(obj, dict) else {}
    if not state:
        raise ConfigError(FIELD, f"{p} holds no state dict (no named tensors); expected {expected_file(cls, name)}")
    return state


def _prefixes(keys: list[str], names: list[str]) -> list[str]:
    """Prefixes under which some of ``names`` (the backbone's first few tensors) appear in ``keys``."""
    found: list[str] = []
    for k in keys:
        for n in names[:5]:
            if k == n or k.endswith("." + n):
                prefix = k[:len(k) - len(n)]
                if prefix not in found:
                    found.append(prefix)
    return found


def _best_fit(state: dict[str, Tensor], spaces: dict[str, dict[str, str]]):
    """``(hits, space, prefix)`` covering most of the backbone: ``hits`` maps the backbone's key to
    the file's key."""
    best: tuple[dict[str, str], str, str] = ({}, "", "")
    keys = list(state)
    for space, names in spaces.items():
        for prefix in _prefixes(keys, [n for n, ours in names.items() if ours]):
            hits = {names[k[len(prefix):]]: k for k in keys
                    if k.startswith(prefix) and names.get(k[len(prefix):])}
            if len(hits) > len(best[0]):
                best = (hits, space, prefix)
    return best


def load_weights_file(backbone: nn.Module, path: str | os.PathLike, name: str,
                      state: dict[str, Tensor] | None = None) -> nn.Module:
    """Load the weights file at ``path`` (or its already read ``state``) into ``backbone``, in place;
    a ConfigError naming the path, what does not fit and what was expected when it is not this
    backbone's. See the module's docstring for the formats."""
    cls = type(backbone)
    state = read_weights(path, cls, name) if state is None else state
    ours = backbone.state_dict()
    spaces = {"ours": {k: k for k in ours}}
    if getattr(backbone, "torchvision_keys", None):  # first: where a file fits both, its extra keys (fc.*) are torchvision's
        spaces = {"torchvision": backbone.torchvision_keys, **spaces}
    hits, space, prefix = _best_fit(state, spaces)
    where = f"{path} does not fit the {name} backbone"
    expected = f"expected {expected_file(cls, name)}"
    if not hits:
        raise ConfigError(FIELD, f"{where}: none of its {len(state)} tensors (e.g. {', '.join(list(state)[:3])}) "
                          f"is one of the backbone's (e.g. {', '.join(list(ours)[:3])}); {expected}")
    problems = []
    bad = [(f, tuple(state[f].shape), tuple(ours[k].shape)) for k, f in hits.items() if state[f].shape != ours[k].shape]
    if bad:
        problems.append("; ".join(f"{f} is {got} in the file but {want} here" for f, got, want in bad[:2])
                        + (f" (and {len(bad) - 2} more shapes differ)" if len(bad) > 2 else "")
                        + ("" if getattr(cls, "imagenet", "") else ": was it trained with another model.width?"))
    missing = [k for k in ours if k not in hits and not k.endswith(OPTIONAL)]
    if missing:
        theirs = {v: k for k, v in spaces[space].items() if v}  # the backbone's key -> the file's naming
        problems.append(f"{len(missing)} of the backbone's {len(ours)} tensors are missing, e.g. "
                        + ", ".join(prefix + theirs.get(k, k) for k in missing[:3]))
    # under the prefix every key is the network's: another one means the file is for another network
    unexpected = [k for k in state if k.startswith(prefix) and k[len(prefix):] not in spaces[space]]
    if unexpected:
        problems.append(f"it has {len(unexpected)} tensors this network lacks, e.g. {', '.join(unexpected[:3])}")
    if problems:
        raise ConfigError(FIELD, f"{where}: {'; '.join(problems)}; {expected}")
    backbone.load_state_dict({**ours, **{k: state[f] for k, f in hits.items()}})
    return backbone
