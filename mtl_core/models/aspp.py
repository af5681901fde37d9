"""DeepLab-v3's atrous spatial pyramid pooling in front of a task's head (Chen, Papandreou, Schroff
and Adam, "Rethinking Atrous Convolution for Semantic Image Segmentation", arXiv 1706.05587, 2017).

``model.head = "aspp"``: per task, torchvision's ``ASPP`` (a 1x1 convolution, three 3x3 atrous
convolutions and image pooling, each to 256 channels, concatenated and projected to 256) on the
trunk's features, then the task's own head on those 256 channels, so a depth head still ends with
its softplus and a detection head still decodes boxes. LibMTL's NYUv2 decoders
(``DeepLabHead(2048, out)``) are this ASPP followed by a 3x3 convolution, BatchNorm, ReLU and a
1x1 convolution: here the task's head takes that last part.

Rates (12, 24, 36) are DeepLab-v3's at output stride 8 (6, 12, 18 at 16) and LibMTL's, made for the
stride-8 trunks (``resnet50_dilated``); on a finer trunk they reach a smaller share of the image.

Two departures from torchvision's module, both so that it trains as every other head does:

- **No dropout** after the projection (torchvision's and LibMTL's have ``Dropout(0.5)``; the paper
  has none). Dropout draws from torch's process-wide generator at every training step, and a run
  here owns its randomness: the same config and seed give the same metrics alone or beside other
  runs (see ``mtl_core.isolation``).
- **A batch of one image trains**: image pooling leaves one value per channel, whose batch
  statistics BatchNorm cannot take (torchvision raises "Expected more than 1 value per channel when
  training"); the pooling branch's BatchNorm then normalises with its running statistics, as in
  evaluation, and leaves them as they are. A batch of two or more is torchvision's exactly.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

DEEPLAB_RATES = (12, 24, 36)
ASPP_CHANNELS = 256
citation = ("Chen, Papandreou, Schroff and Adam, 'Rethinking Atrous Convolution for Semantic Image Segmentation', "
            "arXiv 1706.05587, 2017.")


class PooledBatchNorm(nn.BatchNorm2d):
    """BatchNorm that falls back on its running statistics when a training batch has one value per channel."""

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)


class ASPPHead(nn.Module):
    """``(B, channels, h, w)`` -> ASPP ``(B, 256, h, w)`` -> ``task``'s own head on 256 channels."""

    def __init__(self, task: Any, channels: int, stride: int = 1, rates: Sequence[int] = DEEPLAB_RATES) -> None:
        super().__init__()
        from torchvision.models.segmentation.deeplabv3 import ASPP

        self.aspp = ASPP(channels, list(rates), ASPP_CHANNELS)
        pooling = self.aspp.convs[-1]  # AdaptiveAvgPool2d(1), Conv2d, BatchNorm2d, ReLU
        pooling[2] = PooledBatchNorm(ASPP_CHANNELS)
        self.aspp.project[3] = nn.Identity()  # the Dropout(0.5): see the module's docstring
        self.head = task.head(ASPP_CHANNELS, stride=stride)

    def forward(self, x: Tensor) -> Any:
        return self.head(self.aspp(x))  # (B, C, h, w) -> (B, 256, h, w) -> the task's output
