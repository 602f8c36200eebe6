"""Label-free heuristic baselines: what a method scores from data-set regularities alone.

Each is a method like any other (registered through the ``cptbench.methods`` entry-point group, run
by ``cptbench run -m NAME`` and scored by the harness); ``cptbench data audit`` runs them all and
compares each with random (:mod:`cptbench.run.audit`). None reads the image pixels or an evaluation
label. They read what every method is given: an :class:`~cptbench.data.examples.Example`'s candidate
boxes, category names, image size, expression and ids (``ref_id``, ``sent_id``, ``image_id``), the
other examples handed to the same ``predict`` call, and, in ``fit``, the labelled training
examples.

========================  ===================================================================
``first-candidate``       the first candidate (annotation / proposal order)
``largest-box``           the candidate with the largest box area
``smallest-box``          the candidate with the smallest box area
``most-central``          the candidate whose box centre is nearest the image centre
``category-prior``        the candidate whose category is most often the target in the training
                          examples: score (targets of the category + 1) / (candidates of the
                          category + 2), counted over the training expressions given to ``fit``
                          (``cptbench data audit`` gives it the whole train split; ``cptbench run
                          -k K`` the k-shot draw; zero-shot: uniform)
``ref-order``             the rank ``r`` (0-based) of the expression's ``ref_id`` among the ``m``
                          distinct ``ref_id`` values of its image (in the same ``predict`` call),
                          read as if the refs' targets were listed in candidate order: candidate
                          ``j`` of ``n`` scores ``C(j, r) C(n-1-j, m-1-r) / C(n, m)``, the chance
                          that the ``r``-th smallest of ``m`` random distinct candidates is ``j``
                          (so the first of two refs picks the first candidate, the last the last)
``sent-order``            the same with the expression's ``sent_id`` among its image's sentences
                          (more sentences than candidates: the sentence's relative position)
``expression-length``     longer expression, smaller target (or, when the training examples say so,
                          larger): the expression's word count as a mid-rank quantile ``q`` among
                          the expressions of the ``predict`` call, and the candidate whose area
                          quantile (mid-rank among its image's candidates, 0 = largest, 1 = smallest)
                          is nearest ``q``; ``fit`` keeps the direction that picks more training
                          targets (ties and zero-shot: longer -> smaller)
========================  ===================================================================

Ties are broken by a tiny score from a generator seeded by (heuristic, example id), never by
candidate order, so a heuristic measures its own signal and not also "first candidate". The
``ref-order``, ``sent-order`` and ``expression-length`` heuristics look at the other examples of
the same ``predict`` call: the audit passes a whole split at once; under ``cptbench run`` the
harness predicts in chunks, so an image's refs can be split across two calls.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import ClassVar, Sequence

import numpy as np

from cptbench.core.boxes import MetricSpec
from cptbench.data.examples import Example, TrainExample
from cptbench.methods import Method
from cptbench.data.sampling import rng_for

#: the tie-break is this small against any heuristic score (which are O(1) or box areas)
_TIE = 1e-9


def _areas(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def _mid_ranks(values: np.ndarray) -> np.ndarray:
    """0-based mid-ranks of ``values`` (ties share the mean of their ranks)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.arange(len(values), dtype=np.float64)
    for v in np.unique(values):
        same = values == v
        ranks[same] = ranks[same].mean()
    return ranks


def _quantiles(values: np.ndarray) -> np.ndarray:
    """Mid-rank quantiles in [0, 1] (0.5 for a single value)."""
    n = len(values)
    return np.full(n, 0.5) if n <= 1 else _mid_ranks(values) / (n - 1)


