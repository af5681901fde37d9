"""Shared backbones: image ``(B, 3, H, W)`` in ``[0, 1]`` -> features ``(B, C, H/s, W/s)``.

Each backbone normalises its input itself, so data and overlays stay in ``[0, 1]``, and
exposes ``channels`` and ``stride``. One cut from a torchvision network names its ImageNet weights
in ``imagenet`` and keeps ``torchvision_keys`` (that network's tensor names), so a torchvision
weights file loads into it (``pretrained.py``).

The registry name is what configs and checkpoints hold, so it never changes; the first paragraph
of a backbone's docstring is its label in the dashboard.
"""
from __future__ import annotations

from collections.abc import Generator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.models.pretrained import (
    load_cached_weights,
    load_weights_file,
    read_weights,
    torchvision_keys,
    torchvision_weights,
)
from mtl_core.registry import Registry

BACKBONES: Registry = Registry("backbone")
register_backbone = BACKBONES.register

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalize(nn.Module):
    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std


def conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class ResBlock(nn.Module):
    """Basic residual block (He et al., CVPR 2016)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = conv_bn(cin, cout, stride)
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.skip = (nn.Identity() if stride == 1 and cin == cout else
                     nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv2(self.conv1(x)) + self.skip(x))


@register_backbone("small_cnn")
class SmallCNN(nn.Module):
    """A small U-Net-like CNN to stride 2: sharp dense outputs, trains from scratch on two CPU cores in minutes.

    Encoder to stride 8 for context, decoder back to stride 2 with skip connections so that
    dense tasks (segmentation, depth) keep sharp edges on small images.
    """

    stride = 2

    def __init__(self, width: int = 16, pretrained: bool = False) -> None:
        super().__init__()
        w = width
        self.norm = Normalize()
        self.stem = conv_bn(3, w, 2)  # (B, w, H/2, W/2)
        self.down1 = ResBlock(w, 2 * w, 2)  # (B, 2w, H/4, W/4)
        self.down2 = nn.Sequential(ResBlock(2 * w, 4 * w, 2), ResBlock(4 * w, 4 * w))  # (B, 4w, H/8, W/8)
        self.lat1 = nn.Conv2d(2 * w, 4 * w, 1)
        self.fuse1 = conv_bn(4 * w, 2 * w)  # (B, 2w, H/4, W/4)
        if self.stride == 2:
            self.lat0 = nn.Conv2d(w, 2 * w, 1)
            self.fuse0 = conv_bn(2 * w, 2 * w)  # (B, 2w, H/2, W/2)
        self.channels = 2 * w

    def stages(self, x: Tensor) -> Generator[Tensor, Tensor, Tensor]:
        """Yields each stage's output and continues with what is sent back, so architectures
        (MTAN, cross-stitch) can read or mix features between stages; returns the last."""
        x = self.norm(x)
        s2 = yield self.stem(x)  # (B, w, H/2, W/2)
        s4 = yield self.down1(s2)  # (B, 2w, H/4, W/4)
        s8 = yield self.down2(s4)  # (B, 4w, H/8, W/8)
        d4 = yield self.fuse1(F.interpolate(s8, size=s4.shape[-2:], mode="nearest") + self.lat1(s4))  # (B, 2w, H/4, W/4)
        if self.stride == 4:
            return d4
        d2 = yield self.fuse0(F.interpolate(d4, size=s2.shape[-2:], mode="nearest") + self.lat0(s2))  # (B, 2w, H/2, W/2)
        return d2

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))


@register_backbone("small_cnn_s4")
class SmallCNNStride4(SmallCNN):
    """The small CNN with its decoder ending at stride 4: the default, a demo good in one minute on two CPU cores.

    The same encoder and first decoder stage as ``small_cnn``, without the stride-2 stage: that
    stage and a dense head at stride 2 were about half of the demo's multiply-adds. Dense heads
    upsample their logits to the image, so masks are a little softer at the edges, but on the
    64-pixel demo the 1.6x faster steps learn more within a minute (bench/RESULTS.md, seventh session).
    """

    stride = 4


@register_backbone("resnet18")
class ResNet18(nn.Module):
    """ResNet-18, first two stages (stride 8, 128 channels): torchvision's ResNet-18 (He et al.,
    CVPR 2016) cut after ``layer2``.

    Not the whole ResNet-18: ``layer3`` and ``layer4`` are left out, so it is small and fast on a
    CPU; ``resnet50_dilated`` and ``resnet101_dilated`` are the whole networks the papers use.
    ImageNet weights only when they are already cached (no download at run time). ``width`` is
    ignored."""

    stride = 8
    imagenet = "ResNet18_Weights.IMAGENET1K_V1"

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        if pretrained:
            net.load_state_dict(load_cached_weights(torchvision_weights(self.imagenet)))
        self.norm = Normalize()
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        self.channels = 128
        self.torchvision_keys = torchvision_keys(net, self)

    def stages(self, x: Tensor) -> Generator[Tensor, Tensor, Tensor]:
        x = yield self.trunk[:4](self.norm(x))  # (B, 64, H/4, W/4)
        x = yield self.trunk[4](x)  # (B, 64, H/4, W/4)
        x = yield self.trunk[5](x)  # (B, 128, H/8, W/8)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))


class DilatedResNet(nn.Module):
    """A whole torchvision ResNet with ``layer3`` and ``layer4`` dilated instead of strided
    (``replace_stride_with_dilation=[False, True, True]``; Yu, Koltun and Funkhouser, "Dilated
    Residual Networks", CVPR 2017): output stride 8 with 2048 channels, as DeepLab-v3 and the NYUv2
    models of MTAN and LibMTL (its ``resnet_dilated``, the same convolutions) use.

    Four stages, ``layer1`` (with the stem) to ``layer4``, for MTAN and cross-stitch. Tensor names
    are torchvision's, so its ImageNet file (``imagenet``) loads as it is. ``width`` is ignored:
    the network is torchvision's."""

    stride = 8
    channels = 2048
    depth = ""  # resnet50, resnet101
    imagenet = ""

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        import torchvision.models as tvm

        state = load_cached_weights(torchvision_weights(self.imagenet)) if pretrained else None  # before the slow build
        net = getattr(tvm, self.depth)(weights=None, replace_stride_with_dilation=[False, True, True])
        if state is not None:
            net.load_state_dict(state)  # dilation changes strides and padding, not shapes
        self.norm = Normalize()
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.torchvision_keys = torchvision_keys(net, self)

    def stages(self, x: Tensor) -> Generator[Tensor, Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(self.norm(x)))))  # (B, 64, H/4, W/4)
        x = yield self.layer1(x)  # (B, 256, H/4, W/4)
        x = yield self.layer2(x)  # (B, 512, H/8, W/8)
        x = yield self.layer3(x)  # (B, 1024, H/8, W/8): dilation 2
        x = yield self.layer4(x)  # (B, 2048, H/8, W/8): dilation 4
        return x

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))


