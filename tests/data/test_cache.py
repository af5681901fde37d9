"""The image cache: a second read decodes nothing (from memory, or from disk once memory is
full, also in another process's cache), a touched file or another size or policy is decoded
again, a damaged cache file is decoded again without an error, and what comes back equals a
fresh decode, with the Fit its labels need."""
from __future__ import annotations

import os
import threading

import PIL.Image
import pytest
import torch
from PIL import Image

from mtl_core.data.cache import ImageCache, default_cache, parse_bytes, set_default_cache
from mtl_core.data.image_folder import load_image


@pytest.fixture
def opened(monkeypatch):
    """How many times PIL opened a file."""
    count = {"n": 0}
    real = PIL.Image.open

    def counting(*args, **kwargs):
        count["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", counting)
    return count


def photo(path, size=(80, 60), colour=(200, 40, 10)):
    im = Image.new("RGB", size, (90, 90, 90))
    im.paste(colour, (10, 10, size[0] - 10, size[1] - 10))
    im.save(path)
    return path


def test_a_second_read_comes_from_memory_and_equals_a_fresh_decode(tmp_path, opened):
    p = photo(tmp_path / "a.jpg")
    cache = ImageCache(folder=tmp_path / "cache")
    first, f1 = load_image(p, (48, 80), "letterbox", cache=cache)
    assert opened["n"] == 1 and first.shape == (3, 48, 80)
    second, f2 = load_image(p, (48, 80), "letterbox", cache=cache)
    assert opened["n"] == 1, "the second read opened the file"
    assert torch.equal(first, second) and f1 == f2 and f1.src == (60, 80)
    assert torch.equal(load_image(p, (48, 80), "letterbox")[0], first)  # uncached: the same pixels
    assert cache.stats == {"made": 1, "memory": 1, "disk": 0}
    assert not (tmp_path / "cache").exists()  # it fitted in memory: nothing written


def test_a_touched_file_is_decoded_again_and_replaces_its_old_entry(tmp_path, opened):
    p = photo(tmp_path / "a.png")
    cache = ImageCache(folder=tmp_path / "cache")
    old, _ = load_image(p, 32, cache=cache)
    used = cache.memory_used
    photo(p, colour=(10, 200, 40))  # same name and size, new pixels
    st = os.stat(p)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    new, _ = load_image(p, 32, cache=cache)
    assert opened["n"] == 2 and not torch.equal(old, new)
    assert int(new[:, 16, 16].argmax()) == 1  # green now
    assert cache.memory_used == used  # the stale entry went


@pytest.mark.parametrize("other", [((32, 32), "crop"), ((32, 32), "stretch"), ((32, 48), "letterbox"),
                                   ((48, 32), "letterbox")])
def test_another_size_or_policy_is_another_entry(tmp_path, opened, other):
    p = photo(tmp_path / "a.png")
    cache = ImageCache(folder=tmp_path / "cache")
    base, _ = load_image(p, (32, 32), "letterbox", cache=cache)
    image, f = load_image(p, *other, cache=cache)
    assert opened["n"] == 2 and image.shape == (3, *other[0]) and f.policy == other[1]
    load_image(p, *other, cache=cache)
    load_image(p, (32, 32), "letterbox", cache=cache)
    assert opened["n"] == 2


def test_beyond_the_memory_budget_entries_go_to_disk_and_come_back_without_decoding(tmp_path, opened):
    paths = [photo(tmp_path / f"{i}.jpg", colour=(20 * i, 100, 50)) for i in range(4)]
    one = 3 * 24 * 32  # bytes of a uint8 (3, 24, 32) image (a 4:3 photo fills the frame: no letterbox bands)
    cache = ImageCache(memory_bytes=2 * one, folder=tmp_path / "cache")
    first = [load_image(p, (24, 32), cache=cache)[0] for p in paths]
    assert cache.memory_used == 2 * one
    assert len(list((tmp_path / "cache").rglob("*.bin"))) == 2  # the two that did not fit
    assert not list((tmp_path / "cache").rglob(".tmp-*"))  # written to a temp name and renamed
    again = [load_image(p, (24, 32), cache=cache)[0] for p in paths]
    assert opened["n"] == 4 and all(torch.equal(a, b) for a, b in zip(first, again))
    assert cache.stats == {"made": 4, "memory": 2, "disk": 2}
    # another process: its memory is empty, the disk tier is shared
    other = ImageCache(memory_bytes=0, folder=tmp_path / "cache")
    for p, image in zip(paths[2:], first[2:]):
        got, f = load_image(p, (24, 32), cache=other)
        assert torch.equal(got, image) and f.src == (60, 80)
    assert opened["n"] == 4


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "empty", "directory"])
def test_a_damaged_cache_file_is_decoded_again_not_an_error(tmp_path, opened, damage):
    p = photo(tmp_path / "a.jpg")
    cache = ImageCache(memory_bytes=0, folder=tmp_path / "cache")
    good, _ = load_image(p, (24, 32), cache=cache)
    [file] = (tmp_path / "cache").rglob("*.bin")
    data = file.read_bytes()
    if damage == "truncate":
        file.write_bytes(data[:-10])
    elif damage == "flip":
        file.write_bytes(data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:])
    elif damage == "garbage":
        file.write_bytes(os.urandom(len(data)))
    elif damage == "empty":
        file.write_bytes(b"")
    else:
        file.unlink()
        file.mkdir()
    image, f = load_image(p, (24, 32), cache=cache)
    assert opened["n"] == 2 and torch.equal(image, good) and f.src == (60, 80)
    if damage != "directory":  # rewritten: the next read is a disk hit again
        load_image(p, (24, 32), cache=cache)
        assert opened["n"] == 2


