"""A sweep's cells as Ray tasks on a cluster (the optional extra ``cptbench[ray]``).

The driver plans, prepares and claims every pending run (the same steps as a local run), then
submits each cell to a pool of worker *actors* (``num_gpus`` per task). An actor keeps its data
session and its pristine models loaded between cells. A worker computes and returns the cell's
per-split results; it never writes to the results folder. The driver streams results back as they
complete and alone records them (idempotent by run id: a repeat is dropped), so every run is
recorded exactly once. A cell whose worker crashed (actor died, node lost) is retried on a fresh
actor up to ``max_retries`` times; a cell that fails on its input is reported and the others go on.
An interrupted sweep resumes: recorded runs are skipped. Workers must see the data and models at
the same paths (a shared filesystem), and they check it: a worker whose data or model fingerprint
differs from the driver's refuses the cell.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

from cptbench.core.errors import UsageError
from cptbench.run.claim import claim, pending_runs


@dataclass
class CellOutcome:
    """What became of one submitted cell: records written, attempts, the error that ended it."""

    job_index: int
    records: int = 0
    attempts: int = 0
    error: str = ""


class _Worker:
    """A Ray actor body: one Runner (data session and models cached) that computes whole cells."""

    def __init__(self, request, device: str, results_root: str):
        from cptbench.results.store import ResultsStore
        from cptbench.run.engine import Runner

        self.request = replace(request, device=device)
        # the store is only named (artifacts of save_weights go beside the driver's results); a worker writes no record
        self.runner = Runner(self.request, ResultsStore(results_root))
        if self.request.threads:  # the driver's --threads (or its $CPTBENCH_THREADS), in force here too
            from cptbench.methods.numerics import apply_threads

            self.runner.threads = apply_threads(self.request.threads)

    def compute(self, job, pending) -> list:
        """The cell's per-split results, after checking this worker sees the driver's data and model."""
        from cptbench.core.errors import CptbenchError

        session = self.runner.session
        data_fp = session.data_fingerprint(job.task)
        if data_fp.digest != job.data_fp.digest:
            raise CptbenchError(f"worker on {os.uname().nodename}: the data of task {job.task.name!r} differs from the "
                                f"driver's (fingerprint {data_fp.digest} vs {job.data_fp.digest}); workers need the same files.")
        if job.model:
            model_fp, model_path = session.model(job.model)
            if model_fp.digest != job.model_fp.digest:
                raise CptbenchError(f"worker on {os.uname().nodename}: model {job.model!r} differs from the driver's.")
            job = replace(job, model_path=model_path)
        return list(self.runner.execute_job(job, pending))


def run_on_ray(runner, jobs: Sequence, *, address: str | None = None, workers: int | None = None,
               gpus_per_task: float | None = None, max_retries: int = 2,
               on_cell: Callable[[CellOutcome], None] | None = None, runtime_env: Mapping[str, Any] | None = None
               ) -> list[CellOutcome]:
    """Run the planned ``jobs`` of ``runner`` on Ray (see the module doc); returns one outcome per
    submitted cell. The driver's ``runner`` prepares, claims and records; workers compute."""
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'cptbench[ray]' (or pip install ray)") from None
    from cptbench.core.errors import CptbenchError

    store = runner.store
    store.check_writable()
    jobs = runner.prepare(jobs)
    done = store.finished_ids()
    tickets, claims, outcomes = [], [], {}
    for i, job in enumerate(jobs):
        info = {"index": i + 1, "total": len(jobs), **job.info}
        held = claim(store, job, pending_runs(store, job, done), busy=runner.busy, event=runner.event, info=info)
        claims.append(held)
        if held.specs:
            tickets.append((i, job, held.specs))
            outcomes[i] = CellOutcome(i)
    recorded: set[str] = set()
    if not tickets:
        for held in claims:
            held.release()
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
                    runner.event("retry", {**job.info, "attempt": outcome.attempts, "why": type(exc).__name__})
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
            runner.event("job", {"index": index + 1, "total": len(jobs), **job.info})
            for result in results:
                recorded.add(result.spec.run_id)
                if runner.finish(job, result) is not None:
                    outcome.records += 1
            _report(on_cell, outcome)
    finally:
        for held in claims:
            held.release(recorded)
    return [outcomes[i] for i, *_ in tickets]


def _report(on_cell, outcome: CellOutcome) -> None:
    if on_cell is not None:
        on_cell(outcome)
