"""Planning and executing runs: the harness between task data, methods and the results store.

A *run* is one frozen :class:`RunSpec` (task, split, method + config, model, proposals, shots, seed,
limit) with a stable id. Runs that share everything but the split form a *job*: the method is fitted
once on the k-shot manifest and then predicts every pending split. Finished runs are skipped; a run
interrupted mid-way resumes from its partial predictions (the method is fitted again with the same
seed, which reproduces it).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from .examples import TrainExample
from .methods.base import Method, MethodContext, config_dict, parse_config
from .methods.registry import get_method_class
from .sampling import Manifest, sample_k_shot
from .scoring import score_example, summarize
from .store import ResultsStore
from .taskspec import MetricSpec, TaskSpec

EventFn = Callable[[str, Mapping[str, Any]], None]


def _no_event(kind: str, info: Mapping[str, Any]) -> None:
    return None


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


def stable_hash(obj: Any, n: int = 16) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:n]


@dataclass(frozen=True)
class RunSpec:
    task: str
    task_version: int
    split: str
    method: str
    method_config: str  # canonical JSON of the method's config
    model: str
    proposals: str
    shots: int
    seed: int
    limit: int | None
    metric: MetricSpec

    @property
    def run_id(self) -> str:
        return stable_hash(asdict(self))

    @property
    def config_hash(self) -> str:
        return stable_hash(json.loads(self.method_config), 12)


@dataclass
class Job:
    """Runs that share one fitted method (all eval splits of one setting)."""

    task: TaskSpec
    method_cls: type[Method]
    config: Any
    model: str | None
    proposals_arg: str
    shots: int
    seed: int
    runs: list[RunSpec] = field(default_factory=list)


@dataclass(frozen=True)
class RunRequest:
    tasks: Sequence[TaskSpec]
    methods: Sequence[str]
    shots: Sequence[int]
    seeds: Sequence[int] = (0, 1, 2, 3, 4)
    proposals: str | None = None  # "gt" or a detections file; None = the task card's default
    model: str | None = None  # None = the task card's default
    options: Mapping[str, Any] = field(default_factory=dict)  # "key" or "method.key" -> value
    splits: Sequence[str] | None = None  # None = the task's eval splits
    limit: int | None = None
    data_root: str | None = None
    images: str | None = None
    device: str = "cpu"
    eval_batch_size: int = 32
    chunk_size: int = 64  # predictions are saved every chunk (the resume granularity)


def _options_for(method: str, cls: type[Method], task: TaskSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """Task-card defaults for the method, then the user's options (unscoped or scoped to it)."""
    merged = task.method_overrides(method)
    for key, value in options.items():
        scope, dot, name = key.rpartition(".")
        if not dot:
            merged[key] = value
        elif scope == method or (scope and get_method_class(scope) is cls):
            merged[name] = value
    return merged


def _proposal_setting(arg: str) -> str:
    if arg == "gt":
        return "gt"
    from .data.proposals import load_detections

    return load_detections(arg).setting


def plan(request: RunRequest) -> list[Job]:
    """All jobs of a request, in a deterministic order. Raises early on unknown names/options."""
    jobs: list[Job] = []
    settings: dict[str, str] = {}
    for task in request.tasks:
        splits = list(request.splits) if request.splits else list(task.eval_splits)
        bad = [s for s in splits if s not in task.eval_splits]
        if bad:
            from .registry import unknown_name_message

            raise ValueError(unknown_name_message(f"eval split of task {task.name!r}:", bad[0], task.eval_splits))
        proposals_arg = request.proposals or task.default_proposals
        if proposals_arg not in settings:
            settings[proposals_arg] = _proposal_setting(proposals_arg)
        for method in request.methods:
            cls = get_method_class(method)
            config = parse_config(cls.Config, _options_for(cls.name, cls, task, request.options), method=cls.name)
            config_json = json.dumps(config_dict(config), sort_keys=True)
            model = (request.model or task.default_model) if cls.needs_model else None
            # A method that does not train gives the same result at every k: run it once, at the
            # smallest k asked for (its row is the same for every k).
            shot_list = list(request.shots) if cls.trains else [min(request.shots)]
            for shots in shot_list:
                # A deterministic method that does not train gives the same result for every seed.
                varies = cls.stochastic or (cls.trains and shots > 0)
                seeds = list(request.seeds) if varies else list(request.seeds)[:1]
                for seed in seeds:
                    job = Job(task, cls, config, model, proposals_arg, shots, seed)
                    for split in splits:
                        job.runs.append(RunSpec(task.name, task.version, split, cls.name, config_json,
                                                model or "none", settings[proposals_arg], shots, seed,
                                                request.limit, task.metric))
                    jobs.append(job)
    return jobs


