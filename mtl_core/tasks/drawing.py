"""Drawing helpers shared by the tasks' overlays: a class palette, text labels, legends, colour maps.

Everything takes and returns uint8 ``(3, H, W)`` tensors and draws with
``torchvision.utils.draw_bounding_boxes`` (text with a filled background box). Text uses a
TrueType font found on the system (DejaVu Sans, Liberation Sans, Arial ...) scaled to the
image; where there is none, Pillow's built-in font, which needs no file.
"""
from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import ImageFont
from torch import Tensor
from torchvision.utils import draw_bounding_boxes

Colour = tuple[int, int, int]

# Tableau 10 then its lighter half (matplotlib's "tab20" order): distinct hues, readable on photos
PALETTE: tuple[Colour, ...] = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)

# Turbo (Mikhailov, "Turbo, An Improved Rainbow Colormap for Visualization", Google AI blog 2019;
# LUT Apache-2.0) sampled at 17 evenly spaced points; linear interpolation between them stays
# within 7/255 of the full 256-entry table.
TURBO_LUT: tuple[Colour, ...] = (
    (48, 18, 59), (64, 64, 161), (70, 107, 227), (66, 147, 255), (41, 187, 236), (24, 220, 195),
    (49, 242, 153), (107, 253, 100), (163, 253, 60), (204, 237, 52), (237, 208, 58), (253, 174, 53),
    (251, 128, 34), (236, 82, 15), (210, 49, 5), (172, 23, 1), (122, 4, 3),
)

_FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/liberation-sans/LiberationSans-Regular.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
DEFAULT_FONT_SIZE = 10  # Pillow's built-in font size; also the smallest size we scale to


def colour_for(class_index: int) -> Colour:
    """The fixed colour of a class (0-based index into ``DatasetInfo.class_names``)."""
    return PALETTE[int(class_index) % len(PALETTE)]


def text_colour(background: Colour) -> Colour:
    """Black or white, whichever reads better on ``background`` (ITU-R BT.601 luma)."""
    r, g, b = background
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


@functools.lru_cache(maxsize=1)
def font_path() -> str | None:
    """A TrueType font on this system (``MTL_FONT`` overrides), or ``None`` for Pillow's built-in."""
    for path in (os.environ.get("MTL_FONT", ""), *_FONT_CANDIDATES):
        if path and os.path.isfile(path):
            try:
                ImageFont.truetype(path, DEFAULT_FONT_SIZE)
            except OSError:
                continue
            return path
    return None


def font_size_for(height: int, width: int) -> int:
    """Text height that stays readable from a 64 px thumbnail to a photo: 1/20 of the short side."""
    if font_path() is None:
        return DEFAULT_FONT_SIZE  # the built-in font has one size through torchvision
    return max(DEFAULT_FONT_SIZE, min(48, round(min(height, width) / 20)))


@functools.lru_cache(maxsize=16)
def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    path = font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default()


