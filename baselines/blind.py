"""Blind baselines: how far a task can be solved without looking at the image (``blind-text``) or
without reading the expression (``blind-image``), after Cirik et al. (NAACL 2018), who showed that
RefCOCO models ignoring one of the two score far above chance.

Neither reads a pixel. Both rank an example's candidates with a linear softmax model over the
per-candidate features of :mod:`cptbench_baselines.blind_features` (box geometry, ranks and
extremes among the image's candidates and among those of the same category, annotation order, a
hashed one-hot of the category):

* ``blind-image`` (no expression): score ``phi_c . v``; it learns where targets tend to be (the
  second annotation, the leftmost box, the largest person, ...), whatever the expression says;
* ``blind-text`` (the expression, the boxes, the category names; no pixels): the candidate features
  plus whether the expression names the candidate's category, and the hashed bag of the
  expression's words crossed with every one of those features: score ``phi_c . (v + W b_e)``, with
  ``b_e`` the 0/1 vector of the expression's word buckets (``buckets`` of them), so "left" can
  raise the weight of "leftmost among its category" and "man" the weight of category ``person``.

Training (``fit``): per training expression, the target is the candidate of highest IoU with the
ground truth when it hits under the task's metric (``context.metric``); an expression without such
a candidate, or with fewer than two candidates, is left out (counted in :meth:`describe`). The loss
is the softmax cross-entropy over each expression's candidates toward its target, summed over the
training expressions, plus ``l2 / 2`` times the squared weights (a fixed prior: the more training
expressions, the less it weighs), minimised from zero weights by L-BFGS (scipy) for at most
``iterations`` iterations. The default ``l2 = 30`` is the best of 3, 10, 30 and 100 for
``blind-text`` in 5-fold cross-validation by image on synthref's train split (83.7 % of held-out
train expressions; no evaluation split was used). The audit (:mod:`cptbench.run.audit`) fits them on the whole train split;
``cptbench run -k K`` on the k-shot draw; zero-shot leaves the weights at zero.

Deterministic: features and hashes depend on nothing but the example, L-BFGS from zero weights has
no randomness, and ties (all scores equal, e.g. zero-shot) are broken by a tiny score from a
generator seeded by (method, example id), never by candidate order. No evaluation label is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from cptbench.data.examples import Example, TrainExample
from cptbench.data.sampling import rng_for
from cptbench.methods import Method

from .blind_features import (CANDIDATE_FEATURES, MATCH_FEATURES, candidate_features, match_features, word_buckets,
                             words)

#: the tie-break is this small against the scale of the scores
_TIE = 1e-9


@dataclass(frozen=True)
class BlindConfig:
    """Options of ``blind-text`` / ``blind-image`` (``--set key=value``; module doc)."""

    buckets: int = 1024  # hash buckets of the expression's bag of words (blind-text)
    l2: float = 30.0  # weight of the squared-weight penalty against the loss summed over expressions
    iterations: int = 300  # L-BFGS iterations at most

    def __post_init__(self):
        checks = [
            (isinstance(self.buckets, int) and not isinstance(self.buckets, bool) and self.buckets >= 1,
             f"buckets must be an integer >= 1, got {self.buckets!r}"),
            (isinstance(self.l2, (int, float)) and not isinstance(self.l2, bool) and self.l2 >= 0,
             f"l2 must be a number >= 0, got {self.l2!r}"),
            (isinstance(self.iterations, int) and not isinstance(self.iterations, bool) and self.iterations >= 1,
             f"iterations must be an integer >= 1, got {self.iterations!r}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


@dataclass
class _Batch:
    """Training expressions flattened: candidate features, segment starts, targets, word buckets."""

    phi: np.ndarray  # (M, F) every candidate of every expression
    starts: np.ndarray  # (N,) first row of each expression
    seg: np.ndarray  # (M,) expression of each row
    sum_rows: Any  # (N, M) scipy.sparse: sums each expression's rows
    target: np.ndarray  # (N,) row of each expression's target
    words: Any  # (N, D) scipy.sparse 0/1 word buckets, or None (no expression)


def _segment_log_softmax(s: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities per row, log-normaliser per segment) of a softmax within each segment."""
    top = np.maximum.reduceat(s, starts)
    e = np.exp(s - top[seg])
    total = np.add.reduceat(e, starts)
    return e / total[seg], top + np.log(total)


