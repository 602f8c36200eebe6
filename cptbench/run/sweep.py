"""Sweeps: a study (tasks x methods x shots x seeds, from the command line or a YAML file) run cell
by cell here, or as Ray tasks on a cluster.

A *cell* is one job of :func:`cptbench.run.engine.plan`: one fitted method and all its eval splits.

* Local (the default, no extra dependency): the cells run in order in this process, exactly as
  ``cptbench run`` would run them.
* Ray (``run_on_ray``, the optional extra ``cptbench[ray]``): the driver plans, checks and locks
  every pending run, then submits each cell to a pool of worker *actors* (``num_gpus`` per task).
  An actor keeps its datasets and its pristine models loaded between cells. A worker computes and
  returns the cell's per-split results; it never writes to the results folder. The driver streams
  results back as they complete and alone appends records (idempotent by run id: a repeat is
  dropped), so every run is recorded exactly once. A cell whose worker crashed (actor died, node
  lost) is retried on a fresh actor up to ``max_retries`` times; a cell that fails on its input is
  reported and the others go on. An interrupted sweep resumes: recorded runs are skipped.
  Workers must see the data and models at the same paths (a shared filesystem), and they check it:
  a worker whose data or model fingerprint differs from the driver's refuses the cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping, Sequence

from cptbench.core.errors import UsageError
from cptbench.core.values import int_list, name_list

#: keys of a study file (YAML) and what they mean; the same as `cptbench run`'s options
STUDY_KEYS = {
    "tasks": "task card names", "methods": "method names", "shots": "k values", "seeds": "seeds",
    "options": "method options (key or method.key -> value), as --set", "model": "backbone",
    "proposals": "'gt' or a detections file", "splits": "eval splits", "limit": "first N expressions per split",
    "data_root": "refer-layout data root", "images": "image folder", "device": "torch device",
    "batch_size": "evaluation batch size", "skip_bad": "drop degenerate data", "results": "results folder",
}


@dataclass
class Study:
    tasks: list[str] = field(default_factory=lambda: ["synthref"])
    methods: list[str] = field(default_factory=lambda: ["cpt"])
    shots: list[int] = field(default_factory=lambda: [1])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    proposals: str | None = None
    splits: list[str] | None = None
    limit: int | None = None
    data_root: str | None = None
    images: str | None = None
    device: str = "cpu"
    batch_size: int = 32
    skip_bad: bool = False
    results: str | None = None


def _ints(value: Any, key: str, file: str) -> list[int]:
    try:
        return int_list(value, f"key '{key}'")
    except UsageError as exc:
        raise UsageError(f"{file}: {exc}") from None


def load_study(path: str) -> Study:
    """A study file: a YAML mapping of :data:`STUDY_KEYS` (unknown or duplicate keys are refused)."""
    import yaml

    from cptbench.core.registry import unknown_name_message
    from cptbench.core.yamlio import DuplicateKeyError, load_yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f.read()) or {}
    except (OSError, yaml.YAMLError, DuplicateKeyError) as exc:
        raise UsageError(f"{path}: cannot read the study file: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a study file is a mapping of {', '.join(STUDY_KEYS)}")
    for key in data:
        if key not in STUDY_KEYS:
            raise UsageError(f"{path}: " + unknown_name_message("study key", str(key), STUDY_KEYS))
    study = Study()
    for key, value in data.items():
        if key in ("tasks", "methods", "splits"):
            value = name_list(value)
        elif key in ("shots", "seeds"):
            value = _ints(value, key, path)
        elif key == "options":
            if not isinstance(value, dict):
                raise UsageError(f"{path}: key 'options' must map option names to values, e.g. {{steps: 100}}")
            value = {str(k): v for k, v in value.items()}
        elif key in ("limit", "batch_size"):
            value = _ints(value, key, path)[0] if value is not None else None
        elif key == "skip_bad":
            value = bool(value)
        setattr(study, key, value)
    return study


def study_request(study: Study, **overrides: Any):
    from cptbench.run.engine import RunRequest
    from cptbench.tasks.cards import get_task

    command = overrides.pop("command", "")
    s = replace(study, **{k: v for k, v in overrides.items() if v is not None})
    return RunRequest(tasks=[get_task(t) for t in s.tasks], methods=s.methods, shots=s.shots, seeds=s.seeds,
                      proposals=s.proposals, model=s.model, options=s.options, splits=s.splits, limit=s.limit,
                      data_root=s.data_root, images=s.images, device=s.device, eval_batch_size=s.batch_size,
                      skip_bad=s.skip_bad, command=command)


# --------------------------------------------------------------------------------------------- Ray
@dataclass
class CellOutcome:
    job_index: int
    records: int = 0
    attempts: int = 0
    error: str = ""


class _Worker:
    """A Ray actor body: one Runner (datasets and models cached) that computes whole cells."""

    def __init__(self, request, device: str, results_root: str):
        from cptbench.run.engine import Runner
        from cptbench.results.store import ResultsStore

        self.request = replace(request, device=device)
        # the store is only named (artifacts of save_weights go beside the driver's results); a worker writes no record
        self.runner = Runner(self.request, ResultsStore(results_root))

    def compute(self, job, pending) -> list:
        from cptbench.core.errors import CptbenchError

        runner = self.runner
        data_fp = runner.data_fingerprint(job.task)
        if data_fp.digest != job.data_fp.digest:
            raise CptbenchError(f"worker on {os.uname().nodename}: the data of task {job.task.name!r} differs from the "
                                f"driver's (fingerprint {data_fp.digest} vs {job.data_fp.digest}); workers need the same files.")
        if job.model:
            model_fp, model_path = runner.model(job.model)
            if model_fp.digest != job.model_fp.digest:
                raise CptbenchError(f"worker on {os.uname().nodename}: model {job.model!r} differs from the driver's.")
            job = replace(job, model_path=model_path)
        return list(runner.execute_job(job, pending, saved=None))


def run_on_ray(runner, jobs: Sequence, *, address: str | None = None, workers: int | None = None,
               gpus_per_task: float | None = None, max_retries: int = 2,
               on_cell: Callable[[CellOutcome], None] | None = None, runtime_env: Mapping[str, Any] | None = None
               ) -> list[CellOutcome]:
    """Run the planned ``jobs`` of ``runner`` on Ray (see the module doc); returns one outcome per
    submitted cell. The driver's ``runner`` checks, locks and records; workers compute."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'cptbench[ray]' (or pip install ray)") from None
    from cptbench.core.errors import CptbenchError

    store = runner.store
    store.check_writable()
    runner.prepare(jobs)
    done = store.finished_ids()
    tickets, locks, outcomes = [], [], {}
    for i, job in enumerate(jobs):
        pending = []
        for spec in job.runs:
            if spec.run_id in done:
                continue
            lock = store.try_lock(spec.run_id)
            if lock is None:
                runner.busy.append(spec.run_id)
                runner.event("busy", {"index": i + 1, "total": len(jobs), "task": job.task.name, "method": job.method_cls.name,
                                      "shots": job.shots, "seed": job.seed, "split": spec.split,
                                      "holder": store.lock_holder(spec.run_id)})
                continue
            locks.append(lock)
            pending.append(spec)
        if pending:
            tickets.append((i, job, pending))
            outcomes[i] = CellOutcome(i)
    if not tickets:
        return []
    try:
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if runtime_env:
                kwargs["runtime_env"] = dict(runtime_env)
            ray.init(address=None if address in (None, "", "local") else address, **kwargs)
        cluster = ray.cluster_resources()
        if gpus_per_task is None:
            gpus_per_task = 1.0 if cluster.get("GPU", 0) >= 1 else 0.0
        if workers is None:
            workers = int(cluster.get("GPU", 0) // gpus_per_task) if gpus_per_task else max(1, int(cluster.get("CPU", 1)) // 2)
        workers = max(1, workers)
        device = "cuda" if gpus_per_task else runner.request.device
        actor_cls = ray.remote(num_gpus=gpus_per_task, num_cpus=1)(_Worker)
        actors = [actor_cls.remote(runner.request, device, str(store.root)) for _ in range(min(workers, len(tickets)) or 1)]
        free = list(range(len(actors)))
        queue = list(tickets)
        running: dict[Any, tuple[int, tuple]] = {}
        while queue or running:
            while queue and free:
                slot = free.pop()
                ticket = queue.pop(0)
                outcomes[ticket[0]].attempts += 1
                running[actors[slot].compute.remote(ticket[1], ticket[2])] = (slot, ticket)
            ready, _ = ray.wait(list(running), num_returns=1)
            ref = ready[0]
            slot, ticket = running.pop(ref)
            index, job, _pending = ticket
            outcome = outcomes[index]
            try:
                results = ray.get(ref)
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
                actors[slot] = actor_cls.remote(runner.request, device, str(store.root))  # a fresh worker for this slot
                free.append(slot)
                if outcome.attempts <= max_retries:
                    queue.insert(0, ticket)
                    runner.event("retry", {"task": job.task.name, "method": job.method_cls.name, "shots": job.shots,
                                           "seed": job.seed, "attempt": outcome.attempts, "why": type(exc).__name__})
                else:
                    outcome.error = f"worker crashed {outcome.attempts} times ({type(exc).__name__})"
                    _report(on_cell, outcome)
                continue
            except ray.exceptions.RayTaskError as exc:
                free.append(slot)
                cause = exc.cause if hasattr(exc, "cause") else None
                outcome.error = str(cause) if isinstance(cause, CptbenchError) else f"{type(cause or exc).__name__}: {cause or exc}"
                _report(on_cell, outcome)
                continue
            free.append(slot)
            runner.event("job", {"index": index + 1, "total": len(jobs), "task": job.task.name,
                                 "method": job.method_cls.name, "shots": job.shots, "seed": job.seed})
            for result in results:
                if runner.finish(job, result) is not None:
                    outcome.records += 1
            _report(on_cell, outcome)
    finally:
        for lock in locks:
            lock.release()
    return [outcomes[i] for i, *_ in tickets]


def _report(on_cell, outcome: CellOutcome) -> None:
    if on_cell is not None:
        on_cell(outcome)