def text_size(text: str, font_size: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of ``text``'s background box as :func:`label_text` draws it."""
    left, top, right, bottom = _font(font_size).getbbox(text)
    _, line_top, _, line_bottom = _font(font_size).getbbox("Ag")
    return int(right) + 3, int(max(bottom, line_bottom) - min(top, line_top)) + 3


def _draw_labels(image: Tensor, texts: Sequence[str], corners: Sequence[tuple[int, int]],
                 backgrounds: Sequence[Colour], font_size: int) -> Tensor:
    """One call to torchvision for several labels; ``corners`` are the boxes' top-left pixels."""
    if not texts:
        return image
    device = image.device
    _, top, _, _ = _font(font_size).getbbox("Ag")
    # draw_bounding_boxes writes the text 1 px inside the (invisible, width 0) box and fills
    # the text's own bbox +1 px; shift up by the font's top bearing so the fill starts at y
    boxes = torch.tensor([[x, y - top, x, y - top] for x, y in corners], dtype=torch.float32)  # (n, 4)
    path = font_path()
    out = draw_bounding_boxes(
        image.cpu(), boxes, labels=list(texts), colors=list(backgrounds), width=0,
        font=path, font_size=font_size if path else None, fill_labels=True,
        label_colors=[text_colour(c) for c in backgrounds], label_background_colors=list(backgrounds),
    )
    return out.to(device)


def _anchor(corner: str, size: tuple[int, int], image_hw: tuple[int, int], row: int, row_height: int,
            margin: int) -> tuple[int, int]:
    """Top-left pixel of a box of ``size = (w, h)`` in ``corner``, ``row`` rows away from it."""
    if corner not in CORNERS:
        raise ValueError(f"corner {corner!r} is not one of {', '.join(CORNERS)}")
    (w, h), (img_h, img_w) = size, image_hw
    x = margin if corner.endswith("left") else img_w - w - margin
    y = margin + row * row_height if corner.startswith("top") else img_h - h - margin - row * row_height
    return max(0, x), max(0, y)


def label_text(image: Tensor, text: str, colour: Colour = (0, 0, 0), corner: str = "top-left",
               row: int = 0, xy: tuple[int, int] | None = None, font_size: int | None = None,
               margin: int = 1) -> Tensor:
    """Draw ``text`` on a filled ``colour`` box at a corner of ``image`` (uint8 ``(3, H, W)``).

    ``row`` stacks several labels in one corner (row 0 is nearest the corner); ``xy`` places the
    box's top-left pixel explicitly instead. The text is black or white, whichever reads better.
    """
    h, w = image.shape[-2:]
    size = font_size or font_size_for(h, w)
    box = text_size(text, size)
    at = xy if xy is not None else _anchor(corner, box, (h, w), row, box[1], margin)
    return _draw_labels(image, [text], [at], [colour], size)


def legend(image: Tensor, entries: Sequence[tuple[str, Colour]], corner: str = "bottom-right",
           font_size: int | None = None, margin: int = 1, max_rows: int = 12) -> Tensor:
    """A column of ``(name, colour)`` chips in one corner: each name on its class colour.

    Entries beyond ``max_rows`` are summarised as "+n more" so a legend never covers the image.
    """
    entries = list(entries)
    if not entries:
        return image
    if len(entries) > max_rows:
        entries = entries[: max_rows - 1] + [(f"+{len(entries) - max_rows + 1} more", (64, 64, 64))]
    h, w = image.shape[-2:]
    size = font_size or font_size_for(h, w)
    row_height = text_size("Ag", size)[1]
    texts, corners, colours = [], [], []
    for i, (name, colour) in enumerate(entries):
        box = text_size(name, size)
        texts.append(name)
        corners.append(_anchor(corner, box, (h, w), i, row_height, margin))
        colours.append(tuple(int(c) for c in colour))
    return _draw_labels(image, texts, corners, colours, size)


def colormap(values: Tensor, vmin: float, vmax: float, lut: Sequence[Colour] = TURBO_LUT) -> Tensor:
    """Float ``(H, W)`` -> uint8 ``(3, H, W)``: ``vmin`` maps to ``lut[0]``, ``vmax`` to ``lut[-1]``.

    Values outside the range are clamped; NaN maps to ``vmin``. Linear interpolation between the
    LUT's entries, on the values' device.
    """
    table = torch.tensor(lut, dtype=torch.float32, device=values.device)  # (L, 3)
    span = max(float(vmax) - float(vmin), 1e-12)
    t = ((torch.nan_to_num(values.float(), nan=float(vmin)) - vmin) / span).clamp(0, 1)  # (H, W)
    pos = t * (len(lut) - 1)
    lo = pos.floor().long().clamp(max=len(lut) - 2)  # (H, W)
    frac = (pos - lo)[..., None]  # (H, W, 1)
    rgb = table[lo] * (1 - frac) + table[lo + 1] * frac  # (H, W, 3)
    return rgb.round().clamp(0, 255).to(torch.uint8).permute(2, 0, 1).contiguous()  # (3, H, W)


def blend(image: Tensor, overlay: Tensor, opacity: float, mask: Tensor | None = None) -> Tensor:
    """``image * (1 - opacity) + overlay * opacity`` (rounded), only where ``mask`` (bool ``(H, W)``).

    Pixels outside ``mask`` are returned bit for bit; opacity 0 returns the image, 1 the overlay.
    """
    a = float(min(max(opacity, 0.0), 1.0))
    mixed = (image.float() * (1 - a) + overlay.to(image.device).float() * a).round().clamp(0, 255).to(torch.uint8)
    if mask is None:
        return mixed
    return torch.where(mask.to(image.device)[None], mixed, image)  # (3, H, W)


# ---- colours of right and wrong, shared by the error drawings (matplotlib's tab10 green and red) ----
HIT: Colour = (44, 160, 44)
WRONG: Colour = (214, 39, 40)
MISSED: Colour = (255, 160, 0)  # amber: something the truth has that the prediction left out
WRONG_PIXEL: Colour = (255, 0, 255)  # magenta: a hue no class of the palette has
BAND_BACKGROUND: Colour = (245, 245, 245)
BAR_BACKGROUND: Colour = (255, 255, 255)


def hex_colour(colour: Colour) -> str:
    """``(r, g, b)`` -> ``"#rrggbb"``, as the pages' legends want it."""
    return "#{:02x}{:02x}{:02x}".format(*(int(c) for c in colour))


def draw_texts(image: Tensor, texts: Sequence[str], xys: Sequence[tuple[int, int]], colours: Sequence[Colour],
               font_size: int | None = None) -> Tensor:
    """Several labels at once, each box's top-left pixel at ``xys[i]`` (see :func:`label_text`)."""
    size = font_size or font_size_for(*image.shape[-2:])
    return _draw_labels(image, list(texts), [(int(x), int(y)) for x, y in xys],
                        [tuple(int(c) for c in colour) for colour in colours], size)


def _overlaps(a: tuple[float, float, float, float], b: Sequence[float]) -> bool:
    """Whether two xyxy rectangles share area (touching edges do not)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def place_labels(boxes: Sequence[Sequence[float]], sizes: Sequence[tuple[int, int]],
                 image_hw: tuple[int, int]) -> list[tuple[int, int]]:
    """Top-left pixels for one label per box, so labels hide neither what they name nor each other.

    ``boxes`` are xyxy pixels, ``sizes`` each label's ``(w, h)``; labels are placed in the given
    order (put the most important first). Each tries, in order: above the box at its left edge,
    below it at its left edge, above and below aligned to its right edge, then those four moved
    further away (up, down, sideways) a label height or half a width at a time; x is kept inside
    the image and a place outside it is refused. The first place that overlaps no label placed
    before and no box's interior wins; failing that, the first that overlaps no label (it may lie
    over another box); only as a last resort the label goes inside its own box, at the top-left.
    Pure geometry: no drawing.
    """
    img_h, img_w = image_hw
    boxes = [tuple(float(v) for v in b) for b in boxes]
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[int, int]] = []
    for (x1, y1, x2, y2), (w, h) in zip(boxes, sizes, strict=True):
        base = [(x1, y1 - h, -1), (x1, y2, 1), (x2 - w, y1 - h, -1), (x2 - w, y2, 1)]  # (x, y, outward)
        candidates = [(x, y) for x, y, _ in base]
        for step in range(1, 9):
            candidates += [(x, y + d * step * h) for x, y, d in base]
            candidates += [(x + s * step * w / 2, y) for x, y, _ in base for s in (1, -1)]
        rects = []
        for x, y in candidates:
            x = min(max(0.0, x), max(0.0, img_w - w))
            if y < 0 or y + h > img_h:
                continue
            rects.append((x, y, x + w, y + h))
        free = [r for r in rects if not any(_overlaps(r, p) for p in placed)]
        clear = [r for r in free if not any(_overlaps(r, b) for b in boxes)]
        inside = (min(max(0.0, x1), max(0.0, img_w - w)), min(max(0.0, y1), max(0.0, img_h - h)))
        chosen = clear[0] if clear else free[0] if free else (*inside, inside[0] + w, inside[1] + h)
        placed.append(chosen)
        out.append((round(chosen[0]), round(chosen[1])))
    return out


def with_band(image: Tensor, groups: Sequence[Sequence[tuple[str, Colour]]], font_size: int | None = None,
              background: Colour = BAND_BACKGROUND) -> Tensor:
    """``image`` with a plain band stacked above it holding chips (``(text, colour)``) left to
    right, wrapping onto more rows as needed; uint8 ``(3, H + band, W)``. ``groups`` holds one list
    of chips per task, set apart by a wider gap so a class and a class present are not read as one.
    The band has one row even with no chips, so pictures drawn for the same tasks keep one height."""
    h, w = image.shape[-2:]
    size = font_size or font_size_for(h, w)
    row_h, gap = text_size("Ag", size)[1] + 2, 3
    chips, xys, x, row = [], [], gap, 0
    for group in groups:
        if chips and group:
            x += 3 * gap
        for text, colour in group:
            tw = text_size(text, size)[0]
            if x > gap and x + tw > w:
                x, row = gap, row + 1
            chips.append((text, colour))
            xys.append((x, 1 + row * row_h))
            x += tw + gap
    band = torch.tensor(background, dtype=torch.uint8, device=image.device).view(3, 1, 1)
    band = band.expand(3, (row + 1) * row_h + 1, w).clone()  # (3, band, W)
    if chips:
        band = draw_texts(band, [t for t, _ in chips], xys, [c for _, c in chips], size)
    return torch.cat([band, image], dim=-2)  # (3, band + H, W)


def _range_text(value: float) -> str:
    return f"{value:.3g}"


def colour_bar_margin(image_hw: tuple[int, int], vmin: float, vmax: float, label: str = "") -> int:
    """The width in pixels :func:`with_colour_bar` adds on the right of an image of ``image_hw``."""
    h, w = image_hw
    size = font_size_for(h, w)
    bar_w = max(4, min(h, w) // 24)
    numbers = max(text_size(_range_text(v), size)[0] for v in (vmin, vmax))
    return 4 + max(bar_w + 2 + numbers, text_size(label, size)[0] if label else 0) + 2


def with_colour_bar(image: Tensor, vmin: float, vmax: float, lut: Sequence[Colour] = TURBO_LUT,
                    label: str = "") -> Tensor:
    """``image`` widened on the right by a white margin holding a vertical colour bar (``vmax`` at
    the top) with its range written beside it and ``label`` above it: uint8 ``(3, H, W + margin)``
    (:func:`colour_bar_margin`). The image itself is left as it was, so a map keeps every pixel."""
    h, w = image.shape[-2:]
    size = font_size_for(h, w)
    margin = colour_bar_margin((h, w), vmin, vmax, label)
    text_h = text_size("Ag", size)[1]
    bar_w = max(4, min(h, w) // 24)
    top = text_h + 2 if label else 2
    bottom = h - 2
    if bottom - top < 2 * text_h + 2:  # too low for the numbers: a bare bar over the whole height
        top, bottom = 0, h
    side = torch.tensor(BAR_BACKGROUND, dtype=torch.uint8, device=image.device).view(3, 1, 1)
    side = side.expand(3, h, margin).clone()  # (3, H, margin)
    values = torch.linspace(float(vmax), float(vmin), bottom - top, device=image.device)[:, None]
    side[:, top:bottom, 4:4 + bar_w] = colormap(values.expand(-1, bar_w), vmin, vmax, lut)  # (3, bar_h, bar_w)
    out = torch.cat([image, side], dim=-1)  # (3, H, W + margin)
    if bottom - top < h:
        texts = [_range_text(vmax), _range_text(vmin)] + ([label] if label else [])
        xys = [(w + 4 + bar_w + 2, top), (w + 4 + bar_w + 2, bottom - text_h)] + ([(w + 2, 0)] if label else [])
        out = draw_texts(out, texts, xys, [BAR_BACKGROUND] * len(texts), size)
    return out


def outline_boxes(image: Tensor, boxes: Tensor, colours: Sequence[Colour], width: int = 1,
                  dashed: bool = False) -> Tensor:
    """Box outlines (xyxy pixels ``(n, 4)``) drawn inside each box, ``width`` pixels thick; dashed:
    runs of ``3 * width`` pixels on and off along every edge, starting on at each corner."""
    if not dashed:
        return draw_bounding_boxes(image.cpu(), boxes.float().cpu(), colors=list(colours), width=width).to(image.device)
    out = image.clone()
    h, w = image.shape[-2:]
    dash = 3 * width
    for (x1, y1, x2, y2), colour in zip(boxes.round().long().tolist(), colours, strict=True):
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2 + 1), min(h, y2 + 1)
        if x2 <= x1 or y2 <= y1:
            continue
        c = torch.tensor(colour, dtype=torch.uint8, device=image.device).view(3, 1, 1)
        on_x = (torch.arange(x2 - x1, device=image.device) // dash) % 2 == 0  # (bw,)
        on_y = (torch.arange(y2 - y1, device=image.device) // dash) % 2 == 0  # (bh,)
        for rows in (slice(y1, min(y2, y1 + width)), slice(max(y1, y2 - width), y2)):  # top, bottom
            out[:, rows, x1:x2] = torch.where(on_x[None, None], c, out[:, rows, x1:x2])
        for cols in (slice(x1, min(x2, x1 + width)), slice(max(x1, x2 - width), x2)):  # left, right
            out[:, y1:y2, cols] = torch.where(on_y[None, :, None], c, out[:, y1:y2, cols])
    return out


def draw_all(tasks: Mapping[str, Any], image: torch.Tensor, predictions: Mapping[str, Any],
             show: Mapping[str, bool] | None = None, opacity: float = 0.5, score_threshold: float = 0.3,
             band: bool = False) -> torch.Tensor:
    """Every shown task's overlay on ``image`` (uint8 ``(3, H, W)``), drawn by its display
    (``tasks[t].display``) in the displays' drawing order (dense maps first, so boxes and labels
    stay on top).

    The labels of the tasks that label the whole image (``image_level``: a class, a count, the
    classes present) are stacked in their display's corner, so two tasks of one kind never write
    over each other. With ``band`` they go in a plain band stacked above the image instead
    (:func:`~mtl_core.tasks.drawing.with_band`), so on a small enlarged scene they hide none of its
    objects; the result is then taller, ``(3, band + H, W)``, whenever such a task is shown. A
    task's legend (``draws_legend``: the classes a segmentation colours) goes in the band too."""
    displays = {t: tasks[t].display for t in predictions}
    out, chips, corners = image, {}, {}
    for t in sorted(predictions, key=lambda t: getattr(displays[t], "draw_order", 100)):
        if show is not None and not show.get(t, True):
            continue
        shown = displays[t]
        if getattr(shown, "image_level", False):
            place = chips if band else corners.setdefault(shown.corner, {})
            place[t] = shown.chips(predictions[t], score_threshold)
        elif band and getattr(shown, "draws_legend", False):  # the legend in the band, off the objects
            out = shown.draw(out, predictions[t], opacity=opacity, score_threshold=score_threshold, show_legend=False)
            chips[t] = [(name, hex_to_rgb(c)) for name, c in shown.legend(predictions[t])]
        else:
            out = shown.draw(out, predictions[t], opacity=opacity, score_threshold=score_threshold)
    for corner, groups in corners.items():  # the first drawn nearest the corner
        out = legend(out, [chip for group in groups.values() for chip in group], corner=corner)
    return with_band(out, _topmost_first(displays, chips)) if chips else out


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    h = colour.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def _topmost_first(displays: Mapping[str, Any], chips: Mapping[str, list]) -> list[list]:
    """The band's chip groups, the task drawn last (on top: the class) first."""
    return [chips[t] for t in sorted(chips, key=lambda t: -getattr(displays[t], "draw_order", 100))]