@register_backbone("resnet50_dilated")
class ResNet50Dilated(DilatedResNet):
    """ResNet-50, dilated to stride 8 (2048 channels): torchvision's whole ResNet-50 with its last
    two stages dilated, the encoder of LibMTL's and MTAN's NYUv2 models.

    See :class:`DilatedResNet`. About 23.5 million parameters; at stride 8 its last stages run on
    16 times the positions of the classifier's, so use a GPU for real images. ``width`` is ignored."""

    depth = "resnet50"
    imagenet = "ResNet50_Weights.IMAGENET1K_V1"  # resnet50-0676ba61.pth, the weights LibMTL's model loads


@register_backbone("resnet101_dilated")
class ResNet101Dilated(DilatedResNet):
    """ResNet-101, dilated to stride 8 (2048 channels): torchvision's whole ResNet-101 with its last
    two stages dilated, as DeepLab-v3 uses it.

    See :class:`DilatedResNet`. About 42.5 million parameters. ``width`` is ignored."""

    depth = "resnet101"
    imagenet = "ResNet101_Weights.IMAGENET1K_V1"


@register_backbone("mobilenet_v3")
class MobileNetV3(nn.Module):
    """torchvision's MobileNetV3-Small features (Howard et al., ICCV 2019) to stride 8, with
    ImageNet weights only when already cached."""

    stride = 8
    imagenet = "MobileNet_V3_Small_Weights.IMAGENET1K_V1"

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v3_small

        net = mobilenet_v3_small(weights=None)
        if pretrained:
            net.load_state_dict(load_cached_weights(torchvision_weights(self.imagenet)))
        self.norm = Normalize()
        self.features = net.features[:4]  # (B, 24, H/8, W/8)
        self.channels = 24
        self.torchvision_keys = torchvision_keys(net, self)

    def stages(self, x: Tensor) -> Generator[Tensor, Tensor, Tensor]:
        x = yield self.features[:2](self.norm(x))  # (B, 16, H/4, W/4)
        x = yield self.features[2:](x)  # (B, 24, H/8, W/8)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))


@register_backbone("efficientnet_b0")
class EfficientNetB0(nn.Module):
    """torchvision's EfficientNet-B0 features (Tan and Le, ICML 2019) to stride 8, with ImageNet
    weights only when already cached."""

    stride = 8
    imagenet = "EfficientNet_B0_Weights.IMAGENET1K_V1"

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import efficientnet_b0

        net = efficientnet_b0(weights=None)
        if pretrained:
            net.load_state_dict(load_cached_weights(torchvision_weights(self.imagenet)))
        self.norm = Normalize()
        self.features = net.features[:4]  # (B, 40, H/8, W/8)
        self.channels = 40
        self.torchvision_keys = torchvision_keys(net, self)

    def stages(self, x: Tensor) -> Generator[Tensor, Tensor, Tensor]:
        x = yield self.features[:3](self.norm(x))  # (B, 24, H/4, W/4)
        x = yield self.features[3:](x)  # (B, 40, H/8, W/8)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))


def run_stages(gen: Generator[Tensor, Tensor, Tensor], hook=None) -> Tensor:
    """Drive a backbone's ``stages`` generator; ``hook(index, features)`` may replace each stage's output."""
    out = next(gen)
    j = 0
    while True:
        try:
            out = gen.send(out if hook is None else hook(j, out))
        except StopIteration as stop:
            return stop.value
        j += 1


def build_backbone(name: str, width: int = 32, pretrained: bool = False, weights_path: str = "") -> nn.Module:
    """Backbone ``name`` with its starting weights: from ``weights_path`` when given (read before the
    network is built, so a wrong path fails at once), else ImageNet's from the local cache when
    ``pretrained``, else random (see ``pretrained.py``)."""
    cls = BACKBONES.get(name, "model.backbone")
    if not weights_path:
        return cls(width=width, pretrained=pretrained)
    state = read_weights(weights_path, cls, name)
    return load_weights_file(cls(width=width, pretrained=False), weights_path, name, state)


def backbone_of(cfg, backbone: str | None = None) -> nn.Module:
    """The backbone a ModelConfig asks for (``backbone`` overrides its name), with its weights."""
    return build_backbone(backbone or cfg.backbone, cfg.width, cfg.pretrained, getattr(cfg, "weights_path", ""))
