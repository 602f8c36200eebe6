"""``random``: a seeded uniform choice among the candidates: the chance row of every table.

Each example's scores come from a generator seeded by (seed, example id), so a resumed run draws
exactly what an uninterrupted one would.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.methods import Method
from cptbench.data.sampling import rng_for


class RandomMethod(Method):
    """Uniform random scores, seeded per (run seed, example id)."""

    stochastic = True

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Keep the run seed; the training examples are not used."""
        self._seed = seed

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """A uniform [0, 1) score per candidate from the (seed, example id) generator."""
        seed = getattr(self, "_seed", 0)
        return [rng_for("random", seed, ex.example_id).random(ex.n_candidates) for ex in examples]
