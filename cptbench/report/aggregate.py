"""Aggregation of run records into leaderboard rows (rebuilt from ``runs.jsonl`` alone).

Per group (task, task version, split, method, method config, model and its content fingerprint,
data fingerprint, proposals, shots, limit, data policy, k-shot sampler): a group never mixes
fingerprints or draws.
``n_seeds``, ``acc_mean``, ``acc_std`` (population, ddof 0, as the CPT paper), ``rsd`` = std / mean
(empty when the mean is 0), and a 95% confidence interval of the mean from the t distribution
(sample std, n - 1 degrees of freedom; empty for a single seed). Each group is one
:class:`LeaderboardRow`; :mod:`cptbench.report.tables` writes them as CSV, JSON and tables.

Two configs of one method are named by the options in which they differ (``cpt-blk[score=auto]``):
:func:`method_labels`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cptbench.results.records import RunRecord

#: the fields of a record that make its aggregation group (also fields of :class:`LeaderboardRow`)
GROUP_KEYS = ("task", "task_version", "split", "method", "method_config_hash", "model", "model_fingerprint",
              "data_fingerprint", "proposals", "shots", "limit", "skip_bad", "strict_data", "sampler")


@dataclass(frozen=True)
class Stats:
    """Summary of one group's per-seed accuracies (NaN where undefined; see :func:`seed_stats`)."""

    n: int
    mean: float
    std: float
    rsd: float
    ci95_low: float
    ci95_high: float


def seed_stats(values: Sequence[float]) -> Stats:
    """Mean, population std (ddof 0), RSD = std / mean (NaN for a zero mean) and the 95% t-interval
    of the mean (sample std, NaN for fewer than two values) of ``values``."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan)
    mean = float(v.mean())
    std = float(v.std(ddof=0))
    rsd = std / mean if mean != 0 else float("nan")
    if n > 1:
        from scipy.special import stdtrit  # t quantile; scipy.stats costs ~1 s of import time

        half = float(stdtrit(n - 1, 0.975)) * float(v.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
    else:
        lo = hi = float("nan")
    return Stats(n, mean, std, rsd, lo, hi)


def is_missing(x: Any) -> bool:
    """Whether ``x`` is None or a float NaN (an undefined statistic)."""
    return x is None or (isinstance(x, float) and math.isnan(x))


@dataclass(frozen=True)
class LeaderboardRow:
    """One aggregation group: the :data:`GROUP_KEYS` of its records, their seed statistics and
    summed counters, and the ``label`` tables print for it (given by :func:`aggregate` over all
    rows at once, so a subset keeps the names of the whole)."""

    task: str
    task_version: int
    split: str
    method: str
    method_config_hash: str
    model: str
    model_fingerprint: str
    data_fingerprint: str
    proposals: str
    shots: int
    limit: int | None
    skip_bad: bool
    strict_data: bool
    sampler: str
    n_seeds: int
    acc_mean: float
    acc_std: float
    rsd: float
    ci95_low: float
    ci95_high: float
    #: expressions per run (the mean over seeds, rounded)
    n: int
    #: counters summed over the seeds
    n_invalid: int
    n_no_candidates: int
    n_skipped: int
    uses_eval_labels: bool
    #: the seeds, space-separated, ascending
    seeds: str
    method_config: Mapping[str, Any] = field(default_factory=dict)
    label: str = ""


def aggregate(records: Iterable[RunRecord]) -> list[LeaderboardRow]:
    """One row per group of ``records``, sorted by task, proposals, model, method, config, shots,
    limit and split, each named by :func:`method_labels`."""
    groups: dict[tuple, list[RunRecord]] = {}
    for rec in records:
        groups.setdefault(tuple(getattr(rec, k) for k in GROUP_KEYS), []).append(rec)
    rows = []
    for key, recs in groups.items():
        recs = sorted(recs, key=lambda r: r.seed)
        s = seed_stats([r.accuracy for r in recs])
        rows.append(LeaderboardRow(
            **dict(zip(GROUP_KEYS, key)),
            n_seeds=s.n, acc_mean=s.mean, acc_std=s.std, rsd=s.rsd, ci95_low=s.ci95_low, ci95_high=s.ci95_high,
            n=int(round(float(np.mean([r.n for r in recs])))), n_invalid=sum(r.n_invalid for r in recs),
            n_no_candidates=sum(r.n_no_candidates for r in recs),
            n_skipped=sum(sum(r.n_skipped.values()) for r in recs),
            uses_eval_labels=any(r.uses_eval_labels for r in recs),
            seeds=" ".join(str(r.seed) for r in recs),
            method_config=dict(recs[0].method_config),
        ))
    rows.sort(key=lambda r: (r.task, r.proposals, r.model, r.method, r.method_config_hash, r.shots, str(r.limit), r.split))
    labels = method_labels(rows)
    return [dataclasses.replace(r, label=labels[row_identity(r)]) for r in rows]


def row_identity(r: LeaderboardRow) -> tuple:
    """What tells two rows of one method apart besides task, split and shots."""
    return (r.method, r.method_config_hash, r.model_fingerprint, r.data_fingerprint, r.skip_bad, r.strict_data,
            r.sampler)


def option_value(v: Any) -> str:
    """An option value as one would write it after ``--set KEY=``."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True, separators=(",", ":"))
    return str(v)


