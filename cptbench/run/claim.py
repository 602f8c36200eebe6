"""Claiming runs: skip what is recorded, lock what is pending, report what another process holds.

Shared by local runs, torchrun (rank 0 claims and broadcasts) and the Ray driver. A process computes
a run only while it holds that run's lock (:meth:`cptbench.results.store.ResultsStore.try_lock`,
non-blocking), and only the holder finalises and records it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from cptbench.run.plan import Job, RunSpec


@dataclass
class Claim:
    """The runs of one job this process holds (``specs``, with their ``locks``)."""

    job: Job
    specs: list[RunSpec] = field(default_factory=list)
    locks: list[Any] = field(default_factory=list)
    specs_locked: list[RunSpec] = field(default_factory=list)  # the run of each lock, in order

    def release(self, recorded: set[str] | frozenset[str] = frozenset()) -> None:
        """Free the locks; the lock files of ``recorded`` runs are removed (a finished run needs none)."""
        for spec, lock in zip(self.specs_locked, self.locks):
            lock.release(remove=spec.run_id in recorded)
        self.locks = []


def pending_runs(store, job: Job, done: set[str]) -> list[RunSpec]:
    """The job's runs not yet recorded; a partial file left by a kill between recording a run and
    removing it is removed."""
    for spec in job.runs:
        if spec.run_id in done:
            store.drop_partial(spec.run_id)
    return [r for r in job.runs if r.run_id not in done]


def claim(store, job: Job, pending: Sequence[RunSpec], *, busy: list[str],
          event: Callable[[str, Mapping[str, Any]], None], info: Mapping[str, Any]) -> Claim:
    """Lock each pending run of ``job``; a run held by another process is skipped, added to
    ``busy`` and reported (``busy`` event naming the holder). Runs finished meanwhile by another
    process are released again."""
    held = Claim(job)
    for spec in pending:
        lock = store.try_lock(spec.run_id)
        if lock is None:
            busy.append(spec.run_id)
            event("busy", {**info, "split": spec.split, "holder": store.lock_holder(spec.run_id)})
            continue
        held.locks.append(lock)
        held.specs_locked.append(spec)
        held.specs.append(spec)
    if held.specs:
        done = store.finished_ids()  # another process may have finished some meanwhile
        held.specs = [r for r in held.specs if r.run_id not in done]
    return held
