"""What a method may see (:class:`Example`) and what only the scorer and ``fit`` see.

An :class:`Example` is one referring expression with its image and candidate regions. It carries no
ground truth: the harness keeps labels apart (:class:`Label`) and hands them to ``fit`` for the
training examples only (:class:`TrainExample`), and to the scorer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Example:
    """One referring expression to ground.

    ``boxes`` are the candidates in absolute-pixel float xyxy, shape ``(n, 4)``. ``masks`` holds, per
    candidate, a COCO segmentation (polygon list or RLE dict) or ``None`` when the proposal source has
    none. ``candidate_key`` identifies the candidate set (image + proposal source) so painted images
    can be shared between expressions of the same image.
    """

    example_id: str  # "<ref_id>:<sent_id>", unique within a task
    ref_id: int
    sent_id: int
    image_id: int
    image_path: Path
    image_size: tuple[int, int]  # (width, height)
    expression: str
    boxes: np.ndarray
    categories: tuple[str, ...]
    masks: tuple[Any, ...] = field(default=())
    split: str = ""
    candidate_key: str = ""

    @property
    def n_candidates(self) -> int:
        return int(self.boxes.shape[0])


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
    return f"{int(ref_id)}:{int(sent_id)}"
