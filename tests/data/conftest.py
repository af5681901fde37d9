"""Each data test starts with an empty image cache whose disk tier lies in its own tmp folder
(nothing under ~/.cache, nothing carried from one test to the next)."""
from __future__ import annotations

import pytest

from mtl_core.data.cache import set_default_cache


@pytest.fixture(autouse=True)
def _fresh_image_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
    monkeypatch.delenv("MTL_CACHE_MEMORY", raising=False)
    set_default_cache(None)
    yield
    set_default_cache(None)
