"""The run engine: the steps of :mod:`cptbench.run` strung together for one process or torchrun.

Order of work (:meth:`Runner.run`):

1. The results folder is writable; the device exists (:func:`cptbench.run.device.check_device`);
   the data session prepares every job (:meth:`cptbench.run.session.DataSession.prepare`: data,
   models, manifests and images checked before anything is spent).
2. Each job: runs already recorded are skipped; the others are claimed (:mod:`.claim`: locked, or
   skipped and reported when another process holds them); the method is built with the one
   context builder (:mod:`.context`), fitted and run split by split (:mod:`.execute`), and each
   finished split is recorded (:mod:`.record`).

Library code: it reports through callbacks only: ``progress(stage, done, total)`` and
``event(kind, info)`` with kinds ``load`` / ``data`` (a task's data opened), ``job`` / ``skip`` (a job
started or already recorded; info: index, total, task, method, shots, seed), ``busy`` (a run held
by another process; also split, holder), ``fit`` and ``done`` (info ``record``: the typed
:class:`~cptbench.results.records.RunRecord` just written).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from cptbench.core import faults
from cptbench.core.errors import UsageError
from cptbench.methods.base import no_progress
from cptbench.results.records import RunRecord
from cptbench.run.claim import claim, pending_runs
from cptbench.run.context import job_context
from cptbench.run.device import check_device, method_precision
from cptbench.run.distributed import Dist, rank_device
from cptbench.run.execute import Executor, SplitResult
from cptbench.run.plan import Job, RunRequest, RunSpec
from cptbench.run.record import finish
from cptbench.methods.numerics import apply_threads, threads_setting
from cptbench.run.sealed import SealedMethod, close_workers, should_seal
from cptbench.run.session import DataSession

EventFn = Callable[[str, Mapping[str, Any]], None]


def _no_event(kind: str, info: Mapping[str, Any]) -> None:
    return None


class Runner:
    """Executes jobs of one request against a results store (module docstring)."""

    def __init__(self, request: RunRequest, store, *, progress=no_progress, event: EventFn = _no_event,
                 dist: Dist | None = None, session: DataSession | None = None):
        self.request = request
        self.store = store
        self.dist = dist or Dist()
        from cptbench.models.loading import reuse_loaded_models

        reuse_loaded_models(True)  # a model is read from disk once per process, then copied for each job
        self.device = rank_device(request.device, self.dist)
        self.progress = progress if self.dist.is_main else no_progress
        self.event = event if self.dist.is_main else _no_event
        self.session = session or DataSession.for_request(request, event=self.event)
        self.executor = Executor(self.session, chunk_size=request.chunk_size, dist=self.dist, progress=self.progress,
                                 event=self.event)
        self.busy: list[str] = []  # run ids skipped because another process holds them

    # -- preparation ---------------------------------------------------------------------------
    def prepare(self, jobs: Sequence[Job], write: bool = True) -> list[Job]:
        """Check the device and prepare every job (before any fit); the jobs with their runs.
        ``write``: save new k-shot manifests (the store's writer only)."""
        check_device(self.device)
        return self.session.prepare(jobs, manifests=self.store if write else None)

    def method_for(self, job: Job, scratch: Path):
        """A fresh method object for ``job``, sealed in its own process when the policy says so
        (:func:`cptbench.run.sealed.should_seal`); ``scratch`` is its artifacts folder, outside the
        results folder."""
        context = job_context(job, device=self.device, eval_batch_size=self.request.eval_batch_size,
                              progress=self.progress, artifacts_dir=scratch)
        if should_seal(job.method_cls, self.request.sealed):
            return SealedMethod(job.method_cls, job.config, context, threads=getattr(self, "threads", None))
        return job.method_cls(job.config, context)

    def _check_sealed(self, jobs: Sequence[Job]) -> None:
        if self.dist.active and any(should_seal(j.method_cls, self.request.sealed) for j in jobs):
            names = sorted({j.method_cls.name for j in jobs if should_seal(j.method_cls, self.request.sealed)})
            raise UsageError(f"method(s) {', '.join(names)} run sealed (in their own process), which torchrun "
                             f"does not support; run them without torchrun, or trust them with --no-sealed.")

    # -- execution -----------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> list[RunRecord]:
        """Prepare, claim, execute and record every job; the records written by this process."""
        main = self.dist.is_main
        if main:
            self.store.check_writable()
        self._check_sealed(jobs)
        self.threads = threads_setting(self.request.threads)
        if any(j.method_cls.needs_model for j in jobs) or self.threads:
            self.threads = apply_threads(self.threads)
        jobs = self.prepare(jobs, write=main)
        faults.point("prepare.done")
        done = self._finished()
        new_records: list[RunRecord] = []
        for i, job in enumerate(jobs, 1):
            info = {"index": i, "total": len(jobs), **job.info}
            pending = pending_runs(self.store, job, done) if main else [r for r in job.runs if r.run_id not in done]
            if not pending:
                self.event("skip", info)
                continue
            held = claim(self.store, job, pending, busy=self.busy, event=self.event, info=info) if main else None
            recorded: set[str] = set()
            try:
                mine_ids = set(self.dist.broadcast([r.run_id for r in held.specs] if main else None))
                mine = [r for r in pending if r.run_id in mine_ids]
                if not mine:
                    continue
                self.event("job", info)
                faults.point("job.start")
                for result in self.execute_job(job, mine, persist=True):
                    if main:
                        record = self.finish(job, result)
                        recorded.add(result.spec.run_id)
                        if record is not None:
                            new_records.append(record)
            finally:
                if held is not None:
                    held.release(recorded)
        close_workers()
        return new_records

    def execute_job(self, job: Job, pending: Sequence[RunSpec], persist: bool = False):
        """Fit and predict ``job``'s ``pending`` runs; one :class:`SplitResult` per split. ``persist``:
        resume from and save chunks through the store (rank 0 writes; every rank reads rank 0's
        saved chunks); otherwise (a Ray worker) nothing is read or written. What the method saved
        in its artifacts folder is moved to the results folder's artifacts of the first run."""
        scratch = Path(tempfile.mkdtemp(prefix="cptbench-artifacts-"))
        try:
            method = self.method_for(job, scratch)
            if not persist:
                yield from self.executor.execute(job, method, pending)
            else:
                save = self._save_chunk if self.dist.is_main else None
                yield from self.executor.execute(job, method, pending, saved=self._saved_chunks, save=save)
        finally:
            if self.dist.is_main and any(scratch.iterdir()):
                target = self.store.layout.artifacts(pending[0].run_id)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.rmtree(target, ignore_errors=True)
                shutil.move(str(scratch), str(target))
            shutil.rmtree(scratch, ignore_errors=True)

    def finish(self, job: Job, result: SplitResult) -> RunRecord | None:
        """Record a finished split (the store's one writer); the record, or ``None`` if another
        process recorded it first."""
        record = finish(self.store, job, result, device=self.device, command=self.request.command,
                        world_size=self.dist.world, precision=method_precision(job.method_cls, job.config, self.device))
        if record is not None:
            self.event("done", {"record": record, "split": record.split})
        return record

    def _finished(self) -> set[str]:
        return set(self.dist.broadcast(sorted(self.store.finished_ids()) if self.dist.is_main else None))

    def _saved_chunks(self, spec: RunSpec) -> list[dict[str, Any]]:
        return self.dist.broadcast(self.store.partial_chunks(spec.run_id) if self.dist.is_main else None)

    def _save_chunk(self, spec: RunSpec, rows, counters, fit_info) -> None:
        self.store.append_chunk(spec.run_id, rows, counters, fit_info)