class BlindMethod(Method):
    """Shared model of the blind baselines; subclasses say whether the expression is read."""

    Config = BlindConfig
    trains = True
    #: does the model read the expression (blind-text) or not (blind-image)?
    reads_expression: ClassVar[bool] = False
    #: one-line description for tables (``cptbench data audit``)
    rule: ClassVar[str] = ""

    def __init__(self, config: BlindConfig, context):
        super().__init__(config, context)
        n_feat = self.n_features
        self._v = np.zeros(n_feat)
        self._w = np.zeros((config.buckets, n_feat)) if self.reads_expression else None
        self._facts: dict[str, Any] = {"trained": False, "train_expressions": 0}

    @property
    def n_features(self) -> int:
        """Per-candidate features: the candidate features, plus the category match when the
        expression is read."""
        return len(CANDIDATE_FEATURES) + (len(MATCH_FEATURES) if self.reads_expression else 0)

    def features(self, example: Example) -> tuple[np.ndarray, list[int]]:
        """(per-candidate features ``(n, F)``, the expression's word buckets; empty without expression)."""
        phi = candidate_features(example)
        if not self.reads_expression:
            return phi, []
        said = words(example.expression)
        return np.hstack([phi, match_features(example, said)]), word_buckets(said, self.config.buckets)

    # -- training --------------------------------------------------------------------------------
    def _batch(self, train: Sequence[TrainExample]) -> tuple[_Batch | None, dict[str, int]]:
        metric = self.context.metric
        rows, starts, targets, word_rows = [], [], [], []
        skipped = {"no_hit": 0, "single_candidate": 0}
        m = 0
        for te in train:
            ex = te.example
            if ex.n_candidates < 2:
                skipped["single_candidate"] += 1
                continue
            ious = metric.ious(ex.boxes, te.label.box)
            best = int(np.argmax(ious))
            if not metric.hits(ious[best]):
                skipped["no_hit"] += 1
                continue
            phi, buckets = self.features(ex)
            rows.append(phi)
            starts.append(m)
            targets.append(m + best)
            word_rows.append(buckets)
            m += ex.n_candidates
        if not rows:
            return None, skipped
        starts_a = np.asarray(starts)
        sizes = np.diff(np.append(starts_a, m))
        from scipy.sparse import csr_matrix

        seg = np.repeat(np.arange(len(rows)), sizes)
        sum_rows = csr_matrix((np.ones(m), np.arange(m), np.append(starts_a, m)), shape=(len(rows), m))
        bow = None
        if self.reads_expression:
            indptr = np.cumsum([0] + [len(r) for r in word_rows])
            cols = np.asarray([c for r in word_rows for c in r], dtype=np.int64)
            bow = csr_matrix((np.ones(len(cols)), cols, indptr), shape=(len(rows), self.config.buckets))
        return _Batch(np.vstack(rows), starts_a, seg, sum_rows, np.asarray(targets), bow), skipped

    def _scores(self, theta: np.ndarray, batch: _Batch) -> np.ndarray:
        """Every training candidate's score ``phi_c . (v + W b_e)`` at flat weights ``theta = (v, W)``."""
        n_feat = self.n_features
        s = batch.phi @ theta[:n_feat]
        if batch.words is not None:
            u = batch.words @ theta[n_feat:].reshape(self.config.buckets, n_feat)  # (N, F)
            s += np.einsum("mf,mf->m", batch.phi, u[batch.seg])
        return s

    def _loss(self, theta: np.ndarray, batch: _Batch) -> tuple[float, np.ndarray]:
        """The objective divided by the number of expressions (mean cross-entropy plus
        ``l2 / (2 N)`` times the squared weights: same minimum, gradients of a mean's scale) and its
        gradient, at flat weights ``theta``."""
        n = len(batch.starts)
        s = self._scores(theta, batch)
        p, log_norm = _segment_log_softmax(s, batch.starts, batch.seg)
        loss = float(np.mean(log_norm - s[batch.target]))
        r = p
        r[batch.target] -= 1.0
        g_expr = np.asarray(batch.sum_rows @ (r[:, None] * batch.phi)) / n  # (N, F)
        grad = [g_expr.sum(axis=0)]
        if batch.words is not None:
            grad.append(np.asarray(batch.words.T @ g_expr).reshape(-1))
        lam = self.config.l2 / n
        g = np.concatenate(grad) + lam * theta
        return loss + 0.5 * lam * float(theta @ theta), g

    def fit(self, train: Sequence[TrainExample], seed: int) -> None:
        """Minimise the loss of the module doc on ``train`` (zero-shot: weights stay zero)."""
        from scipy.optimize import minimize

        n_feat = self.n_features
        self._v = np.zeros(n_feat)
        self._w = np.zeros((self.config.buckets, n_feat)) if self.reads_expression else None
        batch, skipped = self._batch(train)
        self._facts = {"trained": batch is not None, "train_expressions": 0 if batch is None else len(batch.starts),
                       "skipped_no_hit": skipped["no_hit"], "skipped_single_candidate": skipped["single_candidate"]}
        if batch is None:
            return
        theta0 = np.zeros(n_feat + (self.config.buckets * n_feat if self.reads_expression else 0))
        res = minimize(self._loss, theta0, args=(batch,), jac=True, method="L-BFGS-B",
                       options={"maxiter": self.config.iterations})
        theta = np.asarray(res.x, dtype=np.float64)
        self._v = theta[:n_feat].copy()
        if self.reads_expression:
            self._w = theta[n_feat:].reshape(self.config.buckets, n_feat).copy()
        s = self._scores(theta, batch)
        ends = np.append(batch.starts[1:], len(s))
        picks = np.array([a + int(np.argmax(s[a:b])) for a, b in zip(batch.starts, ends)])
        self._facts.update({"iterations": int(res.nit), "converged": bool(res.success),
                            "train_loss": round(float(res.fun), 6),  # per expression, penalty included
                            "train_accuracy": round(100.0 * float(np.mean(picks == batch.target)), 4)})

    # -- prediction ------------------------------------------------------------------------------
    def _raw(self, phi: np.ndarray, buckets) -> np.ndarray:
        z = self._v.copy()
        if self._w is not None and len(buckets):
            z += self._w[np.asarray(buckets, dtype=np.int64)].sum(axis=0)
        return phi @ z

    def predict(self, examples: Sequence[Example]) -> list[np.ndarray]:
        """Per example, each candidate's linear score, plus a tiny tie-break seeded by (method,
        example id)."""
        out = []
        for ex in examples:
            if not ex.n_candidates:
                out.append(np.zeros(0))
                continue
            s = self._raw(*self.features(ex))
            scale = max(1.0, float(np.max(np.abs(s))))
            out.append(s + _TIE * scale * rng_for("blind-tie", self.name, ex.example_id).random(ex.n_candidates))
        return out

    def describe(self) -> dict[str, Any]:
        """What the model reads, its features and size, the optimiser's budget and what ``fit`` did
        (training expressions used and left out, L-BFGS iterations, training loss and accuracy)."""
        feats = list(CANDIDATE_FEATURES) + (list(MATCH_FEATURES) if self.reads_expression else [])
        return {"rule": self.rule, "reads_pixels": False, "reads_expression": self.reads_expression,
                "features": feats,
                "word_buckets": self.config.buckets if self.reads_expression else 0,
                "parameters": int(self._v.size + (self._w.size if self._w is not None else 0)),
                "l2": self.config.l2, "max_iterations": self.config.iterations, **self._facts}


class BlindText(BlindMethod):
    """No pixels: the expression, the candidates' boxes and category names (module doc)."""

    reads_expression = True
    rule = "softmax over candidates: box geometry, order, category (+ named by the expression) x hashed words"


class BlindImage(BlindMethod):
    """No expression (and no pixels): where targets tend to be, from the boxes and categories alone."""

    reads_expression = False
    rule = "softmax over candidates: box geometry, order and category, expression ignored"
