"""Decode an uploaded file into an upright RGB uint8 tensor, or say clearly why not.

Handles 16-bit, grayscale, palette, RGBA, CMYK, EXIF orientation and animated images (first
frame); refuses empty files, non-images, truncated files and decompression bombs with an
:class:`ImageDecodeError` that names the file.
"""
from __future__ import annotations

import io
import warnings

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from mtl_core.errors import ImageDecodeError

MAX_PIXELS = 40_000_000  # about 6300 x 6300; larger uploads are refused before decoding
MIN_SIDE = 1


def decode_image(data: bytes, filename: str = "image", max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """``data`` (the file's bytes) -> uint8 ``(3, H, W)`` RGB, upright."""
    name = str(filename)[:120]
    if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) == 0:
        raise ImageDecodeError(f"{name}: the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(bytes(data)))
            w, h = img.size
            if w * h > max_pixels:
                raise ImageDecodeError(f"{name}: {w}x{h} pixels is too large (limit {max_pixels:,} pixels); "
                                       "resize it before uploading")
            if getattr(img, "n_frames", 1) > 1:
                img.seek(0)  # animated: the first frame
            img.load()
            img = ImageOps.exif_transpose(img) or img
            rgb = _to_rgb(img)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError(f"{name}: the image is too large to decode safely (decompression bomb); "
                               "resize it before uploading") from None
    except UnidentifiedImageError:
        raise ImageDecodeError(f"{name}: not a readable image (png, jpg, webp, bmp, tiff or gif)") from None
    except (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError,
            AttributeError, ZeroDivisionError, MemoryError, RuntimeError, struct_error()) as e:
        raise ImageDecodeError(f"{name}: the image is damaged or truncated ({str(e)[:120]})") from None
    if rgb.shape[0] < MIN_SIDE or rgb.shape[1] < MIN_SIDE:
        raise ImageDecodeError(f"{name}: the image has no pixels")
    return torch.from_numpy(np.array(rgb, dtype=np.uint8, copy=True)).permute(2, 0, 1).contiguous()  # (3, H, W)


def struct_error() -> type[Exception]:
    import struct

    return struct.error


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any PIL mode -> ``(H, W, 3)`` uint8; alpha is composited on white."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(img, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
        a = a.astype(np.uint8)
        return np.repeat(a[..., None], 3, axis=2)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGBa"):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def png_bytes(image: np.ndarray) -> bytes:
    """``(H, W, 3)`` uint8 -> PNG. zlib level 1: about 3x faster than Pillow's default level 6
    and, on photos, hardly larger (the noise does not compress either way)."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def encode_png(image: torch.Tensor) -> bytes:
    """uint8 ``(3, H, W)`` tensor -> PNG bytes (for downloads)."""
    return png_bytes(to_numpy_image(image))


def to_numpy_image(image: torch.Tensor):
    """uint8 ``(3, H, W)`` tensor -> ``(H, W, 3)`` numpy array, for ``st.image`` (pages never import torch)."""
    return image.permute(1, 2, 0).contiguous().cpu().numpy()
