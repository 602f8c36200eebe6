"""``cptbench reproduce RUN_ID``: rerun a recorded run from its record alone and compare.

The record names everything that decides its result (task and card version, method and its full
config, model, proposals, k, seed, split, limit, sampler, box policy). :func:`reproduce` builds the
request from it, prepares the run (which fingerprints the task's data and the model as they are
now) and refuses, naming each difference, when the task version, the data or the model changed
or the planned run id is not the record's. Otherwise it runs into a scratch results folder and
compares the predictions example by example: the predicted candidate, the status and the largest
score difference.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cptbench.core.errors import DataError, UsageError
from cptbench.results.records import RunRecord
from cptbench.results.store import ResultsStore


class ReproduceRefused(DataError):
    """The run cannot be reproduced as recorded: its task, data or model changed (the message
    names each difference)."""


@dataclass
class Reproduction:
    """The outcome of one reproduction: the recorded run, the rerun, and how their predictions
    compare."""

    record: RunRecord
    rerun: RunRecord
    n: int
    matched: int
    max_score_diff: float
    differences: list[dict[str, Any]] = field(default_factory=list)  # the first few differing examples
    scratch: str = ""

    @property
    def all_match(self) -> bool:
        """Whether every prediction (candidate and status) is the recorded one."""
        return self.matched == self.n == self.rerun.n

    def to_json(self) -> dict[str, Any]:
        """The outcome as a JSON-ready dict."""
        return {"run_id": self.record.run_id, "rerun_id": self.rerun.run_id, "all_match": self.all_match,
                "n": self.n, "matched": self.matched, "accuracy": self.record.accuracy,
                "rerun_accuracy": self.rerun.accuracy, "max_score_diff": self.max_score_diff,
                "differences": self.differences, "scratch": self.scratch}


def find_record(store: ResultsStore, run_id: str) -> RunRecord:
    """The record whose run id starts with ``run_id``; a usage error when none or several do."""
    from cptbench.core.registry import unknown_name_message

    records = store.records()
    hits = [r for r in records if r.run_id.startswith(run_id)]
    if len(hits) == 1:
        return hits[0]
    if not hits:
        raise UsageError(f"{store.runs_path}: " + unknown_name_message("run id", run_id, [r.run_id for r in records])
                         + " (`cptbench runs` lists them).")
    raise UsageError(f"run id prefix {run_id!r} matches {len(hits)} runs ({', '.join(r.run_id[:12] for r in hits[:5])}"
                     f"{', ...' if len(hits) > 5 else ''}); give more of the id.")


def request_from_record(rec: RunRecord, *, data_root=None, images=None, proposals_file=None, device=None):
    """The :class:`~cptbench.run.plan.RunRequest` of the one run ``rec`` records."""
    from cptbench.run.plan import RunRequest
    from cptbench.tasks import get_task

    proposals = rec.proposals
    if proposals != "gt":
        if not proposals_file:
            raise UsageError(f"run {rec.run_id} used detector proposals ({proposals}); give the detections file "
                             f"with --proposals FILE (its content is checked against the record).")
        proposals = str(proposals_file)
    return RunRequest(tasks=[get_task(rec.task)], methods=[rec.method], shots=[rec.shots], seeds=[rec.seed],
                      proposals=proposals, model=None if rec.model == "none" else rec.model,
                      options={f"{rec.method}.{k}": v for k, v in rec.method_config.items()}, splits=[rec.split],
                      limit=rec.limit, data_root=data_root, images=images, device=device or rec.device or "cpu",
                      skip_bad=rec.skip_bad, strict_data=rec.strict_data, sampler=rec.sampler, sealed=rec.sealed or None,
                      command=f"cptbench reproduce {rec.run_id}")


def differences(rec: RunRecord, job) -> list[str]:
    """What changed between the record and the prepared ``job``: task version, data and model
    fingerprints, then any other part of the run's identity (empty: the same run)."""
    out = []
    if job.task.version != rec.task_version:
        out.append(f"task {rec.task}: card version {job.task.version} now, {rec.task_version} in the record")
    if job.data_fp is not None and job.data_fp.digest != rec.data_fingerprint:
        out.append(f"data of task {rec.task}: fingerprint {job.data_fp.digest} now, {rec.data_fingerprint} in the record"
                   + _source_diff(rec.data_source, job.data_fp.source))
    model_fp = job.model_fp.digest if job.model_fp is not None else "none"
    if model_fp != rec.model_fingerprint:
        out.append(f"model {rec.model}: fingerprint {model_fp} now, {rec.model_fingerprint} in the record"
                   + _source_diff(rec.model_source, job.model_fp.source if job.model_fp is not None else {}))
    spec = next((r for r in job.runs if r.split == rec.split), None)
    if not out and spec is not None and spec.run_id != rec.run_id:
        now = spec.identity()
        fields = [k for k, v in now.items() if str(v) != str(rec.get(k, v)) and k != "method_config"]
        out.append(f"the planned run id is {spec.run_id}, not {rec.run_id} (differing: {', '.join(fields) or 'the method config'})")
    return out


