"""``oracle``: picks the candidate with the best IoU against the ground truth.

The proposal-recall ceiling. It is the one declared exception that reads evaluation labels
(``uses_eval_labels``); every record and table marks it.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from cptbench.data.examples import Example, Label
from cptbench.methods.base import Method


class OracleMethod(Method):
    """Scores each candidate by its IoU with the example's ground-truth box (module doc)."""

    uses_eval_labels = True

    def set_eval_labels(self, labels: Mapping[str, Label]) -> None:
        """Keep the evaluation labels, by example id, for :meth:`predict`."""
        self._labels = labels

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Each candidate's IoU with the target box, by the task's IoU convention (``context.metric``)."""
        return [self.context.metric.ious(ex.boxes, self._labels[ex.example_id].box) for ex in examples]
