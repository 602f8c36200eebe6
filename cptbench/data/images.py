"""Images as the harness hands them to methods: handles, one shared decode cache, cheap checks.

A method never gets a path into the data root (from there it could read the annotation files, i.e.
the ground truth). It gets an :class:`ImageHandle`: an opaque ``key``, the image's ``size`` and
``array()``, the decoded uint8 RGB pixels (read-only, shared). A method that must have a file asks
``handle.file()`` for a copy written outside the data root.

Decoding goes through one :class:`ImageSource` per dataset: a thread-safe LRU of decoded images
(``capacity`` images) with pinning (the harness pins the k-shot training images for a whole fit,
so each is decoded once per run), a decode counter per image and optional prefetching by threads.

:func:`check_image_file` is the cheap pre-flight check run before any fit: the file exists, is not
empty, its header decodes, its size is what the annotations say, and its end marker is present
(JPEG ``FFD9``, PNG ``IEND``), which catches files truncated by an interrupted download without
decoding the pixels; the files of :data:`KNOWN_DAMAGED` (damaged in the official COCO archive) are
decoded in full. :func:`verify_image` adds a full decode (for downloaded and imported files).
``cptbench data download TASK --to ROOT --repair`` fetches damaged images again.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Sequence

import numpy as np

from cptbench.core.errors import DataError


class ImageFileError(DataError):
    """An image file that cannot be used; the message names the file and the fix."""


#: image files known to be damaged in the official COCO train2014.zip: checked by a full decode
KNOWN_DAMAGED = {
    "COCO_train2014_000000167126.jpg": "a known truncated file of the official COCO train2014.zip",
}
#: how to get damaged images again (TASK and ROOT filled in where known)
REPAIR_HINT = "`cptbench data download {task} --to {root} --repair` fetches damaged images again"


class LRUCache:
    """A small bounded mapping; the least recently used entry goes first."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: Hashable, factory: Callable[[], Any]) -> Any:
        """The value cached under ``key``, else ``factory()`` (cached when the capacity is above 0)."""
        if key in self._data:
            self.hits += 1
            self._data.move_to_end(key)
            return self._data[key]
        self.misses += 1
        value = factory()
        if self.capacity:
            self._data[key] = value
            while len(self._data) > self.capacity:
                self._data.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        """Drop every entry (the hit and miss counts stay)."""
        self._data.clear()


def decode_rgb(path: str | Path) -> np.ndarray:
    """An image file as a uint8 RGB array ``(H, W, 3)`` (stored pixel order, no EXIF rotation,
    matching COCO's annotation coordinates). Unreadable files raise :class:`ImageFileError`."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise ImageFileError(f"{path}: image file not found. Put the image there, or point --images at the folder that holds it.") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageFileError(f"{path}: cannot decode the image ({type(exc).__name__}: {exc}); the file is damaged or "
                             f"not an image. Download it again ("
                             f"{REPAIR_HINT.format(task='TASK', root='DATA_ROOT')}).") from None


_TRAILERS = {"JPEG": (b"\xff\xd9",), "PNG": (b"IEND\xaeB`\x82",)}


def check_image_file(path: str | Path, expected_size: tuple[int, int] | None = None) -> str | None:
    """``None`` if ``path`` looks like a complete image of ``expected_size`` (W, H), else what is
    wrong (one line, naming the file). Reads the header and the last bytes only."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    try:
        size = p.stat().st_size
    except FileNotFoundError:
        return f"{p}: image file not found"
    except OSError as exc:
        return f"{p}: cannot read the image file ({exc.strerror or exc})"
    if not p.is_file():
        return f"{p}: not a file"
    if size == 0:
        return f"{p}: image file is empty (0 bytes)"
    try:
        with Image.open(p) as im:
            fmt, (w, h) = im.format, im.size
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"{p}: not a readable image ({type(exc).__name__}: {exc})"
    if expected_size is not None and tuple(expected_size) != (0, 0) and (w, h) != tuple(expected_size):
        return f"{p}: image is {w}x{h} but the annotations say {expected_size[0]}x{expected_size[1]}"
    trailers = _TRAILERS.get(fmt or "")
    if trailers:
        try:
            with open(p, "rb") as f:
                f.seek(max(0, size - 64))
                tail = f.read()
        except OSError as exc:
            return f"{p}: cannot read the image file ({exc.strerror or exc})"
        if not any(t in tail for t in trailers):
            return f"{p}: {fmt} image is truncated (no end marker); download it again"
    if p.name in KNOWN_DAMAGED:
        try:
            decode_rgb(p)
        except ImageFileError as exc:
            why = str(exc).split(": ", 1)[-1].split("; ")[0]
            return f"{p}: {why} ({KNOWN_DAMAGED[p.name]}); download it again"
    return None


