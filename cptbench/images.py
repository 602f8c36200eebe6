"""Image loading and a small bounded cache, shared by every method."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Hashable

import numpy as np


class LRUCache:
    """A small bounded mapping; the least recently used entry goes first."""

    def __init__(self, capacity: int):
        self.capacity = max(0, int(capacity))
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get_or_create(self, key: Hashable, factory: Callable[[], Any]) -> Any:
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
        self._data.clear()


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as a uint8 RGB array ``(H, W, 3)`` (stored pixel order, no EXIF rotation,
    matching COCO's annotation coordinates)."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.uint8)