def test_an_unwritable_cache_folder_keeps_nothing_and_raises_nothing(tmp_path, opened):
    p = photo(tmp_path / "a.jpg")
    (tmp_path / "blocked").write_text("a file where the folder should be")
    cache = ImageCache(memory_bytes=0, folder=tmp_path / "blocked")
    a, _ = load_image(p, 32, cache=cache)
    b, _ = load_image(p, 32, cache=cache)
    assert torch.equal(a, b) and opened["n"] == 2


def test_threads_sharing_a_cache_make_each_entry_once_per_fit(tmp_path):
    paths = [photo(tmp_path / f"{i}.png", colour=(10 * i, 0, 0)) for i in range(8)]
    cache = ImageCache(folder=tmp_path / "cache")
    want = [load_image(p, 16)[0] for p in paths]
    errors = []

    def work():
        try:
            for _ in range(3):
                for p, w in zip(paths, want):
                    assert torch.equal(load_image(p, 16, cache=cache)[0], w)
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and cache.memory_used == 8 * 3 * 12 * 16  # each entry counted once


def test_caches_sharing_a_folder_write_it_concurrently_without_a_torn_file(tmp_path):
    """Separate caches over one folder stand for processes (each with its own memory): they write
    the same entries at once; every file read back is whole, and nobody decodes what is there."""
    paths = [photo(tmp_path / f"{i}.jpg", colour=(10 * i, 50, 0)) for i in range(6)]
    want = [load_image(p, (24, 32))[0] for p in paths]
    caches = [ImageCache(memory_bytes=0, folder=tmp_path / "cache") for _ in range(4)]
    errors = []

    def work(cache):
        try:
            for _ in range(3):
                for p, w in zip(paths, want):
                    assert torch.equal(load_image(p, (24, 32), cache=cache)[0], w)
        except AssertionError as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(list((tmp_path / "cache").rglob("*.bin"))) == 6 and not list((tmp_path / "cache").rglob(".tmp-*"))
    late = ImageCache(memory_bytes=0, folder=tmp_path / "cache")
    for p in paths:
        load_image(p, (24, 32), cache=late)
    assert late.stats == {"made": 0, "memory": 0, "disk": 6}


def test_the_cache_draws_nothing_from_torchs_global_generator(tmp_path):
    p = photo(tmp_path / "a.jpg")
    torch.manual_seed(5)
    state = torch.get_rng_state()
    cache = ImageCache(memory_bytes=0, folder=tmp_path / "cache")
    load_image(p, 32, cache=cache)
    load_image(p, 32, cache=cache)
    assert torch.equal(torch.get_rng_state(), state)


def test_the_default_cache_reads_its_settings_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MTL_CACHE_DIR", str(tmp_path / "here"))
    monkeypatch.setenv("MTL_CACHE_MEMORY", "3M")
    set_default_cache(None)
    cache = default_cache()
    assert cache.folder == tmp_path / "here" and cache.memory_bytes == 3 << 20
    assert default_cache() is cache
    assert [parse_bytes(t) for t in ("1G", "512M", "64k", "1000", "0", "2GiB")] == [1 << 30, 512 << 20, 64 << 10,
                                                                                   1000, 0, 2 << 30]
    with pytest.raises(ValueError, match="512M"):
        parse_bytes("lots")
