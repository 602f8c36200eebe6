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
    uses_eval_labels = True

    def set_eval_labels(self, labels: Mapping[str, Label]) -> None:
        self._labels = labels

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        return [self.context.metric.ious(ex.boxes, self._labels[ex.example_id].box) for ex in examples]
