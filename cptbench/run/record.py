"""Recording a run: a split's result becomes its predictions file and one typed :class:`RunRecord`.

Only the process that holds the run's lock records it (the store's one writer; rank 0 under
torchrun, the driver under Ray). The order is what makes a kill at any point resumable: the
predictions file is written atomically, then the record is appended (idempotent by run id), then
the partial file is removed.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timezone

from cptbench.core import faults
from cptbench.results.records import RunRecord
from cptbench.run.execute import SplitResult
from cptbench.run.plan import Job
from cptbench.run.scoring import summarize


def build_record(job: Job, result: SplitResult, predictions_sha: str, layout, *, device: str, command: str,
                 world_size: int = 1, precision: str = "") -> RunRecord:
    """The record of one finished split of ``job`` (``layout`` names the files it points to)."""
    from cptbench.core.provenance import git_revision, package_versions, platform_info

    spec = result.spec
    summary = summarize(result.rows)
    fit_s, pred_s, load_s = round(result.fit_seconds, 3), round(result.predict_seconds, 3), round(result.load_seconds, 3)
    perf = dict(result.perf)
    if world_size > 1:
        perf["world_size"] = world_size
    manifest = job.manifest
    return RunRecord(
        run_id=spec.run_id, task=spec.task, task_version=spec.task_version, split=spec.split,
        method=spec.method, method_config=json.loads(spec.method_config), method_config_hash=spec.config_hash,
        model=spec.model, model_fingerprint=spec.model_fingerprint, data_fingerprint=spec.data_fingerprint,
        proposals=spec.proposals, shots=spec.shots, seed=spec.seed, limit=spec.limit, metric=asdict(spec.metric),
        uses_eval_labels=job.method_cls.uses_eval_labels, accuracy=summary.accuracy, n=summary.n,
        n_correct=summary.n_correct, n_invalid=summary.n_invalid, n_no_candidates=summary.n_no_candidates,
        fit_seconds=fit_s, predict_seconds=pred_s, seconds=round(load_s + fit_s + pred_s, 3), load_seconds=load_s,
        resumed_examples=result.resumed, manifest_sha256=manifest.sha256,
        manifest_path=layout.relative(layout.manifest(manifest.task, manifest.shots, manifest.seed, manifest.sampler)),
        predictions_path=layout.relative(layout.predictions(spec.run_id)),
        method_info={**result.fit_info, **result.counters}, skip_bad=spec.skip_bad, n_skipped=dict(result.skipped),
        data_policy=spec.data_policy, n_kept={k: v for k, v in result.kept.items() if v},
        predictions_sha256=predictions_sha, results_version=spec.results_version,
        method_version=spec.method_version, precision=precision, sampler=spec.sampler, sealed=result.sealed,
        seed_policy=str(result.fit_info.get("seed_policy", "")),
        model_source=dict(job.model_fp.source) if job.model_fp else {},
        data_source=dict(job.data_fp.source) if job.data_fp else {},
        perf=perf, task_card=job.task.path, device=device, versions=package_versions(),
        git_revision=git_revision(), platform=platform_info(),
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), command=command,
    )


def finish(store, job: Job, result: SplitResult, *, device: str, command: str, world_size: int = 1,
           precision: str = "") -> RunRecord | None:
    """Finalise a split's predictions and append its record; the record, or ``None`` when another
    process recorded the run first."""
    spec = result.spec
    faults.point("split.predicted")
    sha = store.finalize_predictions(spec.run_id, result.rows)
    faults.point("predictions.done")
    record = build_record(job, result, sha, store.layout, device=device, command=command, world_size=world_size,
                          precision=precision)
    written = store.append_record(record)
    faults.point("record.done")
    store.drop_partial(spec.run_id)
    faults.point("partial.dropped")
    return record if written else None
