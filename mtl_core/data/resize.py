"""Bringing an image of any shape to the model's ``H x W``, and its labels and predictions with it.

Three policies (``data.resize``):

- ``letterbox``: scale by the smaller ratio so the whole image fits, keep its aspect, centre it,
  pad the rest (grey in the image, "no label" in masks, depth maps and normal maps). Nothing is lost or
  distorted; the default for real photos, as in YOLO (Redmon and Farhadi, "YOLO9000", CVPR 2017,
  and its successors' letterbox).
- ``stretch``: scale each side to fit exactly: distorts circles into ellipses, loses nothing.
  What the procedural scenes use (they are drawn at the model's size, so nothing is stretched).
- ``crop``: scale by the larger ratio so the image covers ``H x W`` and cut the centre: no
  padding and no distortion, but the edges are lost (boxes outside are dropped, boxes across the
  edge clipped), as torchvision's ``Resize`` + ``CenterCrop`` evaluation transform.

A :class:`Fit` is the affine map from the photo's pixels to the model's
(``x' = x * sx + ox``, ``y' = y * sy + oy``) with the resampling that goes with it; the
``*_back`` methods map a prediction at the model's size to the photo's own pixels, which is how
Predict and the CLI's ``predict`` draw on the photo a person gave.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as tF
from torch import Tensor
from torchvision.transforms.v2 import functional as F

POLICIES = ("letterbox", "stretch", "crop")
PAD_VALUE = 0.5  # letterbox padding in the image: mid-grey, the mean a normalised model expects least surprise from


@dataclass(frozen=True)
class Fit:
    """How an image of ``src = (h0, w0)`` is brought to ``dst = (h, w)`` under ``policy``.

    ``scaled = (nh, nw)`` is the size the whole image is resized to before padding (letterbox)
    or cropping (crop); ``top, left`` is where its corner lands in the model's frame (negative
    when cropped)."""

    policy: str
    src: tuple[int, int]
    dst: tuple[int, int]
    scaled: tuple[int, int]
    top: int
    left: int

    @property
    def sy(self) -> float:
        return self.scaled[0] / self.src[0]

    @property
    def sx(self) -> float:
        return self.scaled[1] / self.src[1]

    @property
    def identity(self) -> bool:
        return self.src == self.dst

    # ---- photo -> model ------------------------------------------------------------------
    def image(self, image: Tensor, pad: float = PAD_VALUE) -> Tensor:
        """A float ``(C, h0, w0)`` image at ``(C, h, w)``: bilinear, antialiased when shrinking."""
        if self.identity:
            return image
        scaled = F.resize(image, list(self.scaled), antialias=True)
        return self._place(scaled, pad)

    def mask(self, mask: Tensor, fill: int | float) -> Tensor:
        """A label map ``(h0, w0)`` or ``(C, h0, w0)`` at the model's size: nearest neighbour (no
        invented classes at edges), ``fill`` where the letterbox pads (255 = ignore for
        segmentation, 0 = no label for depth)."""
        if self.identity:
            return mask
        flat = mask.dim() == 2
        m = mask[None] if flat else mask
        scaled = F.resize(m, list(self.scaled), interpolation=F.InterpolationMode.NEAREST_EXACT)
        out = self._place(scaled, fill)
        return out[0] if flat else out

    def normals(self, normals: Tensor) -> Tensor:
        """A normal map ``(3, h0, w0)`` (unit vectors, ``x`` right, ``y`` up; all 0 = no label) at
        the model's size: moved as a mask (nearest, 0 where the letterbox pads); a stretch, which
        scales the two axes differently, also tilts every surface, ``(x / sx, y / sy, z)`` made unit
        length again (a normal maps by the inverse transpose of the stretch)."""
        out = self.mask(normals, 0.0)  # (3, h, w)
        if self.identity or self.policy != "stretch":  # letterbox and crop keep the aspect
            return out
        return stretch_normals(out, self.sx, self.sy)

    def boxes(self, boxes: Tensor, min_size: float = 1.0) -> tuple[Tensor, Tensor]:
        """``xyxy`` boxes ``(n, 4)`` in the photo's pixels -> the model's, clipped to the frame;
        and which boxes are kept (bool ``(n,)``: a box cropped away, or thinner than ``min_size``
        px after clipping, is dropped)."""
        if boxes.numel() == 0:
            return boxes.reshape(0, 4).float(), torch.zeros(0, dtype=torch.bool)
        b = boxes.float() * torch.tensor([self.sx, self.sy, self.sx, self.sy]) + \
            torch.tensor([self.left, self.top, self.left, self.top], dtype=torch.float32)
        h, w = self.dst
        b[:, 0::2] = b[:, 0::2].clamp(0, w)
        b[:, 1::2] = b[:, 1::2].clamp(0, h)
        keep = ((b[:, 2] - b[:, 0]) >= min_size) & ((b[:, 3] - b[:, 1]) >= min_size)
        return b[keep], keep

    def points(self, xy: Tensor) -> Tensor:
        """Points ``(n, 2)`` as ``(x, y)`` in the photo's pixels -> the model's (not clipped)."""
        return xy.float() * torch.tensor([self.sx, self.sy]) + torch.tensor([self.left, self.top], dtype=torch.float32)

    # ---- model -> photo --------------------------------------------------------------------
    def boxes_back(self, boxes: Tensor) -> Tensor:
        """``xyxy`` boxes ``(n, 4)`` at the model's size -> the photo's pixels, clipped to the photo."""
        if boxes.numel() == 0:
            return boxes.reshape(0, 4).float()
        b = (boxes.float() - torch.tensor([self.left, self.top, self.left, self.top], dtype=torch.float32)) / \
            torch.tensor([self.sx, self.sy, self.sx, self.sy])
        h0, w0 = self.src
        b[:, 0::2] = b[:, 0::2].clamp(0, w0)
        b[:, 1::2] = b[:, 1::2].clamp(0, h0)
        return b

    def mask_back(self, mask: Tensor, fill: int | float = 0) -> Tensor:
        """A label map ``(h, w)`` or ``(C, h, w)`` at the model's size -> the photo's ``(h0, w0)``
        (nearest): the letterbox's padding is cut off; where a crop cut the photo, ``fill``."""
        return self._back(mask, fill, F.InterpolationMode.NEAREST_EXACT)

    def map_back(self, values: Tensor, fill: float = 0.0) -> Tensor:
        """A float map ``(h, w)`` or ``(C, h, w)`` (a depth map) -> the photo's size, bilinear."""
        return self._back(values.float(), fill, F.InterpolationMode.BILINEAR)

    # ---- helpers ---------------------------------------------------------------------------
    def _place(self, scaled: Tensor, fill: float) -> Tensor:
        """``scaled (C, nh, nw)`` put at ``(top, left)`` on a ``dst`` canvas of ``fill`` (cut when it overhangs)."""
        h, w = self.dst
        nh, nw = scaled.shape[-2:]
        if (nh, nw) == (h, w) and self.top == 0 and self.left == 0:
            return scaled
        out = torch.full((*scaled.shape[:-2], h, w), fill, dtype=scaled.dtype)
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + nh, h), min(self.left + nw, w)
        out[..., y0:y1, x0:x1] = scaled[..., y0 - self.top:y1 - self.top, x0 - self.left:x1 - self.left]
        return out

    def _back(self, x: Tensor, fill: float, mode: F.InterpolationMode) -> Tensor:
        if self.identity:
            return x
        flat = x.dim() == 2
        m = x[None] if flat else x
        nh, nw = self.scaled
        h, w = self.dst
        # the scaled photo's frame, cut out of (or padded around) the model's
        region = torch.full((*m.shape[:-2], nh, nw), fill, dtype=m.dtype)
        y0, x0 = max(self.top, 0), max(self.left, 0)
        y1, x1 = min(self.top + nh, h), min(self.left + nw, w)
        region[..., y0 - self.top:y1 - self.top, x0 - self.left:x1 - self.left] = m[..., y0:y1, x0:x1]
        if mode == F.InterpolationMode.BILINEAR:
            out = tF.interpolate(region[None].float(), size=self.src, mode="bilinear", align_corners=False)[0]
        else:
            out = F.resize(region, list(self.src), interpolation=mode)
        return out[0] if flat else out