class Heuristic(Method):
    """A label-free heuristic: ``score(example)`` per example, or ``scores(examples)`` for those
    that look at the other examples of the call."""

    #: one-line description for tables (``cptbench data audit``)
    rule: ClassVar[str] = ""

    def score(self, example: Example) -> np.ndarray:  # pragma: no cover - overridden
        """The raw score of each candidate of ``example`` (higher: more likely the target)."""
        raise NotImplementedError

    def scores(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Raw scores of every example of a call; by default :meth:`score` one example at a time."""
        return [self.score(ex) for ex in examples]

    def tie_broken(self, example: Example, s: np.ndarray) -> np.ndarray:
        """``s`` plus a tiny seeded (heuristic, example id) amount per candidate, so ties never fall
        to candidate order (``s`` unchanged when it does not match the candidates)."""
        s = np.asarray(s, dtype=np.float64).reshape(-1)
        if not example.n_candidates or s.size != example.n_candidates:
            return s
        scale = max(1.0, float(np.max(np.abs(s))))
        return s + _TIE * scale * rng_for("heuristic-tie", self.name, example.example_id).random(example.n_candidates)

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """The tie-broken :meth:`scores` of ``examples``."""
        return [self.tie_broken(ex, s) for ex, s in zip(examples, self.scores(examples))]

    def describe(self) -> dict:
        """The heuristic's name and rule, and that it reads no pixels."""
        return {"heuristic": self.name, "rule": self.rule, "reads_pixels": False}


class FirstCandidate(Heuristic):
    """The first candidate (annotation / proposal order)."""

    rule = "first candidate in annotation / proposal order"

    def score(self, example: Example) -> np.ndarray:
        """Minus the candidate index: the first candidate scores highest."""
        return -np.arange(example.n_candidates, dtype=np.float64)


class LargestBox(Heuristic):
    """The candidate with the largest box."""

    rule = "largest box area"

    def score(self, example: Example) -> np.ndarray:
        """Each candidate's box area."""
        return _areas(example.boxes)


class SmallestBox(Heuristic):
    """The candidate with the smallest box."""

    rule = "smallest box area"

    def score(self, example: Example) -> np.ndarray:
        """Minus each candidate's box area."""
        return -_areas(example.boxes)


class MostCentral(Heuristic):
    """The candidate whose box centre is nearest the image centre."""

    rule = "box centre nearest the image centre"

    def score(self, example: Example) -> np.ndarray:
        """Minus the distance of each box centre from the image centre, in pixels."""
        b = np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4)
        w, h = example.image_size
        cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
        return -np.hypot(cx - w / 2, cy - h / 2)


def _train_targets(train: Sequence[TrainExample], metric: MetricSpec) -> list[tuple[Example, int]]:
    """(example, index of the candidate that is the target) for training expressions with a hit
    under the task's rule."""
    out = []
    for te in train:
        ex = te.example
        if not ex.n_candidates:
            continue
        ious = metric.ious(ex.boxes, te.label.box)
        best = int(np.argmax(ious))
        if metric.hits(ious[best]):
            out.append((ex, best))
    return out


class CategoryPrior(Heuristic):
    """The candidate whose category is most often the target in the training examples."""

    rule = "category most often the target in train: (targets + 1) / (candidates + 2)"
    trains = True

    def __init__(self, config, context):
        super().__init__(config, context)
        self._rate: dict[str, float] = {}
        self._n_train = 0

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Per category, the rate (targets + 1) / (candidates + 2) over the training expressions
        whose best candidate hits under the task's rule."""
        targets: dict[str, int] = defaultdict(int)
        seen: dict[str, int] = defaultdict(int)
        used = _train_targets(train, self.context.metric)
        for ex, t in used:
            for c in ex.categories:
                seen[c] += 1
            targets[ex.categories[t]] += 1
        self._rate = {c: (targets[c] + 1) / (seen[c] + 2) for c in seen}
        self._n_train = len(used)

    def score(self, example: Example) -> np.ndarray:
        """The smoothed target rate of each candidate's category (0.5 for a category not seen)."""
        return np.array([self._rate.get(c, 0.5) for c in example.categories], dtype=np.float64)

    def describe(self) -> dict:
        """Also the training expressions counted and the rate of each category."""
        return {**super().describe(), "n_train": self._n_train,
                "rates": {c: round(r, 4) for c, r in sorted(self._rate.items())}}


