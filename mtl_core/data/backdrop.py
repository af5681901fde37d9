"""The procedural scenes' backdrop and light: a tilted, corrugated far plane with its depth and unit
normals, one distant light per image, and how it shades a surface (see :mod:`mtl_core.data.scenes`,
which draws the objects on it). Every draw comes from the scene's uniforms ``g`` and ``ripple``
and every angle from the shared ``cos``/``sin`` tables, so a scene is the same bit for bit on any
device and in any batch."""
from __future__ import annotations

import math

import torch
from torch import Tensor

ANGLES = 1024  # rotation / texture phase table size (the scenes' cos and sin tables)
BACKDROP_SPAN = 8.0  # depth units the backdrop spans along the image's short side (a ~53 degree view at 8)
SHADING = 0.4  # how strongly the light shades a surface (see shading)
RIDGE = 30.0  # degrees: the steepest slope of the backdrop's corrugation
RIDGE_SLOPE = math.tan(math.radians(RIDGE))


def light_direction(g: Tensor, cos_t: Tensor, sin_t: Tensor) -> tuple[Tensor, Tensor]:
    """One distant light per image, from the upper left: ``(azimuth, l)``, the table index of its
    direction across the image (90..180 degrees from the right, counter-clockwise) and its unit
    vector ``(B, 3)`` (``x`` right, ``y`` up, ``z`` towards the camera), 40..70 degrees off the
    camera's axis: a low, raking light, which shows a relief best. Table angles keep every op
    exactly rounded."""
    azimuth = ((0.25 + 0.25 * g[:, 9]) * ANGLES).long()  # (B,)
    tilt = ((40.0 + 30.0 * g[:, 13]) * (ANGLES / 360.0)).long()
    return azimuth, torch.stack([sin_t[tilt] * cos_t[azimuth], sin_t[tilt] * sin_t[azimuth], cos_t[tilt]], 1)


def shading(normals: Tensor, light: tuple[Tensor, Tensor]) -> Tensor:
    """Lambert's cosine law (Lambert, "Photometria", 1760): a surface's brightness is
    ``max(n . l, 0)`` under a distant light ``l``; here ``1 + SHADING * (max(n . l, 0) - l_z)``, so
    that a surface facing the camera keeps its colour, one facing the light is up to ~25%
    brighter and one turned away from it up to ~30% darker: enough to show the relief, little
    enough that colours still tell the classes apart. ``(B, H, W)`` from normals ``(B, 3, H, W)``."""
    lx, ly, lz = (v[:, None, None] for v in (SHADING * light[1]).unbind(1))  # (B, 1, 1) each
    lit = (normals[:, 0] * lx).add_(normals[:, 1] * ly).add_(normals[:, 2] * lz)  # SHADING n . l
    return lit.clamp_(min=0.0).add_(1.0 - lz)


