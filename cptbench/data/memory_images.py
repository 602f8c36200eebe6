"""Images held as decoded arrays, with no file behind them: what a sealed method's process gets
(:mod:`cptbench.run.sealed`), so no path leads from an example to the data root."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from cptbench.data.images import ImageHandle, ImageSource


class MemoryImageSource(ImageSource):
    """Decoded images by key, read-only; ``file()`` writes a PNG copy to a temporary folder."""

    def __init__(self, arrays: dict[str, np.ndarray] | None = None):
        super().__init__({}, capacity=0)
        self._arrays: dict[str, np.ndarray] = {}
        self.put(arrays or {})

    def put(self, arrays: dict[str, np.ndarray]) -> None:
        """Add (or replace) images by key; each is kept read-only."""
        with self._lock:
            for key, arr in arrays.items():
                arr = np.array(arr, dtype=np.uint8, copy=True)
                arr.setflags(write=False)
                self._arrays[key] = arr

    def drop(self, keys: Iterable[str]) -> None:
        """Forget these images (the parent sends them again when they are needed)."""
        with self._lock:
            for key in keys:
                self._arrays.pop(key, None)

    def handle(self, key: str, size: tuple[int, int]) -> ImageHandle:
        """A handle to image ``key`` (it must have been :meth:`put`)."""
        if key not in self._arrays:
            raise KeyError(f"no image held under {key!r}")
        return ImageHandle(key, (int(size[0]), int(size[1])), self)

    def array(self, key: str) -> np.ndarray:
        """The held image ``key``."""
        with self._lock:
            return self._arrays[key]

    def prefetch(self, keys: Sequence[str]) -> None:
        """Nothing to decode: the images are held already."""

    def copy_file(self, key: str) -> Path:
        """A PNG copy of image ``key`` in a temporary folder of this source."""
        from PIL import Image

        with self._lock:
            if self._copies is None:
                self._copies = Path(tempfile.mkdtemp(prefix="cptbench-images-"))
                import atexit

                atexit.register(shutil.rmtree, self._copies, True)
            dst = self._copies / (hashlib.sha1(key.encode()).hexdigest()[:16] + ".png")
            if not dst.exists():
                Image.fromarray(self._arrays[key]).save(dst)
                os.chmod(dst, 0o444)
            return dst

    def stats(self) -> dict[str, Any]:
        """Images held (nothing is decoded here)."""
        with self._lock:
            return {"images_held": len(self._arrays), "decodes": 0}
