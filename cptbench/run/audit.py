"""The shortcut audit: can a method that reads no label, and no pixel, beat random on a task?

Every label-free heuristic of :mod:`cptbench_baselines.heuristics` (first candidate, largest and
smallest box, most central, category prior, ref order and sentence order within the image,
expression length) is created from the method registry and run like any method: fitted (the two
that learn, ``category-prior`` and ``expression-length``, on the *whole* train split, the strongest
prior the data offer; the others on nothing), shown each eval split in the harness's
:func:`~cptbench.run.execute.presentation_order`, and scored by :func:`cptbench.run.scoring.score_example`.

Against random. Random's accuracy on an expression with ``n`` candidates is exactly ``1 / n`` in
expectation, so chance on a split is the mean of ``1 / n`` over its expressions (0 for an
expression without candidates). Per expression ``d = correct - 1 / n``; the excess over random is
the mean of ``d``, with a 95 % interval from the image-clustered (cluster-robust) standard error
(expressions of one image share candidates and often a target, so they are not independent) and
the t quantile with ``images - 1`` degrees of freedom. The report gives each heuristic's accuracy
with that interval (chance + excess interval). A heuristic is **flagged** when the whole interval
lies above chance: it beats random by more than its interval. One below chance the same way is
marked ``below`` (its opposite rule would beat random), for information.

Many comparisons. An audit makes one comparison per heuristic or blind baseline and split (30 on
a task with three eval splits: 8 heuristics and 2 blind baselines), so on data without any
shortcut a 95 % interval per comparison still flags one of them now and then by chance. ``correction="bonferroni"`` widens every interval to the level
``1 - 0.05 / comparisons`` (family-wise 95 %); the default is the per-comparison 95 % interval.

Solvable without looking. Besides the fixed rules, the audit trains the blind baselines of
:mod:`cptbench_baselines.blind` (``blind-text``: the expression, boxes and category names, no
pixels; ``blind-image``: boxes and categories, no expression) on the whole train split and scores
them on every eval split the same way, against the same chance and with the same clustered
intervals (and they count in the Bonferroni correction). One of them above chance is flagged like a
heuristic: part of the task can be solved without looking at the image (or without reading the
expression). :meth:`AuditReport.solvable_without_looking` gives each split's best blind accuracy,
an estimate from below of how far a method can get without looking (a model that learns more could
do better).

Library code: returns an :class:`AuditReport`; the CLI (``cptbench data audit``) prints it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from cptbench.core.errors import UsageError
from cptbench.tasks.spec import TaskSpec

#: the heuristics the audit runs, in table order (registered in ``cptbench.methods``)
AUDIT_HEURISTICS: tuple[str, ...] = (
    "first-candidate", "largest-box", "smallest-box", "most-central", "category-prior",
    "ref-order", "sent-order", "expression-length",
)
#: the blind baselines the audit trains on the whole train split (registered in ``cptbench.methods``)
AUDIT_BLIND: tuple[str, ...] = ("blind-text", "blind-image")
LEVEL = 0.95
CORRECTIONS = ("none", "bonferroni")


@dataclass(frozen=True)
class Interval:
    """Mean excess over random (fraction) and its interval; ``chance``: random's expected accuracy
    (fraction), the mean of ``1 / n`` it is measured against."""

    excess: float
    low: float
    high: float
    clusters: int
    chance: float = float("nan")


def excess_interval(correct: Sequence[bool], n_candidates: Sequence[int], clusters: Sequence[Any],
                    level: float = LEVEL) -> Interval:
    """Mean of ``correct - 1/n`` and its ``level`` interval, clustered by ``clusters`` (module doc)."""
    c = np.asarray(correct, dtype=np.float64)
    n = np.asarray(n_candidates, dtype=np.float64)
    if c.size == 0:
        nan = float("nan")
        return Interval(nan, nan, nan, 0, nan)
    p = np.divide(1.0, n, out=np.zeros_like(n), where=n > 0)
    d = c - p
    mean = float(d.mean())
    keys = {k: i for i, k in enumerate(dict.fromkeys(clusters))}
    g = len(keys)
    sums = np.zeros(g)
    np.add.at(sums, [keys[k] for k in clusters], d - mean)
    if g > 1:
        from scipy.special import stdtrit  # t quantile (scipy.stats costs ~1 s of import time)

        se = math.sqrt(g / (g - 1) * float(np.sum(sums ** 2))) / d.size
        half = float(stdtrit(g - 1, 0.5 + level / 2)) * se
    else:
        half = float("inf")
    return Interval(mean, mean - half, mean + half, g, float(p.mean()))


@dataclass(frozen=True)
class HeuristicResult:
    """One heuristic (``kind`` ``"heuristic"``) or blind baseline (``"blind"``) on one eval split: its
    accuracy and interval against chance (percent), and whether the interval lies wholly above chance
    (``flagged``) or below it (``below``)."""

    split: str
    heuristic: str
    rule: str
    n: int
    n_correct: int
    accuracy: float  # percent
    ci_low: float  # percent: chance + the excess interval
    ci_high: float
    chance: float  # percent: mean of 1 / n_candidates
    excess: float  # percentage points over chance
    images: int
    flagged: bool  # the whole interval is above chance
    below: bool  # the whole interval is below chance
    info: dict[str, Any] = field(default_factory=dict)
    kind: str = "heuristic"  # "heuristic" (a fixed rule) or "blind" (a trained blind baseline)


@dataclass(frozen=True)
class AuditReport:
    """Every heuristic's result on every eval split of a task, with the setting the audit ran in."""

    task: str
    task_version: int
    proposals: str
    data_root: str
    image_layout: str
    n_train: int
    level: float  # the level of every interval (after the correction)
    correction: str
    results: tuple[HeuristicResult, ...]
    fitted: tuple[str, ...] = ()  # the heuristics and blind baselines fitted on the train split
    data_fingerprint: str = ""  # the data's content fingerprint, as run records name it (``data_fingerprint``)

    @property
    def flagged(self) -> list[HeuristicResult]:
        """The results that beat random (their whole interval lies above chance)."""
        return [r for r in self.results if r.flagged]

    @property
    def ok(self) -> bool:
        """True when neither a heuristic nor a blind baseline beats random."""
        return not self.flagged

    def solvable_without_looking(self) -> dict[str, dict[str, Any]]:
        """Per eval split with blind results: the best blind baseline (``best``, its ``accuracy``,
        ``ci_low``, ``ci_high`` in percent), ``chance``, whether any blind baseline beats it
        (``flagged``), and every blind baseline's ``accuracy``, interval and verdict under
        ``baselines``. Empty when the audit ran none."""
        out: dict[str, dict[str, Any]] = {}
        for split in dict.fromkeys(r.split for r in self.results if r.kind == "blind"):
            rows = [r for r in self.results if r.kind == "blind" and r.split == split]
            best = max(rows, key=lambda r: r.accuracy)
            out[split] = {
                "best": best.heuristic, "accuracy": best.accuracy, "ci_low": best.ci_low, "ci_high": best.ci_high,
                "chance": best.chance, "flagged": any(r.flagged for r in rows), "n": best.n,
                "baselines": {r.heuristic: {"accuracy": r.accuracy, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                            "excess": r.excess, "flagged": r.flagged, "below": r.below} for r in rows},
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict, with ``ok`` and ``solvable_without_looking``."""
        d = asdict(self)
        d["results"] = [asdict(r) for r in self.results]
        d["ok"] = self.ok
        d["solvable_without_looking"] = self.solvable_without_looking()
        return d


def _context(task: TaskSpec, cls):
    from cptbench.run.context import build_context

    return build_context(task, cls, None)


def audit_task(task: TaskSpec, *, data_root: str | None = None, images: str | None = None,
               proposals: str | None = None, splits: Sequence[str] | None = None,
               heuristics: Sequence[str] | None = None, blind: Sequence[str] | None = None, skip_bad: bool = False,
               strict_data: bool = False, level: float = LEVEL, correction: str = "none",
               progress: Callable[[str, int, int], None] | None = None) -> AuditReport:
    """Run the audit on ``task``'s refer-layout data (``data_root``; synthref: its cache).

    ``heuristics``: the fixed rules to run (default :data:`AUDIT_HEURISTICS`); ``blind``: the blind
    baselines to train and run (default :data:`AUDIT_BLIND`; an empty list runs none)."""
    from cptbench.data.examples import TrainExample
    from cptbench.run.session import DataSession
    from cptbench.methods.registry import create_method, get_method_class
    from cptbench.run.execute import presentation_order
    from cptbench.run.scoring import score_example

    if correction not in CORRECTIONS:
        raise UsageError(f"audit correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    if not 0.0 < level < 1.0:
        raise UsageError(f"audit level must be in (0, 1), e.g. 0.95; got {level!r}")
    kinds = dict.fromkeys(heuristics or AUDIT_HEURISTICS, "heuristic")
    kinds.update(dict.fromkeys(AUDIT_BLIND if blind is None else blind, "blind"))
    names = list(kinds)
    classes = {name: get_method_class(name) for name in names}  # unknown names: "did you mean"
    splits = list(splits) if splits else list(task.eval_splits)
    bad = [s for s in splits if s not in task.eval_splits]
    if bad:
        from cptbench.core.registry import unknown_name_message

        raise UsageError(unknown_name_message(f"eval split of task {task.name!r}:", bad[0], task.eval_splits))
    proposals_arg = proposals or task.default_proposals
    session = DataSession(data_root, images, skip_bad=skip_bad, strict_data=strict_data)
    setting = session.proposal_setting(proposals_arg)
    ds = session.dataset(task)
    if correction == "bonferroni":
        level = 1.0 - (1.0 - level) / (len(names) * len(splits))

    train: list = []
    if any(cls.trains for cls in classes.values()):
        data = session.split(task, task.train_split, proposals_arg)
        train = [TrainExample(ex, data.labels[ex.example_id]) for ex in data.examples]
    methods = {}
    for name in names:
        method = create_method(name, {}, _context(task, classes[name]))
        method.fit(train if classes[name].trains else [], 0)
        methods[name] = method

    results: list[HeuristicResult] = []
    done = 0
    for split in splits:
        data = session.split(task, split, proposals_arg)
        examples = presentation_order(data.examples, task.name, split)
        for name, method in methods.items():
            scores = method.predict(examples)
            rows = [score_example(ex, data.labels[ex.example_id], s, task.metric) for ex, s in zip(examples, scores)]
            correct = [r.correct for r in rows]
            iv = excess_interval(correct, [ex.n_candidates for ex in examples], [ex.image_id for ex in examples], level)
            n = len(rows)
            chance = 100.0 * iv.chance
            info = {k: v for k, v in method.describe().items()
                    if k not in ("heuristic", "rule", "reads_pixels", "features")}
            results.append(HeuristicResult(
                split=split, heuristic=name, rule=getattr(classes[name], "rule", ""), n=n, n_correct=sum(correct),
                accuracy=100.0 * sum(correct) / n if n else float("nan"),
                ci_low=chance + 100.0 * iv.low, ci_high=chance + 100.0 * iv.high, chance=chance,
                excess=100.0 * iv.excess, images=iv.clusters, flagged=bool(iv.low > 0), below=bool(iv.high < 0),
                info=info, kind=kinds[name]))
            done += 1
            if progress is not None:
                progress("audit", done, len(splits) * len(methods))
    return AuditReport(task=task.name, task_version=task.version, proposals=setting,
                       data_root=str(ds.root), image_layout=ds.image_layout, n_train=len(train), level=level,
                       correction=correction, results=tuple(results),
                       fitted=tuple(name for name in names if classes[name].trains),
                       data_fingerprint=session.data_fingerprint(task).digest)
