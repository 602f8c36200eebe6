"""What a method may see (:class:`Example`) and what only the scorer and ``fit`` see.

An :class:`Example` is one referring expression with its image and candidate regions. It carries no
ground truth: the harness keeps labels apart (:class:`Label`) and hands them to ``fit`` for the
training examples only (:class:`TrainExample`), and to the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cptbench.data.images import ImageHandle


@dataclass(frozen=True, eq=False)
class Example:
    """One referring expression to ground.

    ``image_handle`` is the harness's way to the pixels (:meth:`image` decodes them through a
    shared cache; ``image_handle.file()`` gives a copy of the file outside the data root): no field
    leads into the data root, where the annotations are. ``boxes`` are the candidates in
    absolute-pixel float xyxy, shape ``(n, 4)``. ``masks`` holds, per candidate, a COCO segmentation
    (polygon list or RLE dict) or ``None`` when the proposal source has none. ``candidate_key``
    identifies the candidate set (image + proposal source) so painted images can be shared between
    expressions of the same image.
    """

    example_id: str  # "<ref_id>:<sent_id>", unique within a task
    ref_id: int
    sent_id: int
    image_id: int
    image_handle: ImageHandle
    image_size: tuple[int, int]  # (width, height)
    expression: str
    boxes: np.ndarray
    categories: tuple[str, ...]
    masks: tuple[Any, ...] = field(default=())
    split: str = ""
    candidate_key: str = ""

    @property
    def n_candidates(self) -> int:
        """The number of candidate boxes."""
        return int(self.boxes.shape[0])

    @property
    def image_key(self) -> str:
        """An opaque, stable key of the image (for caches)."""
        return self.image_handle.key

    def image(self) -> np.ndarray:
        """The decoded uint8 RGB image ``(H, W, 3)`` (read-only, shared: copy before changing it)."""
        return self.image_handle.array()


@dataclass(frozen=True)
class Label:
    """Ground truth of one expression: the referred object's box (xyxy) and its segmentation."""

    example_id: str
    box: np.ndarray
    mask: Any = None


@dataclass(frozen=True, eq=False)
class TrainExample:
    """A training example as given to ``Method.fit``: the example and its label."""

    example: Example
    label: Label


def example_id(ref_id: int, sent_id: int) -> str:
    """The id of one expression, ``"<ref_id>:<sent_id>"``."""
    return f"{int(ref_id)}:{int(sent_id)}"
