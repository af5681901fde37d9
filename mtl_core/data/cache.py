"""Decoded, resized images kept between epochs: in memory while they fit a budget, then on disk.

Why: decoding a photo and resizing it (about 2-8 ms for a 640 x 480 JPEG) costs far more than
the rest of a sample (tens of microseconds to turn cached bytes into a float tensor), and it is
the same work every epoch. The real-data adapters ask this cache for what they would decode
(:func:`~mtl_core.data.image_folder.load_image`, the masks of
:mod:`~mtl_core.data.seg_folder`), so only the first epoch decodes.

An entry is keyed by the file's absolute path, size and modification time (ns), and a
``variant`` naming what was made of it (resize policy, height x width ...): a touched or
replaced file, or another size or policy, is another entry. With it the cache keeps the source
image's ``(h0, w0)``, from which the adapter recomputes the :class:`~mtl_core.data.resize.Fit`
its labels follow.

- **Memory**: the tensors as made (uint8 images), per process, up to ``memory_bytes`` in all
  (default 1 GiB; ``MTL_CACHE_MEMORY``, e.g. ``512M`` or ``0``).
- **Disk**: what no longer fits, one file per entry under ``folder`` (``MTL_CACHE_DIR``, else
  ``~/.cache/mtl_studio/images``), named by a hash of the key. A file is written to a temporary
  name and renamed into place (``os.replace``, atomic on one file system), so processes sharing
  the folder never read a partial file; two writing the same entry write the same bytes. Each
  file repeats its key and a CRC-32 of its data: a corrupt, truncated, foreign or unreadable file
  is decoded again (and rewritten when the entry goes to disk), never an error; a full or
  read-only disk keeps nothing there.
  Nothing is ever evicted from the folder: delete it to reclaim the space.

Nothing here draws random numbers (temporary names come from :mod:`tempfile`'s own generator).
"""
from __future__ import annotations

import hashlib
import os
import struct
import tempfile
import threading
import zlib
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

DEFAULT_MEMORY = 1 << 30  # 1 GiB: ~28,000 images at 96 x 128, ~80,000 at 64 x 64
MAGIC = b"MTLC1\n"
_HEADER = struct.Struct("<IIIBBI")  # crc32 of data, h0, w0, dtype code, ndim, key length
_DTYPES = {0: torch.uint8, 1: torch.int16, 2: torch.int32, 3: torch.int64, 4: torch.float32}
_CODES = {v: k for k, v in _DTYPES.items()}

Made = tuple[Tensor, tuple[int, int]]  # (tensor, source (h0, w0))


