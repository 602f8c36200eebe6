"""Executing a job: fit the method once, predict each pending split in saved chunks, score every row.

Timings name what they time: ``load_seconds`` is the time spent importing torch / transformers and
loading the model (once per process and model; read from :func:`cptbench.models.loading.load_clock`,
or the sealed process's), ``fit_seconds`` the fit without it, ``predict_seconds`` the method's
``predict`` calls alone (not scoring, saving or progress) without it.

Each split is predicted in a seeded order that depends on no label (:func:`presentation_order`),
chunk by chunk; each chunk is scored by the one scorer (:func:`cptbench.run.scoring.score_example`)
and, when a ``save`` callback is given, saved with the method's counters and fit facts, so a killed
run resumes to the very same record. Under torchrun each rank predicts its images' share of every
round and rank 0 receives the round's rows and counters.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from cptbench.core import faults
from cptbench.data.examples import Example
from cptbench.data.sampling import rng_for
from cptbench.methods.base import Method, no_progress
from cptbench.run.distributed import Dist
from cptbench.run.plan import Job, RunSpec
from cptbench.run.scoring import score_example


@dataclass
class SplitResult:
    """A split's complete predictions and what the method reported, ready to be recorded."""

    spec: RunSpec
    rows: list[dict[str, Any]]
    counters: dict[str, Any]
    fit_info: dict[str, Any]
    fit_seconds: float
    predict_seconds: float
    resumed: int
    perf: dict[str, Any]
    skipped: dict[str, int]
    kept: dict[str, int] = field(default_factory=dict)  # boxes the default policy kept (SplitData.kept)
    sealed: bool = False  # the method ran in its own process (cptbench.run.sealed)
    load_seconds: float = 0.0  # imports and model load that happened during this split's fit or predicts


def presentation_order(examples: Sequence[Example], task: str, split: str) -> list[Example]:
    """The order methods see a split in: images in a seeded random order, each image's expressions
    together (so its painted copies are shared) in a seeded random order. It depends on the task
    and split names and the image keys only, never on labels or on ref / annotation order."""
    groups: dict[str, list[Example]] = {}
    for ex in examples:
        groups.setdefault(ex.image_key, []).append(ex)
    rng = rng_for("presentation-order", task, split)
    keys = sorted(groups)
    out: list[Example] = []
    for i in rng.permutation(len(keys)):
        members = sorted(groups[keys[i]], key=lambda e: e.example_id)
        out.extend(members[j] for j in rng.permutation(len(members)))
    return out


#: ``saved(spec)`` -> the split's saved chunks; ``save(spec, rows, counters, fit_info)`` saves one
SavedFn = Callable[[RunSpec], list[dict[str, Any]]]
SaveFn = Callable[[RunSpec, list[dict[str, Any]], dict[str, Any], dict[str, Any]], None]


