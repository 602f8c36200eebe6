"""Aggregation of run records into leaderboard rows (rebuilt from ``runs.jsonl`` alone).

Per group (task, task version, split, method, method config, model and its content fingerprint,
data fingerprint, proposals, shots, limit, data policy, k-shot sampler): a group never mixes
fingerprints or draws.
``n_seeds``, ``acc_mean``, ``acc_std`` (population, ddof 0, as the CPT paper), ``rsd`` = std / mean
(empty when the mean is 0), and a 95% confidence interval of the mean from the t distribution
(sample std, n - 1 degrees of freedom), clipped to the 0-100 range of an accuracy. The interval is
left empty below :data:`MIN_SEEDS_FOR_INTERVAL` seeds (two seeds give t(0.975, 1) = 12.7 times the
standard error: intervals such as [-42.5, 81.5] that say nothing) and where every seed scored the
same (a zero-width interval would claim a certainty that five draws cannot give). Each group is one
:class:`LeaderboardRow`; :mod:`cptbench.report.tables` writes them as CSV, JSON and tables.

Two configs of one method are named by the options in which they differ (``cpt-blk[score=auto]``):
:func:`method_labels`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from cptbench.results.records import RunRecord

#: the fewest seeds a confidence interval is given for (tables then say n instead)
MIN_SEEDS_FOR_INTERVAL = 3
#: the range an accuracy (percent) lives in; intervals are clipped to it
ACCURACY_RANGE = (0.0, 100.0)

#: a std below this share of the mean is float rounding of equal values, not spread
_EQUAL_RTOL = 1e-9

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


def seed_stats(values: Sequence[float], bounds: tuple[float, float] | None = ACCURACY_RANGE) -> Stats:
    """Mean, population std (ddof 0), RSD = std / mean (NaN for a zero mean) and the 95% t-interval
    of the mean (sample std) of ``values``, clipped to ``bounds``; the interval is NaN for fewer
    than :data:`MIN_SEEDS_FOR_INTERVAL` values and where every value is the same."""
    v = np.asarray(values, dtype=np.float64)
    n = int(v.size)
    if n == 0:
        nan = float("nan")
        return Stats(0, nan, nan, nan, nan, nan)
    mean = float(v.mean())
    std = float(v.std(ddof=0))
    if std <= _EQUAL_RTOL * max(1.0, abs(mean)):  # equal values whose mean is not exact in binary (26.83 x 5)
        std = 0.0
    rsd = std / mean if mean != 0 else float("nan")
    if n >= MIN_SEEDS_FOR_INTERVAL and std > 0:
        from scipy.special import stdtrit  # t quantile; scipy.stats costs ~1 s of import time

        half = float(stdtrit(n - 1, 0.975)) * float(v.std(ddof=1)) / math.sqrt(n)
        lo, hi = mean - half, mean + half
        if bounds is not None:
            lo, hi = max(lo, bounds[0]), min(hi, bounds[1])
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
    return [dataclasses.replace(r, label=labels[label_key(r)]) for r in rows]


def row_identity(r: LeaderboardRow) -> tuple:
    """What tells two rows of one method apart besides task, split and shots."""
    return (r.method, r.method_config_hash, r.model_fingerprint, r.data_fingerprint, r.skip_bad, r.strict_data,
            r.sampler)


def label_key(r: LeaderboardRow) -> tuple:
    """What a label names: a :func:`row_identity` on one task (labels are made per task)."""
    return (r.task, *row_identity(r))


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


@lru_cache(maxsize=256)
def _defaults_json(method: str, task: str) -> str | None:
    try:
        from cptbench.methods.options import config_dict, method_config
        from cptbench.methods.registry import get_method_class
        from cptbench.tasks.cards import get_task

        return json.dumps(config_dict(method_config(get_method_class(method), get_task(task), {})), sort_keys=True)
    except Exception:  # a method or card not installed here, a plug-in that fails to load
        return None


def default_options(method: str, task: str) -> dict[str, Any] | None:
    """The options a run of ``method`` on ``task`` gets without ``--set`` (the config's defaults,
    then the card's ``method_defaults``), or None where the method or the card is not available
    here. Imports the method's module (once per process)."""
    text = _defaults_json(method, task)
    return None if text is None else json.loads(text)


def config_labels(method: str, configs: dict[str, dict[str, Any]], max_keys: int | None = None,
                  defaults: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Names for the configs (hash -> options) of one method: the method name, plus, in brackets,
    every option that differs from ``defaults`` (what the method gets without ``--set``:
    ``cpt-blk`` and ``cpt-blk[palette=release5]``), or, where the defaults are not known here, every
    option in which the configs differ (``m[score=auto]`` / ``m[score=auto-safe]``). Where the
    options do not tell configs apart (or past ``max_keys`` options), the hash prefix is added."""
    if not configs:
        return {}
    keys = sorted(set().union(*(c.keys() for c in configs.values())))
    differing = ({k for k in keys if len({option_value(c.get(k, _MISSING)) for c in configs.values()}) > 1}
                 if len(configs) > 1 else set())
    out = {}
    for h, c in configs.items():
        if defaults is not None:  # the defaults known: name what differs from them (a default config is plain)
            shown = sorted(k for k in c if option_value(c[k]) != option_value(defaults.get(k, _MISSING)))
        else:  # no defaults to read against: name what tells the configs apart
            shown = sorted(differing)
        if shown:
            label = method + "[" + ",".join(f"{k}={option_value(c.get(k, _MISSING))}" for k in shown[:max_keys]) + "]"
            if max_keys is not None and len(shown) > max_keys:
                label += f"#{h[:6]}"
        else:
            label = f"{method}#{h[:6]}" if len(configs) > 1 and defaults is None else method
        out[h] = label
    dup = {v for v in out.values() if list(out.values()).count(v) > 1}
    return {h: (f"{v}#{h[:6]}" if v in dup and "#" not in v else v) for h, v in out.items()}


def method_labels(rows: Sequence[LeaderboardRow]) -> dict[tuple, str]:
    """Display name per :func:`label_key`, unique within a task: the method name with every
    option that differs from the task's defaults or among the method's configs on that task
    (:func:`config_labels`), ``[model <fp>]`` / ``[data <fp>]`` where its rows differ by the model's
    or the data's content, ``[skip-bad]`` for runs that dropped bad data, ``[sampler release]`` for
    k-shot draws made the release's way; a ``*`` marks methods that read evaluation labels."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        d = seen.setdefault((r.task, r.method), {"config": {}, "model": set(), "data": set()})
        d["config"].setdefault(r.method_config_hash, dict(r.method_config))
        d["model"].add((r.model, r.model_fingerprint))
        d["data"].add(r.data_fingerprint)
    names = {key: config_labels(key[1], d["config"], defaults=default_options(key[1], key[0])) for key, d in seen.items()}
    out = {}
    for r in rows:
        d = seen[(r.task, r.method)]
        name = names[(r.task, r.method)][r.method_config_hash] + ("*" if r.uses_eval_labels else "")
        if len({fp for m, fp in d["model"] if m == r.model}) > 1:
            name += f" [model {str(r.model_fingerprint)[:6]}]"
        if len(d["data"]) > 1:
            name += f" [data {str(r.data_fingerprint)[:6]}]"
        if r.skip_bad:
            name += " [skip-bad]"
        if r.strict_data:
            name += " [strict-data]"
        if r.sampler != "cptbench":
            name += f" [sampler {r.sampler}]"
        out[label_key(r)] = name
    return out