def verify_image(path: Path, size: tuple[int, int] | None) -> str | None:
    """``None`` if ``path`` is a complete image of ``size`` that decodes in full (as runs decode it,
    :func:`decode_rgb`), else what is wrong (one line naming the file)."""
    problem = check_image_file(path, size if size and tuple(size) != (0, 0) else None)
    if problem:
        return problem
    try:
        decode_rgb(path)
    except ImageFileError as exc:
        return str(exc)
    return None


class ImageSource:
    """Decoded images of one dataset by key, through one bounded, thread-safe cache.

    ``paths`` maps keys to files; it is private: a method sees handles only.
    """

    def __init__(self, paths: dict[str, Path] | None = None, capacity: int = 64):
        self._paths: dict[str, Path] = dict(paths or {})
        self.capacity = int(capacity)
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._pinned: dict[str, int] = {}
        self._lock = threading.RLock()
        self._inflight: dict[str, threading.Event] = {}
        self.decodes: dict[str, int] = {}
        self._copies: Path | None = None

    # -- registration -----------------------------------------------------------------------------
    def add(self, key: str, path: str | Path) -> None:
        """Register the file of image ``key``."""
        with self._lock:
            self._paths[key] = Path(path)

    def handle(self, key: str, size: tuple[int, int]) -> "ImageHandle":
        """A handle to the registered image ``key`` of ``size`` (W, H); ``KeyError`` for a key not
        registered."""
        if key not in self._paths:
            raise KeyError(f"no image registered under {key!r}")
        return ImageHandle(key, (int(size[0]), int(size[1])), self)

    # -- decoding ---------------------------------------------------------------------------------
    def array(self, key: str) -> np.ndarray:
        """The decoded image ``key`` (uint8 RGB, read-only, shared), from the cache or decoded once however
        many threads ask at the same time."""
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            event = self._inflight.get(key)
            owner = event is None
            if owner:
                event = self._inflight[key] = threading.Event()
        if not owner:  # another thread is decoding it
            event.wait()
            with self._lock:
                hit = self._cache.get(key)
            if hit is not None:
                return hit
            return self.array(key)
        try:
            arr = decode_rgb(self._paths[key])
            arr.setflags(write=False)
            with self._lock:
                self.decodes[key] = self.decodes.get(key, 0) + 1
                self._cache[key] = arr
                self._evict()
            return arr
        finally:
            with self._lock:
                self._inflight.pop(key, None)
            event.set()

    def _evict(self) -> None:
        over = len(self._cache) - max(self.capacity, len(self._pinned))
        for k in list(self._cache):
            if over <= 0:
                break
            if k not in self._pinned:
                del self._cache[k]
                over -= 1

    def pin(self, keys: Iterable[str]) -> None:
        """Keep these images decoded until :meth:`unpin` (the k-shot training images of a fit)."""
        with self._lock:
            for k in keys:
                self._pinned[k] = self._pinned.get(k, 0) + 1

    def unpin(self, keys: Iterable[str]) -> None:
        """Undo one :meth:`pin` of these images; those no longer pinned may be evicted."""
        with self._lock:
            for k in keys:
                n = self._pinned.get(k, 0) - 1
                if n > 0:
                    self._pinned[k] = n
                else:
                    self._pinned.pop(k, None)
            self._evict()

    def prefetch(self, keys: Sequence[str]) -> None:
        """Decode ``keys`` into the cache in the background (the process's :data:`DECODE_THREADS`
        threads), in order (at most ``capacity``)."""
        with self._lock:  # images already decoded or being decoded are not queued again
            todo = [k for k in dict.fromkeys(keys) if k in self._paths and k not in self._cache
                    and k not in self._inflight][: max(1, self.capacity)]
            if not todo:
                return
        pool = _decode_pool()

        def one(k):
            try:
                self.array(k)
            except ImageFileError:
                pass  # reported when the image is asked for

        for k in todo:
            pool.submit(one, k)

    # -- files ------------------------------------------------------------------------------------
    def copy_file(self, key: str) -> Path:
        """A copy of the image file in a temporary folder owned by this source (outside the data root)."""
        with self._lock:
            if self._copies is None:
                self._copies = Path(tempfile.mkdtemp(prefix="cptbench-images-"))
                import atexit

                atexit.register(shutil.rmtree, self._copies, True)
            src = self._paths[key]
            dst = self._copies / (hashlib.sha1(key.encode()).hexdigest()[:16] + src.suffix.lower())
            if not dst.exists():
                shutil.copyfile(src, dst)
                os.chmod(dst, 0o444)
            return dst

    # -- checks -----------------------------------------------------------------------------------
    def check(self, sizes: dict[str, tuple[int, int]]) -> list[str]:
        """Problems of the given images (key -> expected (W, H)), one line each; [] when all is well."""
        problems = []
        for key, size in sizes.items():
            msg = check_image_file(self._paths[key], size)
            if msg:
                problems.append(msg)
        return problems

    def stats(self) -> dict[str, Any]:
        """How often images were decoded: images decoded, decodes in all and per image."""
        with self._lock:
            n = len(self.decodes)
            total = sum(self.decodes.values())
        return {"images_decoded": n, "decodes": total, "decodes_per_image": (total / n) if n else 0.0}