def stretch_normals(normals: Tensor, sx: float, sy: float) -> Tensor:
    """Normals ``(..., 3, H, W)`` of a picture stretched ``sx`` times across and ``sy`` times down:
    the surfaces it shows are stretched too, and a normal maps by the inverse transpose of the
    stretch, ``(x / sx, y / sy, z)``, made unit length again (a zero vector, no label, stays zero)."""
    if sx == sy:
        return normals
    scale = torch.tensor([1 / sx, 1 / sy, 1.0], dtype=normals.dtype, device=normals.device).view(3, 1, 1)
    return tF.normalize(normals * scale, dim=-3)


def fit(src: tuple[int, int], dst: tuple[int, int], policy: str = "letterbox") -> Fit:
    """The :class:`Fit` of an image of ``src = (h0, w0)`` to ``dst = (h, w)`` under ``policy``."""
    h0, w0 = int(src[0]), int(src[1])
    h, w = int(dst[0]), int(dst[1])
    if min(h0, w0, h, w) < 1:
        raise ValueError(f"image sizes must be positive, got {src} -> {dst}")
    if policy == "stretch" or (h0, w0) == (h, w):
        return Fit("stretch" if policy == "stretch" else policy, (h0, w0), (h, w), (h, w), 0, 0)
    if policy not in POLICIES:
        raise ValueError(f"unknown resize policy {policy!r}; choose one of: {', '.join(POLICIES)}")
    s = min(h / h0, w / w0) if policy == "letterbox" else max(h / h0, w / w0)
    nh, nw = max(1, round(h0 * s)), max(1, round(w0 * s))
    if policy == "letterbox":
        nh, nw = min(nh, h), min(nw, w)
    else:
        nh, nw = max(nh, h), max(nw, w)
    return Fit(policy, (h0, w0), (h, w), (nh, nw), (h - nh) // 2, (w - nw) // 2)