_MISSING = "<unset>"


def config_labels(method: str, configs: dict[str, dict[str, Any]], max_keys: int = 3) -> dict[str, str]:
    """Names for several configs (hash -> options) of one method, by the options in which they
    differ: ``cpt-blk[score=auto]`` / ``cpt-blk[score=auto-safe]``. Past ``max_keys`` differing
    options, or where the options do not tell them apart, the hash prefix is added."""
    if len(configs) < 2:
        return {h: method for h in configs}
    keys = sorted(set().union(*(c.keys() for c in configs.values())))
    differing = [k for k in keys if len({option_value(c.get(k, _MISSING)) for c in configs.values()}) > 1]
    out = {}
    for h, c in configs.items():
        if differing:
            label = method + "[" + ",".join(f"{k}={option_value(c.get(k, _MISSING))}" for k in differing[:max_keys]) + "]"
            if len(differing) > max_keys:
                label += f"#{h[:6]}"
        else:
            label = f"{method}#{h[:6]}"
        out[h] = label
    dup = {v for v in out.values() if list(out.values()).count(v) > 1}
    return {h: (f"{v}#{h[:6]}" if v in dup and "#" not in v else v) for h, v in out.items()}


def method_labels(rows: Sequence[LeaderboardRow]) -> dict[tuple, str]:
    """Display name per :func:`row_identity`: the method name, plus the options that differ where
    one method ran with several configs (:func:`config_labels`), ``[model <fp>]`` / ``[data <fp>]``
    where its rows differ by the model's or the data's content, ``[skip-bad]`` for runs that
    dropped bad data, ``[sampler release]`` for k-shot draws made the release's way; a ``*`` marks methods that read evaluation labels."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        d = seen.setdefault(r.method, {"config": {}, "model": set(), "data": set()})
        d["config"].setdefault(r.method_config_hash, dict(r.method_config))
        d["model"].add((r.model, r.model_fingerprint))
        d["data"].add((r.task, r.data_fingerprint))
    names = {m: config_labels(m, d["config"]) for m, d in seen.items()}
    out = {}
    for r in rows:
        d = seen[r.method]
        name = names[r.method][r.method_config_hash] + ("*" if r.uses_eval_labels else "")
        if len({fp for m, fp in d["model"] if m == r.model}) > 1:
            name += f" [model {str(r.model_fingerprint)[:6]}]"
        if len({fp for t, fp in d["data"] if t == r.task}) > 1:
            name += f" [data {str(r.data_fingerprint)[:6]}]"
        if r.skip_bad:
            name += " [skip-bad]"
        if r.strict_data:
            name += " [strict-data]"
        if r.sampler != "cptbench":
            name += f" [sampler {r.sampler}]"
        out[row_identity(r)] = name
    return out
