"""Per-candidate features of the blind baselines (:mod:`cptbench_baselines.blind`): what a method
can know about a candidate without looking at the pixels.

Every feature lies in [0, 1]. For an example with ``n`` candidates (boxes in absolute xyxy, image
``W x H``) the candidate features (:func:`candidate_features`, :data:`CANDIDATE_FEATURES`) are:

* geometry: centre ``cx / W``, ``cy / H``, width ``w / W``, height ``h / H``, area fraction, its
  square root, the distance of the centre from the image centre (over the half diagonal);
* ranks among the image's candidates: mid-rank quantile of ``cx``, ``cy`` and area (0 = smallest
  value), and the extremes: leftmost, rightmost, topmost, bottommost, largest, smallest (by centre
  and area; ties all count);
* annotation order: the index ``i / (n - 1)``, one-hot of index 0, 1, 2, 3, 4 and ">= 5", last;
* the candidate's category among the others: the share of candidates of its category, whether it is
  the only one, and the same ranks and extremes as above computed among its category's candidates
  only (0.5 and 1 when it is alone: "the circle on the left" needs the leftmost circle, not the
  leftmost object);
* the same among its look-alikes: the candidates of its category whose box area is within a factor
  :data:`LOOKALIKE_AREA_RATIO` of its own ("the big circle on the left": the leftmost of the big
  circles);
* the category itself: one-hot over :data:`CATEGORY_BUCKETS` stable hash buckets of its name.

The expression features (blind-text only): :func:`match_features` (does the expression name the
candidate's category: every word of the name, any word, with a trailing plural ``s`` ignored) and
:func:`word_buckets` (the hashed bag of words the model crosses with every candidate feature).
Hashes are CRC-32 of the text, the same in every process (no ``PYTHONHASHSEED``).
"""

from __future__ import annotations

import re
import zlib
from typing import Sequence

import numpy as np

from cptbench.data.examples import Example

#: stable hash buckets of a category name (one-hot)
CATEGORY_BUCKETS = 16
#: two candidates of one category are look-alikes when their box areas differ by at most this factor
LOOKALIKE_AREA_RATIO = 1.5

_EXTREMES = ("leftmost", "rightmost", "topmost", "bottommost", "largest", "smallest")
_RANKS = ("rank_cx", "rank_cy", "rank_area")

#: names of the columns of :func:`candidate_features`, in order
CANDIDATE_FEATURES: tuple[str, ...] = (
    "cx", "cy", "width", "height", "area", "sqrt_area", "centre_distance",
    *_RANKS, *_EXTREMES,
    "index", "index_0", "index_1", "index_2", "index_3", "index_4", "index_5+", "index_last",
    "category_share", "category_alone",
    *(f"in_category_{r}" for r in _RANKS), *(f"in_category_{e}" for e in _EXTREMES),
    "lookalike_share", "lookalike_alone",
    *(f"in_lookalikes_{r}" for r in _RANKS), *(f"in_lookalikes_{e}" for e in _EXTREMES),
    *(f"category_bucket_{b}" for b in range(CATEGORY_BUCKETS)),
)
#: names of the columns of :func:`match_features`
MATCH_FEATURES: tuple[str, ...] = ("category_named", "category_word_named")


def stable_bucket(text: str, buckets: int) -> int:
    """The bucket of ``text`` among ``buckets``: CRC-32 of its UTF-8 bytes, modulo ``buckets``."""
    return zlib.crc32(text.encode("utf-8")) % buckets


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words of ``text`` (punctuation dropped)."""
    return re.findall(r"[a-z0-9]+", str(text).lower())


def _singular(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") and not word.endswith("ss") else word


def _group_ranks(values: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per candidate ``i``, among the candidates ``j`` with ``group[i, j]`` (itself included): the
    mid-rank quantile of ``values[i]`` in [0, 1] (ties share their mean rank; 0.5 alone), and
    whether it is the smallest and the largest value (ties all count)."""
    less = (group & (values[None, :] < values[:, None])).sum(axis=1)
    more = (group & (values[None, :] > values[:, None])).sum(axis=1)
    size = group.sum(axis=1)
    equal = size - less - more
    quantile = np.where(size > 1, (less + (equal - 1) / 2.0) / np.maximum(size - 1, 1), 0.5)
    return quantile, (less == 0).astype(np.float64), (more == 0).astype(np.float64)


