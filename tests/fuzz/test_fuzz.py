"""Fuzz the config parser and the image decoder: no input makes them raise anything but the
project's own clear errors."""
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtl_core.config import ExperimentConfig
from mtl_core.errors import ConfigError, ImageDecodeError
from mtl_core.inference.images import decode_image
from mtl_core.training.validation import validate

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=20,
)
keys = st.sampled_from(["tasks", "data", "model", "weighting", "augment", "optim", "seed", "device", "name",
                        "image_size", "lr", "steps", "weights", "method", "batch_size", "x"])
config_like = st.dictionaries(keys, json_values, max_size=6)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config_like)
def test_config_parser_raises_only_config_errors(d):
    try:
        cfg = ExperimentConfig.from_dict(d)
    except ConfigError:
        return
    for err in validate(cfg):
        assert isinstance(err, ConfigError) and err.field


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_config_json_text_raises_only_config_errors(text):
    try:
        ExperimentConfig.from_json(text)
    except ConfigError:
        pass


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(["lr", "steps", "batch_size", "optimizer"]), json_values, max_size=4))
def test_optim_section_round_trips_or_is_refused(optim):
    try:
        cfg = ExperimentConfig.from_dict({"optim": optim})
    except ConfigError:
        return
    assert ExperimentConfig.from_json(json.dumps(cfg.to_dict())) == cfg


def _png_like(body: bytes) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400) | st.binary(max_size=400).map(_png_like)
       | st.binary(max_size=300).map(lambda b: b"\xff\xd8\xff\xe0" + b) | st.binary(max_size=300).map(lambda b: b"GIF89a" + b)
       | st.binary(max_size=300).map(lambda b: b"BM" + b) | st.binary(max_size=300).map(lambda b: b"II*\x00" + b))
def test_image_decoder_raises_only_its_own_error(data):
    try:
        img = decode_image(data, "fuzz.bin")
    except ImageDecodeError as e:
        assert "fuzz.bin" in str(e)
        return
    assert img.dim() == 3 and img.shape[0] == 3


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 4000), st.integers(0, 255))
def test_mutated_real_png_is_decoded_or_refused(pos, byte):
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 20, 30)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    data[pos % len(data)] = byte
    try:
        decode_image(bytes(data), "mutated.png")
    except ImageDecodeError:
        pass