@dataclass(frozen=True, eq=False)
class ImageHandle:
    """The way to one example's image. ``key`` is opaque and stable (use it for caches); ``size``
    is (width, height) from the annotations."""

    key: str
    size: tuple[int, int]
    _source: ImageSource

    def array(self) -> np.ndarray:
        """The decoded uint8 RGB image ``(H, W, 3)``; read-only and shared: copy before changing."""
        return self._source.array(self.key)

    def file(self) -> Path:
        """A read-only copy of the image file outside the data root."""
        return self._source.copy_file(self.key)

    def __repr__(self) -> str:
        return f"ImageHandle({self.key!r}, size={self.size})"


#: decode threads of the process: one small pool shared by every source
DECODE_THREADS = 2
_POOL: Any = None
_POOL_LOCK = threading.Lock()


def _decode_pool():
    """The process's decode threads (:data:`DECODE_THREADS`, created on first use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            from concurrent.futures import ThreadPoolExecutor

            _POOL = ThreadPoolExecutor(max_workers=DECODE_THREADS, thread_name_prefix="cptbench-decode")
        return _POOL


def prefetch_handles(handles: Iterable[ImageHandle]) -> None:
    """Start decoding the images of ``handles`` (first-seen order) in their sources' threads."""
    by_source: dict[int, tuple[ImageSource, list[str]]] = {}
    for h in handles:
        src = h._source
        by_source.setdefault(id(src), (src, []))[1].append(h.key)
    for src, keys in by_source.values():
        src.prefetch(keys)


def file_image(path: str | Path, size: tuple[int, int] = (0, 0)) -> ImageHandle:
    """A handle on one image file, for tests, benchmarks and scripts outside the harness (the file
    is read only when the pixels are asked for; ``size`` (0, 0) means unknown)."""
    path = Path(path)
    src = ImageSource({str(path): path}, capacity=1)
    return ImageHandle(str(path), (int(size[0]), int(size[1])), src)