class Runner:
    """Executes jobs against a results store; library code: reports through callbacks only."""

    def __init__(self, request: RunRequest, store: ResultsStore, *, progress=_no_progress, event: EventFn = _no_event):
        self.request = request
        self.store = store
        self.progress = progress
        self.event = event
        self._datasets: dict[str, Any] = {}
        self._detections: dict[str, Any] = {}
        self._splits: dict[tuple[str, str], Any] = {}

    # -- data ----------------------------------------------------------------------------------
    def _dataset(self, task: TaskSpec):
        if task.name not in self._datasets:
            from .data.source import open_dataset

            self.event("load", {"task": task.name})
            self._datasets[task.name] = open_dataset(task, self.request.data_root, self.request.images)
        return self._datasets[task.name]

    def _proposals(self, arg: str):
        if arg == "gt":
            return None
        if arg not in self._detections:
            from .data.proposals import load_detections

            self._detections[arg] = load_detections(arg)
        return self._detections[arg]

    def _split(self, task: TaskSpec, split: str, proposals_arg: str):
        key = (task.name, split, proposals_arg)
        if key not in self._splits:
            self._splits[key] = self._dataset(task).load_split(split, self._proposals(proposals_arg))
        return self._splits[key]

    def manifest(self, task: TaskSpec, shots: int, seed: int) -> Manifest:
        ds = self._dataset(task)
        pairs = [(r["ref_id"], s["sent_id"]) for r in ds.refs_of(task.train_split) for s in r["sentences"]]
        return sample_k_shot(task.name, task.version, pairs, shots, seed)

    # -- execution -----------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        done = self.store.finished_ids()
        new_records = []
        for i, job in enumerate(jobs, 1):
            pending = [r for r in job.runs if r.run_id not in done]
            info = {"index": i, "total": len(jobs), "task": job.task.name, "method": job.method_cls.name,
                    "shots": job.shots, "seed": job.seed}
            if not pending:
                self.event("skip", info)
                continue
            self.event("job", info)
            new_records += self._run_job(job, pending)
        return new_records

    def _run_job(self, job: Job, pending: list[RunSpec]) -> list[dict[str, Any]]:
        task = job.task
        manifest = self.manifest(task, job.shots, job.seed)
        manifest_path = self.store.save_or_check_manifest(manifest)
        context = MethodContext(
            model=job.model, device=self.request.device, task=task.name,
            eval_batch_size=self.request.eval_batch_size, progress=self.progress,
            artifacts_dir=self.store.root / "artifacts" / pending[0].run_id,
            extra={"iou_convention": task.metric.iou_convention, "iou_threshold": task.metric.threshold,
                   "iou_rule": task.metric.threshold_rule, "shots": job.shots},
        )
        method = job.method_cls(job.config, context)
        fitted = False
        fit_seconds = 0.0
        records = []
        for spec in pending:
            t0 = time.perf_counter()
            data = self._split(task, spec.split, job.proposals_arg)
            examples = data.examples[: spec.limit] if spec.limit else data.examples
            order = {ex.example_id: i for i, ex in enumerate(examples)}
            rows = {k: v for k, v in self.store.partial_predictions(spec.run_id).items() if k in order}
            remaining = [ex for ex in examples if ex.example_id not in rows]
            if remaining and not fitted:
                t_fit = time.perf_counter()
                train = self._train_examples(task, manifest, job.proposals_arg)
                self.event("fit", {"method": job.method_cls.name, "shots": job.shots, "seed": job.seed, "n_train": len(train)})
                method.fit(train, job.seed)
                fitted = True
                fit_seconds = time.perf_counter() - t_fit
            if remaining and job.method_cls.uses_eval_labels:
                method.set_eval_labels(data.labels)
            t_pred = time.perf_counter()
            chunk = max(1, self.request.chunk_size)
            for start in range(0, len(remaining), chunk):
                batch = remaining[start:start + chunk]
                scores = method.predict(batch)
                if len(scores) != len(batch):
                    raise RuntimeError(f"method {job.method_cls.name!r} returned {len(scores)} score arrays for {len(batch)} examples")
                new = [score_example(ex, data.labels[ex.example_id], s, task.metric).to_json(s)
                       for ex, s in zip(batch, scores)]
                self.store.append_partial(spec.run_id, new)
                rows.update((r["example_id"], r) for r in new)
                self.progress(f"{task.name}/{spec.split}", len(rows), len(examples))
            predict_seconds = time.perf_counter() - t_pred
            ordered = sorted(rows.values(), key=lambda r: order[r["example_id"]])
            summary = summarize(ordered)
            record = self._record(spec, job, method, summary, manifest, manifest_path,
                                  fit_seconds=fit_seconds, predict_seconds=predict_seconds,
                                  seconds=time.perf_counter() - t0 + fit_seconds, resumed=len(rows) - len(remaining))
            self.store.finalize_predictions(spec.run_id, ordered)
            if self.store.append_record(record):
                records.append(record)
                self.event("done", record)
            self.store.drop_partial(spec.run_id)
            fit_seconds = 0.0  # counted once, in the job's first run
        return records

    def _train_examples(self, task: TaskSpec, manifest: Manifest, proposals_arg: str) -> list[TrainExample]:
        if not manifest.examples:
            return []
        data = self._dataset(task).load_split(task.train_split, self._proposals(proposals_arg), ref_filter=manifest.examples)
        by_pair = {(ex.ref_id, ex.sent_id): ex for ex in data.examples}
        return [TrainExample(by_pair[p], data.labels[by_pair[p].example_id]) for p in manifest.examples]

    def _record(self, spec: RunSpec, job: Job, method: Method, summary, manifest: Manifest, manifest_path: Path,
                **timing: Any) -> dict[str, Any]:
        from .provenance import git_revision, package_versions, platform_info

        return {
            "run_id": spec.run_id, "task": spec.task, "task_version": spec.task_version, "split": spec.split,
            "method": spec.method, "method_config": json.loads(spec.method_config),
            "method_config_hash": spec.config_hash, "model": spec.model, "proposals": spec.proposals,
            "shots": spec.shots, "seed": spec.seed, "limit": spec.limit,
            "metric": asdict(spec.metric), "uses_eval_labels": job.method_cls.uses_eval_labels,
            "accuracy": summary.accuracy, "n": summary.n, "n_correct": summary.n_correct,
            "n_invalid": summary.n_invalid, "n_no_candidates": summary.n_no_candidates,
            "seconds": round(timing["seconds"], 3), "fit_seconds": round(timing["fit_seconds"], 3),
            "predict_seconds": round(timing["predict_seconds"], 3), "resumed_examples": timing["resumed"],
            "manifest_sha256": manifest.sha256,
            "manifest_path": str(manifest_path.relative_to(self.store.root)),
            "predictions_path": str(self.store.predictions_path(spec.run_id).relative_to(self.store.root)),
            "method_info": method.describe(), "task_card": job.task.path, "device": self.request.device,
            "versions": package_versions(), "git_revision": git_revision(), "platform": platform_info(),
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