class Executor:
    """Fits and predicts the jobs of one process through a :class:`~cptbench.run.session.DataSession`."""

    def __init__(self, session, *, chunk_size: int = 64, dist: Dist | None = None, progress=no_progress,
                 event=None):
        self.session = session
        self.chunk_size = max(1, int(chunk_size))
        self.dist = dist or Dist()
        self.progress = progress
        self.event = event or (lambda kind, info: None)
        self.loaded = 0.0  # loading seconds not yet given to a split's result
        self.predict_time = 0.0

    def fit(self, job: Job, method: Method) -> float:
        """Fit ``method`` on the job's k-shot examples (their images pinned in the cache); seconds
        (the loading inside is added to :attr:`loaded`)."""
        t, loaded = clock(), load_clock_of(method)
        train = self.session.train_examples(job.task, job.manifest, job.proposals_arg)
        images = self.session.dataset(job.task).images
        keys = [te.example.image_key for te in train]
        images.pin(keys)
        try:
            self.event("fit", {"method": job.method_cls.name, "shots": job.shots, "seed": job.seed, "n_train": len(train)})
            faults.point("fit.start")
            method.fit(train, job.seed)
            if self.dist.active:
                method.sync_fitted(self.dist)  # one model on every rank, whatever the kernels did
            faults.point("fit.done")
        finally:
            images.unpin(keys)
        load = load_clock_of(method) - loaded
        self.loaded += load
        return clock() - t - load

    def execute(self, job: Job, method: Method, pending: Sequence[RunSpec], saved: SavedFn | None = None,
                save: SaveFn | None = None) -> Iterator[SplitResult]:
        """Fit ``method`` (once, when some split still has work) and predict each pending split,
        resuming from ``saved(spec)``'s chunks and saving each new chunk with ``save`` (``None``: a
        Ray worker, nothing saved). Yields one :class:`SplitResult` per split, in order, as soon as it
        is complete."""
        task = job.task
        fitted = False
        if job.method_cls.needs_model and not getattr(method, "sealed", False):
            from cptbench.models.loading import load_clock, warm_imports

            before = load_clock()
            warm_imports()  # torch and transformers, once per process: loading, not the first predict
            self.loaded += load_clock() - before
        for spec in pending:
            data = self.session.split(task, spec.split, job.proposals_arg)
            examples = self.session.eval_examples(task, spec.split, job.proposals_arg)
            chunks = saved(spec) if saved is not None else []
            wanted = {ex.example_id for ex in examples}
            rows = {r["example_id"]: r for c in chunks for r in c["rows"] if r["example_id"] in wanted}
            remaining = [ex for ex in presentation_order(examples, task.name, spec.split) if ex.example_id not in rows]
            resumed = len(rows)
            split_fit = 0.0
            if remaining and not fitted:
                split_fit = self.fit(job, method)
                fitted = True
            fit_info = plain(method.describe()) if fitted or not chunks else dict(chunks[-1].get("fit_info") or {})
            if remaining and job.method_cls.uses_eval_labels:
                method.set_eval_labels(data.labels)
            method.take_counters()  # what fit or an earlier split counted is not this split's
            counters = sum_counters(c.get("counters") or {} for c in chunks)
            self.predict_time = 0.0
            for new, chunk_counters in self._predict_rounds(method, job, data, remaining):
                if save is not None:
                    faults.point("predict.chunk")
                    save(spec, new, chunk_counters, fit_info)
                    faults.point("chunk.saved")
                counters = sum_counters([counters, chunk_counters])
                rows.update((r["example_id"], r) for r in new)
                self.progress(f"{task.name}/{spec.split}", len(rows), len(examples))
            order = {ex.example_id: i for i, ex in enumerate(examples)}
            loaded, self.loaded = self.loaded, 0.0
            yield SplitResult(spec, sorted(rows.values(), key=lambda r: order[r["example_id"]]), counters, fit_info,
                              split_fit, self.predict_time, resumed,
                              {**plain(method.perf_info()), "images": self.session.dataset(task).images.stats(),
                               **_threads()},
                              dict(data.skipped), dict(data.kept), bool(getattr(method, "sealed", False)), loaded)

    def _predict_rounds(self, method: Method, job: Job, data, remaining: Sequence[Example]):
        """(scored rows, counters) per saved chunk. Distributed: each rank predicts its images'
        share of a round; rank 0 receives the round's rows and counters of every rank."""
        chunk = self.chunk_size
        dist = self.dist
        images = self.session.dataset(job.task).images
        if dist.active:
            groups: dict[str, list[Example]] = {}
            for ex in remaining:
                groups.setdefault(ex.image_key, []).append(ex)
            shards = [[ex for g in list(groups.values())[r::dist.world] for ex in g] for r in range(dist.world)]
            per_rank = max(1, chunk // dist.world)
            mine = shards[dist.rank]
            rounds = max((len(s) + per_rank - 1) // per_rank for s in shards) if remaining else 0
        else:
            per_rank, mine = chunk, list(remaining)
            rounds = (len(mine) + chunk - 1) // chunk
        for k in range(rounds):
            batch = mine[k * per_rank:(k + 1) * per_rank]
            upcoming = mine[(k + 1) * per_rank:(k + 2) * per_rank]
            if upcoming:
                images.prefetch([ex.image_key for ex in upcoming])
            t, loaded = clock(), load_clock_of(method)
            scores = method.predict(batch) if batch else []
            load = load_clock_of(method) - loaded
            self.loaded += load
            self.predict_time += clock() - t - load
            faults.point("predict.round")
            if len(scores) != len(batch):
                raise RuntimeError(f"method {job.method_cls.name!r} returned {len(scores)} score arrays for {len(batch)} examples")
            rows = [score_example(ex, data.labels[ex.example_id], s, job.task.metric).to_json(s)
                    for ex, s in zip(batch, scores)]
            counters = plain(method.take_counters())
            if dist.active:
                gathered = dist.gather((rows, counters))
                if not dist.is_main:
                    continue
                rows = [r for part, _ in gathered for r in part]
                counters = sum_counters(c for _, c in gathered)
            yield rows, counters


def _threads() -> dict[str, int]:
    """``{"threads": n}``: torch's CPU threads in force, when torch is loaded (nothing otherwise)."""
    import sys

    torch = sys.modules.get("torch")
    return {"threads": int(torch.get_num_threads())} if torch is not None else {}


def clock() -> float:
    """The executor's clock (``time.perf_counter``; tests may replace it)."""
    return time.perf_counter()


def load_clock_of(method) -> float:
    """Seconds spent loading models so far where ``method`` runs: its sealed process, or this one."""
    own = getattr(method, "load_clock", None)
    if callable(own):
        return float(own())
    from cptbench.models.loading import load_clock

    return load_clock()


def sum_counters(parts) -> dict[str, Any]:
    """Key-wise sum of counter dicts (numbers add; nested dicts add key-wise)."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, dict):
                out[k] = sum_counters([out.get(k) or {}, v])
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out[k] = v
    return out


def plain(obj: Any) -> Any:
    """A JSON round-trip copy (tuples become lists, numpy scalars plain numbers)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
