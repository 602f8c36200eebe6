"""The few-shot adaptation of the visual-prompt methods: a small head on the frozen model's
image-text similarity features, trained on the k training expressions.

Features. Per candidate ``c`` and prompt ``r`` (crop, blur, ...), with ``i`` the unit embedding of
the prompt image and ``t`` that of the text: under ``score=itc`` the elementwise products
``i_r(c) * t_r`` (their sum is the cosine), concatenated over the prompts; under ``score=itm`` the
matching log-odds of each prompt. ``w0`` are the zero-shot weights: the model's temperature
(``logit_scale``) under ``itc``, 1 under ``itm``. So ``z0 = F w0`` is the zero-shot logit: the sum over
prompts of ``logit_scale * cosine``, ReCLIP's ``box_method_aggregator=sum``.

Heads (``head``):

* ``linear``: ``z = F (w0 * (1 + u))``, a weight per feature starting at the zero-shot weight; the
  relative changes ``u`` are learned. With one prompt this reweights the embedding dimensions;
  with two (``reclip``) it also weighs crop against blur.
* ``temperature``: ``z = exp(tau) * z0``, one learned scale. It changes the probabilities, never
  the ranking: its accuracy is the zero-shot accuracy at every k (stated in the records).
* ``none``: ``z = z0`` at every k.

A bias shared by an expression's candidates cancels in their softmax, so no head has one.

Loss: the softmax cross-entropy over each training expression's candidates toward its target
(the candidate of highest IoU with the ground truth among those that hit under the task's metric;
an expression with no hit, or fewer than two candidates, is left out and counted), summed over the
expressions, plus ``l2 / 2`` times the squared parameters (``u`` or ``tau``: a prior toward the
zero-shot model, which weighs less the more expressions there are). Minimised by L-BFGS (scipy)
from the zero-shot point for at most ``iterations`` iterations: no randomness, so the same
training set always gives the same head. Zero-shot (``fit([])``) keeps the zero-shot point.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np


@dataclass
class Head:
    """A fitted head: its kind, the zero-shot weights ``w0`` (P,) and the learned parameters
    (``u`` (P,) for ``linear``, ``tau`` for ``temperature``)."""

    kind: str
    w0: np.ndarray
    u: np.ndarray = field(default_factory=lambda: np.zeros(0))
    tau: float = 0.0
    trained: bool = False

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Logits (N,) of one expression's candidate features (N, P)."""
        f = np.asarray(features, dtype=np.float64)
        z0 = f @ self.w0
        if self.kind == "linear" and self.trained:
            return z0 + (f * self.w0) @ self.u
        if self.kind == "temperature" and self.trained:
            return np.exp(self.tau) * z0
        return z0


def log_softmax(z: np.ndarray) -> np.ndarray:
    """``z - logsumexp(z)`` (the scores the methods return: ReCLIP's softmax over proposals, in logs)."""
    z = np.asarray(z, dtype=np.float64)
    if z.size == 0:
        return z
    top = z.max()
    return z - (top + np.log(np.exp(z - top).sum()))


def _segments(features: Sequence[np.ndarray]):
    sizes = np.array([len(f) for f in features], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    seg = np.repeat(np.arange(len(features)), sizes)
    return starts, seg


def _seg_softmax(z: np.ndarray, starts: np.ndarray, seg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    top = np.maximum.reduceat(z, starts)
    e = np.exp(z - top[seg])
    total = np.add.reduceat(e, starts)
    return e / total[seg], top + np.log(total)


def head_loss(kind: str, params: np.ndarray, features: Sequence[np.ndarray], targets: Sequence[int],
              w0: np.ndarray, l2: float) -> tuple[float, np.ndarray]:
    """(loss, gradient) of the objective (module doc) at ``params`` (``u`` or ``[tau]``)."""
    f = np.concatenate([np.asarray(x, dtype=np.float64) for x in features])
    starts, seg = _segments(features)
    rows = starts + np.asarray(targets, dtype=np.int64)
    z0 = f @ w0
    if kind == "linear":
        g = f * w0
        z = z0 + g @ params
    else:
        scale = float(np.exp(params[0]))
        z = scale * z0
    p, lse = _seg_softmax(z, starts, seg)
    loss = float(np.sum(lse - z[rows])) + 0.5 * l2 * float(params @ params)
    dz = p.copy()
    dz[rows] -= 1.0
    grad = g.T @ dz if kind == "linear" else np.array([scale * float(dz @ z0)])
    return loss, grad + l2 * params


def fit_head(kind: str, features: Sequence[np.ndarray], targets: Sequence[int], w0: np.ndarray, l2: float,
             iterations: int) -> tuple[Head, dict]:
    """The head fitted on the training expressions' features (each (N_e, P)) and targets, and the
    facts of the fit (loss before and after, L-BFGS iterations)."""
    w0 = np.asarray(w0, dtype=np.float64)
    head = Head(kind, w0, np.zeros(len(w0)))
    if kind == "none" or not features:
        return head, {}
    from scipy.optimize import minimize

    start = np.zeros(len(w0) if kind == "linear" else 1)

    def objective(x):
        return head_loss(kind, x, features, targets, w0, l2)

    before = objective(start)[0]
    res = minimize(objective, start, jac=True, method="L-BFGS-B", options={"maxiter": int(iterations)})
    if kind == "linear":
        head.u = np.asarray(res.x, dtype=np.float64)
    else:
        head.tau = float(res.x[0])
    head.trained = True
    return head, {"loss_zero_shot": round(float(before), 6), "loss_last": round(float(res.fun), 6),
                  "lbfgs_iterations": int(res.nit)}