def backdrop(g: Tensor, ripple: Tensor, light: tuple[Tensor, Tensor], hw: tuple[int, int], cos_t: Tensor,
                sin_t: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, tuple[Tensor, Tensor, Tensor]]:
    """The backdrop: a muted, tinted colour ``base (B, 3)`` plus ``texture (B, H, W)`` (a grating,
    a plaid and a vertical shading); its depth: ``top (B,)`` plus ``depth_slope (B, H, W)``, a far
    plane receding towards the top of the image with a small sideways tilt; and its unit normals
    ``facing``, their ``x``, ``y`` and ``z`` components ``(B, H, W)`` each.

    The plane leans 5 to 19 degrees up and at most 4 to either side: its normal is
    ``(dz/dx, -dz/dy, 1)`` made unit length, the slopes in depth units per depth unit across the
    image (which spans ``BACKDROP_SPAN`` units of the plane along its short side). On it runs a
    gentle corrugation, 1 to 2 waves across the short side, its slopes up to ``RIDGE`` degrees,
    crossing the light's direction within 30 degrees so that the light shows it (depth leaves
    the ripples out: they are a few percent of the distance).

    The grating's period follows the short side in both directions, so it keeps its angle on a
    wide or tall image; the plaid, axis-aligned, fits whole periods along each side."""
    H, W = hw
    S = min(H, W)
    ar_h, ar_w = torch.arange(H, device=g.device), torch.arange(W, device=g.device)
    yy, xx = (ar_h + 0.5) / H, (ar_w + 0.5) / W  # (H,), (W,)
    base = (0.15 + 0.45 * g[:, 1:2]) + 0.16 * (g[:, 2:5] - 0.5)  # (B, 3): grey plus a small tint
    amp = (0.03 + 0.05 * g[:, 14:15])  # (B, 1)

    def wave(j: int, fx: Tensor, fy: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """sin/cos tables along x (with a phase) and along y, for ``fx``, ``fy`` table steps per pixel."""
        px = (fx[:, None] * ar_w + (g[:, j:j + 1] * ANGLES).long()) & (ANGLES - 1)  # (B, W)
        py = (fy[:, None] * ar_h) & (ANGLES - 1)  # (B, H)
        return sin_t[px], cos_t[px], sin_t[py], cos_t[py]

    # an oriented grating: sin(a x + b y + p) = sin(a x + p) cos(b y) + cos(a x + p) sin(b y)
    cycles = 2 + (g[:, 6] * 7).long()  # (B,) periods across the image's short side
    ang = (g[:, 7] * ANGLES).long()
    fx = torch.round(cycles * cos_t[ang] * (ANGLES / S)).long()
    fy = torch.round(cycles * sin_t[ang] * (ANGLES / S)).long()
    sx, cx, sy, cy = wave(8, fx, fy)
    tex = (amp * sx)[:, None, :] * cy[:, :, None]  # (B, H, W)
    tex += (amp * cx)[:, None, :] * sy[:, :, None]
    # a plaid: sin(a x + p) sin(b y)
    periods = 2 + (g[:, 10:12] * 6).long()  # (B, 2): along x, along y
    fx2, fy2 = periods[:, 0] * (ANGLES // W), periods[:, 1] * (ANGLES // H)
    sx, _, sy, _ = wave(12, fx2, fy2)
    tex += (0.6 * amp * sx)[:, None, :] * sy[:, :, None]
    tex += (0.2 * (g[:, 5:6] - 0.5) * (yy - 0.5))[:, :, None]  # top-to-bottom shading
    top, bottom, tilt = 8.75 + g[:, 15], 7.0 + g[:, 16], g[:, 17] - 0.5  # (B,)
    slope = ((bottom - top)[:, None] * yy)[:, :, None] + (tilt[:, None] * (xx - 0.5))[:, None, :]  # (B, H, W)
    # the corrugation's height h = A sin(a x + b y + p) across its direction k = (a, b) (y down); its
    # slope along k is RIDGE_SLOPE cos(a x + b y + p), of which cos comes from the tables as above
    turn = (((ripple[:, 0] - 0.5) * (60.0 / 360.0)) * ANGLES).long()  # (B,) within 30 degrees of the light
    ang = (turn - light[0]) & (ANGLES - 1)  # the light's azimuth seen with y down
    waves = 1.0 + ripple[:, 1]  # (B,) 1..2 across the short side
    fx3, fy3 = torch.round(waves * cos_t[ang] * (ANGLES / S)).long(), torch.round(waves * sin_t[ang] * (ANGLES / S)).long()
    px = (fx3[:, None] * ar_w + (ripple[:, 2:3] * ANGLES).long()) & (ANGLES - 1)  # (B, W)
    py = (fy3[:, None] * ar_h) & (ANGLES - 1)  # (B, H)
    steep = cos_t[px][:, None, :] * cos_t[py][:, :, None] - sin_t[px][:, None, :] * sin_t[py][:, :, None]  # (B, H, W)
    k = (fx3 * fx3 + fy3 * fy3).float().sqrt()  # (B,)
    kx, ky = (RIDGE_SLOPE * fx3 / k)[:, None, None], (RIDGE_SLOPE * fy3 / k)[:, None, None]
    # the surface's height towards the camera is h minus the plane's depth: its normal (-dh/dx, dh/dy, 1)
    dx, dy = tilt * (S / (W * BACKDROP_SPAN)), (bottom - top) * (S / (H * BACKDROP_SPAN))  # (B,): depth per unit across, down
    nx = dx[:, None, None] - kx * steep  # (B, H, W)
    ny = (ky * steep).sub_(dy[:, None, None])
    length = (nx * nx).add_(ny * ny).add_(1.0).sqrt_()
    facing = (nx.div_(length), ny.div_(length), length.reciprocal_())  # (B, H, W) each: x right, y up, z to the camera
    return base, top, tex, slope, facing