def _source_diff(old: Any, new: Any) -> str:
    """`` (changed: a, b)``: the top-level keys whose values differ between two source dicts."""
    if not isinstance(old, dict) or not isinstance(new, dict):
        return ""
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    return f" (changed: {', '.join(keys)})" if keys else ""


def compare_predictions(old: list[dict[str, Any]], new: list[dict[str, Any]], keep: int = 5):
    """``(matched, max_score_diff, first differences)`` of two runs' per-example rows."""
    by_id = {row["example_id"]: row for row in new}
    matched, worst, diffs = 0, 0.0, []
    for row in old:
        other = by_id.get(row["example_id"])
        same = other is not None and other.get("pred") == row.get("pred") and other.get("status") == row.get("status")
        if other is not None and row.get("scores") and other.get("scores") and len(row["scores"]) == len(other["scores"]):
            worst = max(worst, max(abs(float(a) - float(b)) for a, b in zip(row["scores"], other["scores"])))
        if same:
            matched += 1
        elif len(diffs) < keep:
            diffs.append({"example_id": row["example_id"], "recorded": row.get("pred"),
                          "rerun": None if other is None else other.get("pred")})
    return matched, worst, diffs


def reproduce(store: ResultsStore, run_id: str, scratch: Path, *, data_root=None, images=None, proposals_file=None,
              device=None, progress: Callable | None = None, event: Callable | None = None) -> Reproduction:
    """Rerun ``run_id`` of ``store`` into ``scratch`` (a results folder of its own) and compare
    (module docstring). Raises :class:`ReproduceRefused` when the task, data or model changed."""
    from cptbench.run.engine import Runner
    from cptbench.run.plan import plan

    rec = find_record(store, run_id)
    original = store.read_predictions(rec)  # checked against its sha256 before anything runs
    request = request_from_record(rec, data_root=data_root, images=images, proposals_file=proposals_file, device=device)
    jobs = plan(request)
    if len(jobs) != 1:
        raise UsageError(f"run {rec.run_id}: its record plans {len(jobs)} jobs, not one; it cannot be rerun alone.")
    out = ResultsStore(scratch)
    runner = Runner(request, out, **{k: v for k, v in (("progress", progress), ("event", event)) if v is not None})
    prepared = runner.prepare(jobs, write=False)
    why = differences(rec, prepared[0])
    if why:
        raise ReproduceRefused(f"run {rec.run_id} ({rec.method} k={rec.shots} seed {rec.seed} {rec.split}) cannot be "
                               "reproduced as recorded: " + "; ".join(why) + ". Restore what changed, or run it "
                               "anew with `cptbench run`.")
    runner.run(jobs)
    rerun = next((r for r in out.records() if r.run_id == rec.run_id), None)
    if rerun is None:
        raise ReproduceRefused(f"run {rec.run_id}: the rerun in {scratch} wrote no record of that id.")
    matched, worst, diffs = compare_predictions(original, out.read_predictions(rerun))
    return Reproduction(rec, rerun, len(original), matched, worst, diffs, str(scratch))