def _ranks_and_extremes(cx: np.ndarray, cy: np.ndarray, area: np.ndarray, group: np.ndarray) -> list[np.ndarray]:
    """The quantiles of cx, cy, area within each candidate's group, then leftmost .. smallest."""
    (qx, left, right), (qy, top, bottom), (qa, smallest, largest) = (_group_ranks(v, group) for v in (cx, cy, area))
    return [qx, qy, qa, left, right, top, bottom, largest, smallest]


def candidate_features(example: Example) -> np.ndarray:
    """The ``(n, len(CANDIDATE_FEATURES))`` float array of the module doc (``(0, F)`` without candidates)."""
    b = np.asarray(example.boxes, dtype=np.float64).reshape(-1, 4)
    n = b.shape[0]
    out = np.zeros((n, len(CANDIDATE_FEATURES)))
    if n == 0:
        return out
    w_img, h_img = (max(float(v), 1.0) for v in example.image_size)
    w = np.clip(b[:, 2] - b[:, 0], 0, None)
    h = np.clip(b[:, 3] - b[:, 1], 0, None)
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2
    area = w * h
    frac = np.clip(area / (w_img * h_img), 0, 1)
    dist = np.hypot(cx / w_img - 0.5, cy / h_img - 0.5) / np.hypot(0.5, 0.5)
    cols: list[np.ndarray] = [np.clip(cx / w_img, 0, 1), np.clip(cy / h_img, 0, 1), np.clip(w / w_img, 0, 1),
                              np.clip(h / h_img, 0, 1), frac, np.sqrt(frac), np.clip(dist, 0, 1)]
    cols.extend(_ranks_and_extremes(cx, cy, area, np.ones((n, n), dtype=bool)))
    idx = np.arange(n, dtype=np.float64)
    cols.append(idx / (n - 1) if n > 1 else np.zeros(n))
    cols.extend((idx == j).astype(np.float64) for j in range(5))
    cols.append((idx >= 5).astype(np.float64))
    cols.append((idx == n - 1).astype(np.float64))
    cats = list(example.categories) if len(example.categories) == n else [""] * n
    names = np.asarray(cats, dtype=object)
    same = names[:, None] == names[None, :]
    ratio = np.maximum(area[:, None], area[None, :]) / np.maximum(np.minimum(area[:, None], area[None, :]), 1e-9)
    for group in (same, same & (ratio <= LOOKALIKE_AREA_RATIO)):
        size = group.sum(axis=1)
        cols.append(size / n)
        cols.append((size == 1).astype(np.float64))
        cols.extend(_ranks_and_extremes(cx, cy, area, group))
    onehot = np.zeros((n, CATEGORY_BUCKETS))
    onehot[np.arange(n), [stable_bucket(c, CATEGORY_BUCKETS) for c in cats]] = 1.0
    cols.extend(onehot.T)
    out[:] = np.stack(cols, axis=1)
    return out


def match_features(example: Example, expression_words: Sequence[str]) -> np.ndarray:
    """``(n, 2)``: whether every word of a candidate's category name occurs in the expression, and
    whether any does (plural ``s`` ignored on both sides)."""
    said = {_singular(w) for w in expression_words}
    out = np.zeros((example.n_candidates, len(MATCH_FEATURES)))
    for i, cat in enumerate(example.categories[: example.n_candidates]):
        name = [_singular(w) for w in words(cat)]
        if name:
            hit = [w in said for w in name]
            out[i] = (float(all(hit)), float(any(hit)))
    return out


def word_buckets(expression_words: Sequence[str], buckets: int) -> list[int]:
    """The distinct hash buckets of the expression's words (its hashed bag of words)."""
    return sorted({stable_bucket(w, buckets) for w in expression_words})
