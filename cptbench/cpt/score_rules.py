"""CPT score rules: from the masked-LM logits of one pass to one score per painted candidate.

``logit``
    The raw logit of the candidate's colour word in its group's pass (the release's zero-shot rule).
``ratio``
    ``logit(colour) / logit("none")`` from the same pass (the release's few-shot rule). A ratio of
    raw logits is sign-sensitive: when ``logit("none")`` is negative a larger colour logit gives a
    smaller score. It is reproduced as published.
``logsoftmax``
    ``log_softmax(colour) - log_softmax("none")``, the sign-safe variant. The log-partition cancels,
    so it equals ``logit(colour) - logit("none")``; it is computed that way.
``auto``
    ``logit`` for zero-shot (no training), ``ratio`` after prompt tuning (the release's pair).
``auto-safe``
    ``logit`` for zero-shot, ``logsoftmax`` after prompt tuning: the release's zero-shot rule and
    the sign-safe few-shot one. Use it when ``logit("none")`` is not reliably positive, which is
    visible without labels: the ``ratio`` scores of a run are then mostly negative.

Scores that are not numbers (``0 / 0``) become ``-inf`` so the harness's arg-max never picks them;
``x / 0`` follows IEEE (``+-inf``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

SCORE_RULES: tuple[str, ...] = ("auto", "auto-safe", "logit", "ratio", "logsoftmax")
#: what each ``auto*`` rule stands for: (zero-shot, after prompt tuning)
AUTO_RULES: dict[str, tuple[str, str]] = {"auto": ("logit", "ratio"), "auto-safe": ("logit", "logsoftmax")}


def resolve_rule(rule: str, trained: bool) -> str:
    """The concrete rule an ``auto*`` rule stands for (:data:`AUTO_RULES`); others are returned as is."""
    if rule not in SCORE_RULES:
        raise ValueError(f"unknown score rule {rule!r}; choose one of {', '.join(SCORE_RULES)}")
    if rule in AUTO_RULES:
        return AUTO_RULES[rule][1 if trained else 0]
    return rule


def _apply_rule(colour: np.ndarray, none, rule: str) -> np.ndarray:
    """``rule`` on float64 colour logits against the ``none`` logit(s) (broadcast); NaN scores -inf."""
    if rule in AUTO_RULES:
        raise ValueError(f"resolve {rule!r} with resolve_rule() before scoring")
    if rule == "logit":
        out = colour.copy()
    elif rule == "ratio":
        with np.errstate(divide="ignore", invalid="ignore"):
            out = colour / none
    elif rule == "logsoftmax":
        with np.errstate(invalid="ignore"):  # inf - inf is NaN, scored -inf below
            out = colour - none
    else:
        raise ValueError(f"unknown score rule {rule!r}; choose one of {', '.join(SCORE_RULES)}")
    return np.where(np.isnan(out), -np.inf, out)


def score_candidates(logits, colour_index: Sequence[int], none_index: int, rule: str) -> np.ndarray:
    """Scores of the candidates of one pass.

    ``logits`` is one pass's logit vector (any 1-D array indexable by the given indices: the whole
    vocabulary or just the gathered colour/``none`` columns); ``colour_index[j]`` is the index of
    candidate ``j``'s colour word in it, ``none_index`` that of ``"none"``.
    """
    row = np.asarray(logits, dtype=np.float64).reshape(-1)
    return _apply_rule(row[np.asarray(list(colour_index), dtype=np.int64)], row[int(none_index)], rule)


def score_rows(logits, n_colours: int, rule: str) -> np.ndarray:
    """:func:`score_candidates` for a batch at once: ``logits`` (B, n_colours + 1) holds each pass's
    logits at the palette words and then ``none``; row ``b`` of the (B, n_colours) result equals
    ``score_candidates(logits[b], range(n_colours), n_colours, rule)`` (the same float64 operations)."""
    rows = np.asarray(logits, dtype=np.float64).reshape(len(logits), -1)
    return _apply_rule(rows[:, :n_colours], rows[:, n_colours:n_colours + 1], rule)