def parse_bytes(text: str) -> int:
    """``"1G"``, ``"512M"``, ``"64k"`` or a plain number of bytes."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}.get(t[-1:], 1)
    number = t[:-1] if mult > 1 else t
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"{text!r} is not a size; write bytes or a number with K, M or G, e.g. 512M") from None
    return max(0, int(value * mult))


def default_folder() -> Path:
    """``$MTL_CACHE_DIR``, else ``~/.cache/mtl_studio/images``."""
    env = os.environ.get("MTL_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "mtl_studio" / "images"


class ImageCache:
    """Tensors made from files, kept in memory up to ``memory_bytes`` and on disk beyond (see the
    module docstring). Safe to share between threads; the disk tier between processes too."""

    def __init__(self, memory_bytes: int = DEFAULT_MEMORY, folder: str | Path | None = None) -> None:
        self.memory_bytes = int(memory_bytes)
        self.folder = Path(folder).expanduser() if folder is not None else default_folder()
        self._memory: dict[tuple, Made] = {}
        self._latest: dict[tuple[str, str], tuple] = {}  # (path, variant) -> its current key
        self._used = 0
        self._lock = threading.Lock()
        self.stats = {"memory": 0, "disk": 0, "made": 0}  # how each get was answered

    @property
    def memory_used(self) -> int:
        return self._used

    def get(self, path: str | Path, variant: str, make: Callable[[], Made]) -> Made:
        """The ``(tensor, (h0, w0))`` made from ``path`` as ``variant``: cached, or ``make()``
        called and kept. The tensor is shared: do not change it in place."""
        full = os.path.abspath(path)
        st = os.stat(full)  # a missing file fails here, with its name, as opening it would
        key = (full, st.st_size, st.st_mtime_ns, variant)
        hit = self._memory.get(key)
        if hit is not None:
            self._count("memory")
            return hit
        file = self._file(key)
        made = self._read(file, key)
        if made is None:
            made = make()
            self._count("made")
            if not self._remember(key, made):
                self._write(file, key, made)
        else:
            self._count("disk")
            self._remember(key, made)  # another process wrote it, or memory has room again
        return made

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()
            self._latest.clear()
            self._used = 0

    # ---- memory --------------------------------------------------------------------------
    def _count(self, how: str) -> None:
        with self._lock:
            self.stats[how] += 1

    def _remember(self, key: tuple, made: Made) -> bool:
        """Keep ``made`` in memory if it fits the budget (an older version of the same file and
        variant is dropped first); False when it does not fit."""
        size = made[0].numel() * made[0].element_size()
        with self._lock:
            old = self._latest.get((key[0], key[3]))
            if old is not None and old != key and old in self._memory:
                gone = self._memory.pop(old)[0]
                self._used -= gone.numel() * gone.element_size()
            if self._used + size > self.memory_bytes:
                return False
            if key not in self._memory:
                self._memory[key] = made
                self._used += size
            self._latest[(key[0], key[3])] = key
            return True

    # ---- disk ----------------------------------------------------------------------------
    @staticmethod
    def _key_bytes(key: tuple) -> bytes:
        return "\0".join(str(k) for k in key).encode("utf-8", "surrogateescape")

    def _file(self, key: tuple) -> Path:
        h = hashlib.sha256(self._key_bytes(key)).hexdigest()
        return self.folder / h[:2] / f"{h[2:34]}.bin"

    def _read(self, file: Path, key: tuple) -> Made | None:
        """The entry in ``file``, or None when absent or not exactly this key's intact data."""
        try:
            with open(file, "rb") as f:
                buf = bytearray(f.read())
        except OSError:
            return None
        try:
            n0 = len(MAGIC)
            if buf[:n0] != MAGIC:
                return None
            crc, h0, w0, code, ndim, klen = _HEADER.unpack_from(buf, n0)
            p = n0 + _HEADER.size
            shape = struct.unpack_from(f"<{ndim}I", buf, p)
            p += 4 * ndim
            if bytes(buf[p:p + klen]) != self._key_bytes(key):
                return None  # another key with the same hash (or a damaged key)
            p += klen
            dtype = _DTYPES[code]
            count = 1
            for s in shape:
                count *= s
            if len(buf) - p != count * torch.empty(0, dtype=dtype).element_size() or zlib.crc32(buf[p:]) != crc:
                return None
            data = torch.frombuffer(buf, dtype=dtype, offset=p, count=count) if count else torch.empty(0, dtype=dtype)
            return data.reshape(shape), (h0, w0)
        except (struct.error, KeyError, ValueError, RuntimeError):
            return None

    def _write(self, file: Path, key: tuple, made: Made) -> None:
        """``made`` into ``file`` atomically; best effort (a full or read-only disk keeps nothing)."""
        tensor, (h0, w0) = made
        t = tensor.detach().cpu().contiguous()
        data = t.numpy().tobytes() if t.numel() else b""
        kb = self._key_bytes(key)
        header = MAGIC + _HEADER.pack(zlib.crc32(data), h0, w0, _CODES[t.dtype], t.dim(), len(kb)) + \
            struct.pack(f"<{t.dim()}I", *t.shape) + kb
        tmp = None
        try:
            file.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=".tmp-", suffix=".bin")
            with os.fdopen(fd, "wb") as f:
                f.write(header)
                f.write(data)
            os.replace(tmp, file)
        except OSError:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass


_default: ImageCache | None = None
_default_lock = threading.Lock()


def default_cache() -> ImageCache:
    """The process's cache, made on first use from ``MTL_CACHE_MEMORY`` and ``MTL_CACHE_DIR``."""
    global _default
    with _default_lock:
        if _default is None:
            env = os.environ.get("MTL_CACHE_MEMORY")
            _default = ImageCache(parse_bytes(env) if env else DEFAULT_MEMORY)
        return _default


def set_default_cache(cache: ImageCache | None) -> None:
    """Use ``cache`` from now on (``None``: make a fresh one from the environment on next use)."""
    global _default
    with _default_lock:
        _default = cache