def order_statistic_scores(rank: int, m: int, n: int) -> np.ndarray:
    """Per candidate index ``j`` of ``n``: the probability that the ``rank``-th smallest (0-based) of
    ``m`` distinct candidates drawn at random is ``j``, ``C(j, rank) C(n-1-j, m-1-rank) / C(n, m)``
    (its arg-max is the best guess from the rank alone). With ``m > n`` (more sentences than
    candidates) the rank's relative position is used: ``-|j - ((rank + 0.5) / m * n - 0.5)|``."""
    j = np.arange(n)
    if n == 0:
        return np.zeros(0)
    if m > n:
        return -np.abs(j - ((rank + 0.5) / m * n - 0.5))
    return np.array([math.comb(int(i), rank) * math.comb(n - 1 - int(i), m - 1 - rank) for i in j],
                    dtype=np.float64) / math.comb(n, m)


class _IdOrder(Heuristic):
    key: ClassVar[str] = "ref_id"

    def scores(self, examples: Sequence[Example]) -> list[np.ndarray]:
        ids: dict[int, set[int]] = defaultdict(set)
        for ex in examples:
            ids[ex.image_id].add(int(getattr(ex, self.key)))
        ranked = {img: sorted(v) for img, v in ids.items()}
        out = []
        for ex in examples:
            order = ranked[ex.image_id]
            out.append(order_statistic_scores(order.index(int(getattr(ex, self.key))), len(order), ex.n_candidates))
        return out


class RefOrder(_IdOrder):
    """The candidate at the relative position of the expression's ref among its image's refs (by ref_id)."""

    rule = "rank of ref_id among the image's refs -> candidate at that relative position"
    key = "ref_id"


class SentOrder(_IdOrder):
    """The candidate at the relative position of the expression's sentence among its image's (by sent_id)."""

    rule = "rank of sent_id among the image's sentences -> candidate at that relative position"
    key = "sent_id"


def _word_count(text: str) -> int:
    return len(str(text).split())


class ExpressionLength(Heuristic):
    """Longer expression, smaller target (or larger, when the training examples say so)."""

    rule = "word-count quantile -> candidate of that area quantile (longer -> smaller unless train says larger)"
    trains = True

    def __init__(self, config, context):
        super().__init__(config, context)
        self.direction = "longer-smaller"

    def _scores(self, examples: Sequence[Example], direction: str) -> list[np.ndarray]:
        q = _quantiles(np.array([_word_count(ex.expression) for ex in examples], dtype=np.float64))
        out = []
        for ex, qe in zip(examples, q):
            if not ex.n_candidates:
                out.append(np.zeros(0))
                continue
            small = _quantiles(-_areas(ex.boxes))  # 0 = largest, 1 = smallest
            target = qe if direction == "longer-smaller" else 1.0 - qe
            out.append(-np.abs(small - target))
        return out

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Keep the direction that picks more of the training targets (ties and zero-shot:
        longer -> smaller)."""
        used = _train_targets(train, self.context.metric)
        self.direction = "longer-smaller"
        if not used:
            return
        examples = [ex for ex, _ in used]
        hits = {d: sum(int(np.argmax(self.tie_broken(ex, s))) == t for s, (ex, t) in zip(self._scores(examples, d), used))
                for d in ("longer-smaller", "longer-larger")}
        if hits["longer-larger"] > hits["longer-smaller"]:
            self.direction = "longer-larger"

    def scores(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Per candidate, minus the distance of its area quantile from the expression's word-count
        quantile among the call's expressions (reversed for ``longer-larger``)."""
        return self._scores(examples, self.direction)

    def describe(self) -> dict:
        """Also the direction in force."""
        return {**super().describe(), "direction": self.direction}
