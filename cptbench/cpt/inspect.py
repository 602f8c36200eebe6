"""What the model saw for one expression: the painted copies, the prompt texts and the scores."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from cptbench.core.boxes import iou_matrix
from cptbench.data.examples import Example, Label


@dataclass
class GroupView:
    """One painted copy of an explanation: its candidates, their colour words, the prompt text and
    the painted image."""

    group: int
    candidates: list[int]
    colours: list[str]
    text: str
    image: np.ndarray  # painted uint8 (H, W, 3)


@dataclass
class Explanation:
    """What :func:`explain` collected for one example: its painted groups, the candidates' scores,
    their IoU with the ground truth and the method's ``describe()``."""

    example: Example
    groups: list[GroupView]
    scores: np.ndarray
    ious: np.ndarray | None  # IoU of each candidate with the ground truth (None without a label)
    info: dict[str, Any]

    @property
    def predicted(self) -> int:
        """The index of the highest-scoring candidate (-1 without candidates)."""
        return int(np.argmax(self.scores)) if self.scores.size else -1


def explain(method, example: Example, label: Label | None = None, iou_convention: str = "inclusive") -> Explanation:
    """Run ``method`` (a fitted CPT method) on one example and collect everything it fed the model."""
    method.setup()
    groups = []
    for g, members in enumerate(method.painter.groups(example)):
        groups.append(GroupView(g, list(members), list(method.palette.words[: len(members)]),
                                method._text(example, g), method.painter.painted(example, g)))
    scores = np.asarray(method.predict([example])[0], dtype=np.float64)
    ious = iou_matrix(example.boxes, label.box, iou_convention)[:, 0] if label is not None else None
    return Explanation(example, groups, scores, ious, method.describe())
