"""Uploads: every kind of file a person may drop on the Predict page works or gets a clear message."""
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from mtl_core.errors import ImageDecodeError
from mtl_core.inference.images import decode_image, encode_png


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_png_round_trip_keeps_pixels():
    arr = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    out = decode_image(_save(Image.fromarray(arr), "PNG"), "a.png")
    assert out.shape == (3, 5, 7) and np.array_equal(out.permute(1, 2, 0).numpy(), arr)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "CMYK", "I;16", "1", "LA"])
def test_every_colour_mode_becomes_rgb(mode):
    img = Image.new("RGB", (9, 6), (10, 200, 30)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        img = Image.fromarray(np.linspace(0, 65535, 54, dtype=np.uint16).reshape(6, 9))
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    out = decode_image(_save(img, fmt), f"x.{fmt.lower()}")
    assert out.shape == (3, 6, 9) and str(out.dtype) == "torch.uint8"


def test_16_bit_keeps_its_range():
    img = Image.fromarray(np.array([[0, 65535]], dtype=np.uint16))
    out = decode_image(_save(img, "PNG"), "deep.png")
    assert out[0, 0, 0] == 0 and out[0, 0, 1] == 255


def test_rgba_is_composited_on_white():
    img = Image.new("RGBA", (2, 2), (255, 0, 0, 0))
    out = decode_image(_save(img, "PNG"), "clear.png")
    assert out[:, 0, 0].tolist() == [255, 255, 255]


def test_exif_rotated_photo_is_shown_upright():
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode_image(_save(img, "JPEG", exif=exif), "phone.jpg")
    assert out.shape == (3, 40, 20)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("P", (8, 8), i) for i in (1, 2)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    first = decode_image(buf.getvalue(), "anim.gif")
    assert first.shape == (3, 8, 8)


def test_jpeg_with_a_png_extension_still_works():
    data = _save(Image.new("RGB", (8, 8), (1, 2, 3)), "JPEG")
    assert decode_image(data, "really_a_jpeg.png").shape == (3, 8, 8)


def test_very_small_image_works():
    assert decode_image(_save(Image.new("RGB", (8, 8)), "PNG"), "tiny.png").shape == (3, 8, 8)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"this is a text file, not a picture", "not a readable image"),
])
def test_bad_files_name_the_file_and_the_problem(data, words):
    with pytest.raises(ImageDecodeError) as e:
        decode_image(data, "notes.png")
    assert "notes.png" in str(e.value) and words in str(e.value)


def test_truncated_png_is_refused():
    data = _save(Image.new("RGB", (64, 64), (5, 5, 5)), "PNG")
    with pytest.raises(ImageDecodeError, match="broken.png: the image is damaged or truncated"):
        decode_image(data[: len(data) // 2], "broken.png")


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageDecodeError, match="bomb.png: .*too large"):
        decode_image(_png_header(30000, 30000), "bomb.png")


def test_encode_png_round_trip():
    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[1, 2] = (9, 8, 7)
    import torch

    out = decode_image(encode_png(torch.from_numpy(arr).permute(2, 0, 1)), "x.png")
    assert out[:, 1, 2].tolist() == [9, 8, 7]
