"""The shapes of the built-in scenes as pixel masks, from half-planes and distances on a grid.

Only exactly rounded float ops touch per-object values, so a mask is the same bit for bit on any
device and in any batch (see :mod:`mtl_core.data.scenes`).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from mtl_core.config import size_hw

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")


# ----------------------------------------------------------------------------------- shapes
# Each shape returns a value that is > 0 exactly on its pixels, computed in the object's own frame
# with float ops only (bool-valued comparisons run unvectorised on the CPU, about 20x slower).
# dx (M, W), dy (M, H): pixel centre minus object centre; r (M,): the object's radius in pixels;
# c, s (M,): cos and sin of its rotation. Returns (M, H, W).

def _lin(dx: Tensor, dy: Tensor, a: Tensor, b: Tensor, off: Tensor | float = 0.0) -> Tensor:
    """a * dx + b * dy - off on the grid: (M, H, W), one full-size op."""
    return (a[:, None] * dx)[:, None, :] + (b[:, None] * dy - off)[:, :, None]


def _turn(c: Tensor, s: Tensor, deg: float) -> tuple[Tensor, Tensor]:
    """cos and sin of (rotation + deg), by the angle-addition formulas (exact ops only)."""
    ca, sa = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return c * ca - s * sa, s * ca + c * sa


def _col(x: Tensor) -> Tensor:
    return x[:, None, None]


def _circle(dx, dy, r, c, s):
    return (r[:, None] ** 2 - dy * dy)[:, :, None] - (dx * dx)[:, None, :]


def _ring(dx, dy, r, c, s):
    d2 = (dy * dy)[:, :, None] + (dx * dx)[:, None, :]  # (M, H, W)
    return torch.minimum(_col(r * r) - d2, d2.sub_(_col(0.3 * r * r)))  # hole radius 0.55 r


def _square(dx, dy, r, c, s):
    u = _lin(dx, dy, c, s).abs_()
    v = _lin(dx, dy, -s, c).abs_()
    return torch.maximum(u, v).neg_().add_(_col(0.85 * r))


def _cross(dx, dy, r, c, s):
    u = _lin(dx, dy, c, s).abs_()
    v = _lin(dx, dy, -s, c).abs_()
    thin = torch.minimum(u, v).neg_().add_(_col(0.35 * r))
    return torch.minimum(torch.maximum(u, v).neg_().add_(_col(r)), thin)


def _triangle(dx, dy, r, c, s):
    # equilateral, circumradius 1.15 r: inside iff every edge function is below the inradius
    d = (0.575 * r)[:, None]
    m = _lin(dx, dy, *_turn(c, s, 90.0), d)
    for deg in (210.0, 330.0):
        m = torch.maximum(m, _lin(dx, dy, *_turn(c, s, deg), d))
    return m.neg_()


def _star(dx, dy, r, c, s):
    # regular pentagram, outer radius 1.25 r: its five edge lines lie at distance R cos 72 deg, and
    # a point is inside iff it is outside at most one of them, i.e. the second largest is < 0
    d = (1.25 * math.cos(math.radians(72.0)) * r)[:, None]
    a, b = _lin(dx, dy, *_turn(c, s, 90.0), d), _lin(dx, dy, *_turn(c, s, 162.0), d)
    top, second = torch.maximum(a, b), torch.minimum(a, b)
    for k in range(2, 5):
        x = _lin(dx, dy, *_turn(c, s, 90.0 + 72.0 * k), d)
        second = torch.maximum(second, torch.minimum(top, x))
        top = torch.maximum(top, x)
    return second.neg_()


_DRAW = (_circle, _square, _triangle, _star, _cross, _ring)


def shape_masks(cls: Tensor, cx: Tensor, cy: Tensor, radius: Tensor, cos: Tensor, sin: Tensor,
                image_size: int | tuple[int, int], out: Tensor | None = None) -> Tensor:
    """Pixel masks of shapes, ``(..., H, W)`` with 1.0 on a shape's pixels and 0.0 elsewhere.

    Every argument but ``image_size`` (one number for a square, else ``(height, width)``) has the
    same shape (one entry per object): ``cls`` indexes
    :data:`SHAPES` (-1: no object, all zeros; below -1: left as it is in ``out``), ``cx, cy`` the centre in pixels (pixel ``(x, y)`` has its
    centre at ``(x + 0.5, y + 0.5)``), ``radius`` the size in pixels (a circle's radius; other
    shapes are scaled to a similar area), ``cos, sin`` the rotation. Each class is drawn only
    for its own objects. ``out`` (contiguous) receives the masks when given.
    """
    H, W = size_hw(image_size)
    out = torch.empty(*cls.shape, H, W, device=cls.device) if out is None else out
    flat, outf = cls.reshape(-1), out.view(-1, H, W)
    xs = torch.arange(W, device=cls.device, dtype=torch.float32) + 0.5  # pixel centres
    ys = torch.arange(H, device=cls.device, dtype=torch.float32) + 0.5
    outf.index_fill_(0, (flat == -1).nonzero().squeeze(1), 0.0)
    for k in range(len(SHAPES)):
        sel = (flat == k).nonzero().squeeze(1)
        if sel.numel():
            dx = xs[None, :] - cx.reshape(-1)[sel, None]  # (M, W)
            dy = ys[None, :] - cy.reshape(-1)[sel, None]  # (M, H)
            inside = _DRAW[k](dx, dy, radius.reshape(-1)[sel], cos.reshape(-1)[sel], sin.reshape(-1)[sel])
            outf.index_copy_(0, sel, inside.clamp_(0.0, 1.0).ceil_())  # > 0 becomes exactly 1
    return out


def dome_normals(cx: Tensor, cy: Tensor, radius: Tensor, image_size: int | tuple[int, int],
                 out: Tensor | None = None) -> Tensor:
    """Unit normals ``(..., 3, H, W)`` of spheres seen from the front, per pixel: ``cx, cy, radius``
    are ``(..., H, W)``, the centre and radius in pixels of the sphere whose surface each pixel
    shows (pixel ``(x, y)`` has its centre at ``(x + 0.5, y + 0.5)``). The normal at an offset
    ``(dx, dy)`` from the centre is ``(dx, -dy, sqrt(r^2 - dx^2 - dy^2)) / r``: ``x`` right, ``y``
    up, ``z`` towards the camera; past the sphere's rim it lies flat, ``(dx, -dy, 0) / r``.
    Exactly rounded ops only (a square root is one), so a map is the same bit for bit anywhere.
    ``out`` receives the normals when given."""
    H, W = size_hw(image_size)
    out = torch.empty(*cx.shape[:-2], 3, H, W, device=cx.device) if out is None else out
    xs = torch.arange(W, device=cx.device, dtype=torch.float32) + 0.5  # pixel centres
    ys = torch.arange(H, device=cx.device, dtype=torch.float32) + 0.5
    dx, dy = xs - cx, ys[:, None] - cy  # (..., H, W)
    z = radius * radius
    z.sub_(dx * dx).sub_(dy * dy).clamp_(min=0.0).sqrt_()
    torch.div(dx, radius, out=out.select(-3, 0))
    torch.div(dy.neg_(), radius, out=out.select(-3, 1))
    torch.div(z, radius, out=out.select(-3, 2))
    return out
