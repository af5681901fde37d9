"""Shared backbones: image ``(B, 3, H, W)`` in ``[0, 1]`` -> features ``(B, C, H/s, W/s)``.

Each backbone normalises its input itself, so data and overlays stay in ``[0, 1]``, and
exposes ``channels`` and ``stride``.
"""
from __future__ import annotations

import os
from collections.abc import Generator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtl_core.errors import ConfigError
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
    """torchvision's ResNet-18 trunk (He et al., CVPR 2016) to stride 8, with ImageNet weights
    only when they are already cached (no download at run time)."""

    stride = 8

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import ResNet18_Weights, resnet18

        net = resnet18(weights=None)
        if pretrained:
            net.load_state_dict(load_cached_weights(ResNet18_Weights.IMAGENET1K_V1))
        self.norm = Normalize()
        self.trunk = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        self.channels = 128

    def stages(self, x: Tensor) -> Generator[Tensor, Tensor, Tensor]:
        x = yield self.trunk[:4](self.norm(x))  # (B, 64, H/4, W/4)
        x = yield self.trunk[4](x)  # (B, 64, H/4, W/4)
        x = yield self.trunk[5](x)  # (B, 128, H/8, W/8)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return run_stages(self.stages(x))


@register_backbone("mobilenet_v3")
class MobileNetV3(nn.Module):
    """torchvision's MobileNetV3-Small features (Howard et al., ICCV 2019) to stride 8, with
    ImageNet weights only when already cached."""

    stride = 8

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import MobileNet_V3_Small_Weights, mobilenet_v3_small

        net = mobilenet_v3_small(weights=None)
        if pretrained:
            net.load_state_dict(load_cached_weights(MobileNet_V3_Small_Weights.IMAGENET1K_V1))
        self.norm = Normalize()
        self.features = net.features[:4]  # (B, 24, H/8, W/8)
        self.channels = 24

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

    def __init__(self, width: int = 32, pretrained: bool = False) -> None:
        super().__init__()
        from torchvision.models import EfficientNet_B0_Weights, efficientnet_b0

        net = efficientnet_b0(weights=None)
        if pretrained:
            net.load_state_dict(load_cached_weights(EfficientNet_B0_Weights.IMAGENET1K_V1))
        self.norm = Normalize()
        self.features = net.features[:4]  # (B, 40, H/8, W/8)
        self.channels = 40

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


def build_backbone(name: str, width: int = 32, pretrained: bool = False) -> nn.Module:
    return BACKBONES.get(name, "model.backbone")(width=width, pretrained=pretrained)
