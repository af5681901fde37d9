"""Each data test starts with an empty image cache whose disk tier lies in its own tmp folder
(nothing under ~/.cache, nothing carried from one test to the next). ``no_network``: a test of a
loader that must never download fails loudly when anything tries to reach the internet."""
from __future__ import annotations

import socket

import pytest

from mtl_core.data.cache import set_default_cache


@pytest.fixture(autouse=True)
def _fresh_image_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path_factory.mktemp("image-cache")))
    monkeypatch.delenv("MTL_CACHE_MEMORY", raising=False)
    set_default_cache(None)
    yield
    set_default_cache(None)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the internet fails the test loudly."""
    def refuse(*args, **kwargs):
        raise AssertionError("a network call was attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
