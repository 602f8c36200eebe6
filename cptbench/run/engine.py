"""Planning and executing runs: the harness between task data, methods and the results store.

A *run* is one frozen :class:`RunSpec` (task, split, method + config, the model's and the data's
content fingerprints, proposals, shots, seed, limit, data policy) with a stable id over that
content (:meth:`RunSpec.identity`: paths never enter it). Runs that share everything but the split
form a *job*: the method is fitted once on the k-shot manifest and then predicts every pending
split.

Order of work (:meth:`Runner.run`):

1. :meth:`Runner.prepare` (before any fit): the results folder is writable; every task's data
   loads and passes the data-quality policy; the model of every job is found and fingerprinted;
   the device exists; every k-shot manifest is drawn and agrees with the saved one; every image of
   the eval splits and of the k-shot training sets exists, decodes its header, has its annotated
   size and is not truncated. A problem stops the command here, before anything is spent.
2. Each job: runs already recorded are skipped; the others are locked (a run locked by another
   process is skipped and reported); the method is fitted (training images pinned in the image
   cache) and predicts each split in chunks, in a seeded order that depends on no label
   (:func:`presentation_order`), each chunk saved with the method's counters and fit facts so a
   killed run resumes to the very same record.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, Mapping, Sequence

from cptbench.core import faults
from cptbench.run.distributed import Dist, rank_device
from cptbench.core.errors import UsageError
from cptbench.data.examples import Example, TrainExample
from cptbench.run.fingerprint import RESULTS_VERSION, Fingerprint, data_fingerprint, digest_of, model_fingerprint
from cptbench.methods.base import Method, MethodContext, config_dict, parse_config
from cptbench.methods.registry import get_method_class, method_registry
from cptbench.results.records import RunRecord
from cptbench.data.sampling import Manifest, rng_for, sample_k_shot
from cptbench.run.scoring import score_example, summarize
from cptbench.results.store import ResultsStore
from cptbench.tasks.spec import MetricSpec, TaskCardError, TaskSpec

EventFn = Callable[[str, Mapping[str, Any]], None]


def _no_event(kind: str, info: Mapping[str, Any]) -> None:
    return None


def _no_progress(stage: str, done: int, total: int) -> None:
    return None


@dataclass(frozen=True)
class RunSpec:
    task: str
    task_version: int
    split: str
    method: str
    method_config: str  # canonical JSON of the method's config
    model: str  # the name the user gave (display only; not part of the identity)
    model_fingerprint: str
    data_fingerprint: str
    proposals: str  # "gt" or "det:<file>:<sha256>"
    shots: int
    seed: int
    limit: int | None
    metric: MetricSpec
    skip_bad: bool = False
    results_version: int = RESULTS_VERSION

    def identity(self) -> dict[str, Any]:
        """What decides the result: everything but the model's display name."""
        d = asdict(self)
        d.pop("model")
        return d

    @property
    def run_id(self) -> str:
        return digest_of(self.identity())

    @property
    def config_hash(self) -> str:
        return digest_of(json.loads(self.method_config), 12)


@dataclass
class Job:
    """Runs that share one fitted method (all eval splits of one setting). ``runs`` is filled by
    :meth:`Runner.prepare` (the ids need the fingerprints)."""

    task: TaskSpec
    method_cls: type[Method]
    config: Any
    model: str | None
    proposals_arg: str
    shots: int
    seed: int
    splits: list[str] = field(default_factory=list)
    runs: list[RunSpec] = field(default_factory=list)
    model_path: str | None = None
    model_fp: Fingerprint | None = None
    data_fp: Fingerprint | None = None
    manifest: Manifest | None = None

    @property
    def label(self) -> str:
        return f"{self.task.name} · {self.method_cls.name} · k={self.shots} · seed {self.seed}"


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
    eval_batch_size: int | str = 32  # or "auto": methods that can size their batches to the device do
    chunk_size: int = 64  # predictions are saved every chunk (the resume granularity)
    skip_bad: bool = False  # drop degenerate boxes / expressions instead of refusing them
    command: str = ""  # the command line, recorded with every run (provenance)


# ------------------------------------------------------------------------------------ options
def card_method_defaults(task: TaskSpec) -> dict[str, dict[str, Any]]:
    """A card's ``method_defaults`` with aliases resolved to canonical names and every option
    checked against the method's config; a misspelt method or option is a :class:`TaskCardError`."""
    reg = method_registry()
    out: dict[str, dict[str, Any]] = {}
    for name, options in task.method_defaults.items():
        if name not in reg:
            from cptbench.core.registry import unknown_name_message

            raise TaskCardError(f"{task.path}: method_defaults: " + unknown_name_message("method", name, reg.names()))
        canonical = reg.canonical(name)
        if canonical in out:
            raise TaskCardError(f"{task.path}: method_defaults names {canonical!r} twice (once as {name!r}); keep one entry.")
        cls = get_method_class(canonical)
        try:
            parse_config(cls.Config, dict(options), method=canonical)
        except UsageError as exc:
            raise TaskCardError(f"{task.path}: method_defaults.{name}: {exc}") from None
        out[canonical] = dict(options)
    return out


def resolve_options(cls: type[Method], task: TaskSpec, options: Mapping[str, Any]) -> dict[str, Any]:
    """Task-card defaults for the method, then the user's options (unscoped or scoped to it)."""
    merged = dict(card_method_defaults(task).get(cls.name, {}))
    for key, value in options.items():
        scope, dot, name = key.rpartition(".")
        if not dot:
            merged[key] = value
        elif scope == cls.name or (scope and get_method_class(scope) is cls):
            merged[name] = value
    return merged


def _check_scopes(options: Mapping[str, Any], methods: Sequence[type[Method]]) -> None:
    """A scoped option (``cpt-seg.alpha``) must name a method of the request."""
    asked = {m.name for m in methods}
    for key in options:
        scope, dot, _ = key.rpartition(".")
        if dot and scope:
            canonical = method_registry().canonical(scope)
            if canonical not in asked:
                raise UsageError(f"--set {key}: method {scope!r} is not among the methods of this command ({', '.join(sorted(asked))}).")


def plan(request: RunRequest) -> list[Job]:
    """All jobs of a request, in a deterministic order. Raises early on unknown names/options."""
    if not request.methods:
        raise UsageError("no method given (--method)")
    if not request.shots:
        raise UsageError("no shots given (--shots, e.g. -k 0,1)")
    if not request.seeds:
        raise UsageError("no seeds given (--seeds, e.g. 0,1,2,3,4)")
    classes = [get_method_class(m) for m in dict.fromkeys(request.methods)]
    classes = list({c.name: c for c in classes}.values())
    _check_scopes(request.options, classes)
    jobs: list[Job] = []
    for task in request.tasks:
        splits = list(request.splits) if request.splits else list(task.eval_splits)
        bad = [s for s in splits if s not in task.eval_splits]
        if bad:
            from cptbench.core.registry import unknown_name_message

            raise UsageError(unknown_name_message(f"eval split of task {task.name!r}:", bad[0], task.eval_splits))
        card_method_defaults(task)  # a broken card is refused even for methods not asked for
        proposals_arg = request.proposals or task.default_proposals
        for cls in classes:
            config = parse_config(cls.Config, resolve_options(cls, task, request.options), method=cls.name)
            model = (request.model or task.default_model) if cls.needs_model else None
            # A method that does not train gives the same result at every k: run it once, at the
            # smallest k asked for (its row is the same for every k).
            shot_list = list(request.shots) if cls.trains else [min(request.shots)]
            for shots in shot_list:
                # A deterministic method that does not train gives the same result for every seed.
                varies = cls.stochastic or (cls.trains and shots > 0)
                seeds = list(request.seeds) if varies else list(request.seeds)[:1]
                for seed in seeds:
                    jobs.append(Job(task, cls, config, model, proposals_arg, shots, seed, list(splits)))
    return jobs


# ------------------------------------------------------------------------------ presentation
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


# ------------------------------------------------------------------------------------ runner
class Runner:
    """Executes jobs against a results store; library code: reports through callbacks only."""

    def __init__(self, request: RunRequest, store: ResultsStore, *, progress=_no_progress, event: EventFn = _no_event,
                 dist: Dist | None = None):
        self.request = request
        self.store = store
        self.dist = dist or Dist()
        from cptbench.models.loading import reuse_loaded_models

        reuse_loaded_models(True)  # a model is read from disk once per process, then copied for each job
        self.device = rank_device(request.device, self.dist)
        self.progress = progress if self.dist.is_main else _no_progress
        self.event = event if self.dist.is_main else _no_event
        self._datasets: dict[str, Any] = {}
        self._detections: dict[str, Any] = {}
        self._splits: dict[tuple[str, str, str], Any] = {}
        self._data_fps: dict[str, Fingerprint] = {}
        self._models: dict[str, tuple[Fingerprint, str | None]] = {}
        self._checked_images: set[str] = set()
        self._pairs: dict[str, list[tuple[int, int]]] = {}
        self._train: dict[tuple, list[TrainExample]] = {}
        self.busy: list[str] = []  # run ids skipped because another process holds them

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, task: TaskSpec):
        if task.name not in self._datasets:
            from cptbench.data.source import open_dataset

            self.event("load", {"task": task.name})
            ds = self._datasets[task.name] = open_dataset(task, self.request.data_root, self.request.images)
            self.event("data", {"task": task.name, "root": str(ds.root), "images": str(ds.images_dir),
                                "image_layout": ds.image_layout})
        return self._datasets[task.name]

    def _proposals(self, arg: str):
        if arg == "gt":
            return None
        if arg not in self._detections:
            from cptbench.data.proposals import load_detections

            self._detections[arg] = load_detections(arg)
        return self._detections[arg]

    def proposal_setting(self, arg: str) -> str:
        dets = self._proposals(arg)
        return "gt" if dets is None else dets.setting

    def split(self, task: TaskSpec, split: str, proposals_arg: str):
        key = (task.name, split, proposals_arg)
        if key not in self._splits:
            self._splits[key] = self.dataset(task).load_split(split, self._proposals(proposals_arg),
                                                              skip_bad=self.request.skip_bad)
        return self._splits[key]

    def manifest(self, task: TaskSpec, shots: int, seed: int) -> Manifest:
        if task.name not in self._pairs:  # the train split is read once, not once per job
            self._pairs[task.name] = self.dataset(task).pairs(task.train_split, skip_bad=self.request.skip_bad)
        pairs = self._pairs[task.name]
        if shots > len(pairs):
            raise UsageError(f"task {task.name!r}: -k {shots} asks for more training expressions than its "
                             f"{task.train_split!r} split has ({len(pairs)}); use a smaller -k.")
        return sample_k_shot(task.name, task.version, pairs, shots, seed)

    def train_examples(self, task: TaskSpec, manifest: Manifest, proposals_arg: str) -> list[TrainExample]:
        if not manifest.examples:
            return []
        key = (task.name, manifest.sha256, proposals_arg)
        if key not in self._train:
            data = self.dataset(task).load_split(task.train_split, self._proposals(proposals_arg),
                                                 ref_filter=manifest.examples, skip_bad=self.request.skip_bad)
            by_pair = {(ex.ref_id, ex.sent_id): ex for ex in data.examples}
            self._train[key] = [TrainExample(by_pair[p], data.labels[by_pair[p].example_id]) for p in manifest.examples]
        return self._train[key]

    def data_fingerprint(self, task: TaskSpec) -> Fingerprint:
        if task.name not in self._data_fps:
            self._data_fps[task.name] = data_fingerprint(self.dataset(task))
        return self._data_fps[task.name]

    def model(self, name: str | None) -> tuple[Fingerprint, str | None]:
        key = name or "none"
        if key not in self._models:
            self._models[key] = model_fingerprint(name)
        return self._models[key]

    # -- preflight -----------------------------------------------------------------------------
    def _check_device(self) -> None:
        from cptbench.run.device import check_device

        check_device(self.device)

    def _check_images(self, task: TaskSpec, examples: Sequence[Example]) -> None:
        ds = self.dataset(task)
        todo = {}
        for ex in examples:
            if ex.image_key not in self._checked_images:
                todo[ex.image_key] = ex.image_size
        if not todo:
            return
        problems = ds.images.check(todo)
        if problems:
            from cptbench.core.errors import DataError

            shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise DataError(f"{len(problems)} of the {len(todo)} images this command needs cannot be used "
                            f"(images looked for in {ds.images_dir}, layout: {ds.image_layout}):\n  {shown}\n"
                            f"Fix or re-download them (`cptbench data check {task.name}` lists them all), or point "
                            f"--images at the right folder. Nothing was run.")
        self._checked_images.update(todo)

    def prepare(self, jobs: Sequence[Job], write: bool = True) -> None:
        """Everything that can fail on user input, before any fit (see the module doc). ``write``:
        save new k-shot manifests (the store's writer only)."""
        self._check_device()
        for job in jobs:
            task = job.task
            job.data_fp = self.data_fingerprint(task)
            job.model_fp, job.model_path = self.model(job.model)
            setting = self.proposal_setting(job.proposals_arg)
            job.manifest = self.manifest(task, job.shots, job.seed)
            if write:
                self.store.save_or_check_manifest(job.manifest)
            train = self.train_examples(task, job.manifest, job.proposals_arg)
            self._check_images(task, [t.example for t in train])
            config_json = json.dumps(config_dict(job.config), sort_keys=True)
            job.runs = []
            for split in job.splits:
                data = self.split(task, split, job.proposals_arg)
                examples = data.examples[: self.request.limit] if self.request.limit else data.examples
                self._check_images(task, examples)
                job.runs.append(RunSpec(task.name, task.version, split, job.method_cls.name, config_json,
                                        job.model or "none", job.model_fp.digest, job.data_fp.digest, setting,
                                        job.shots, job.seed, self.request.limit, task.metric, self.request.skip_bad))

    # -- execution -----------------------------------------------------------------------------
    def run(self, jobs: Sequence[Job]) -> list[RunRecord]:
        main = self.dist.is_main
        if main:
            self.store.check_writable()
        self.prepare(jobs, write=main)
        faults.point("prepare.done")
        done = self._finished()
        new_records: list[RunRecord] = []
        for i, job in enumerate(jobs, 1):
            info = {"index": i, "total": len(jobs), "task": job.task.name, "method": job.method_cls.name,
                    "shots": job.shots, "seed": job.seed}
            if main:
                for spec in job.runs:  # a kill between recording a run and removing its partial file
                    if spec.run_id in done:
                        self.store.drop_partial(spec.run_id)
            pending = [r for r in job.runs if r.run_id not in done]
            if not pending:
                self.event("skip", info)
                continue
            locks, mine = [], []
            try:
                if main:
                    for spec in pending:
                        lock = self.store.try_lock(spec.run_id)
                        if lock is None:
                            self.busy.append(spec.run_id)
                            self.event("busy", {**info, "split": spec.split, "holder": self.store.lock_holder(spec.run_id)})
                            continue
                        locks.append(lock)
                        mine.append(spec)
                    if mine:
                        done = self.store.finished_ids()  # another process may have finished some meanwhile
                        mine = [r for r in mine if r.run_id not in done]
                mine_ids = set(self.dist.broadcast([r.run_id for r in mine]))
                mine = [r for r in pending if r.run_id in mine_ids]
                if not mine:
                    continue
                self.event("job", info)
                faults.point("job.start")
                for result in self.execute_job(job, mine, saved=self._saved_chunks):
                    if main:
                        record = self.finish(job, result)
                        if record is not None:
                            new_records.append(record)
            finally:
                for lock in locks:
                    lock.release()
        return new_records

    def _finished(self) -> set[str]:
        return set(self.dist.broadcast(sorted(self.store.finished_ids()) if self.dist.is_main else None))

    def _saved_chunks(self, spec: RunSpec) -> list[dict[str, Any]]:
        return self.dist.broadcast(self.store.partial_chunks(spec.run_id) if self.dist.is_main else None)

    def _context(self, job: Job, pending: Sequence[RunSpec]) -> MethodContext:
        task = job.task
        return MethodContext(
            model=job.model_path or job.model, device=self.device, task=task.name,
            eval_batch_size=32 if self.request.eval_batch_size == "auto" else self.request.eval_batch_size,
            progress=self.progress if self.dist.is_main else _no_progress,
            artifacts_dir=self.store.root / "artifacts" / pending[0].run_id,
            extra={**task.metric.as_context(), "shots": job.shots, "model_name": job.model,
                   "batch_size_auto": self.request.eval_batch_size == "auto"},
        )

    def _fit(self, job: Job, method: Method) -> float:
        t = time.perf_counter()
        train = self.train_examples(job.task, job.manifest, job.proposals_arg)
        images = self.dataset(job.task).images
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
        return time.perf_counter() - t

    def execute_job(self, job: Job, pending: Sequence[RunSpec], saved=None) -> Iterator["SplitResult"]:
        """Fit the job's method (once, when some split still has work) and predict each pending
        split, saving each chunk through the store (rank 0; ``saved(spec)`` gives a split's saved
        chunks, ``None``: none, nothing saved: a Ray worker). Yields one :class:`SplitResult` per
        split, in order, as soon as it is complete."""
        task = job.task
        method = job.method_cls(job.config, self._context(job, pending))
        persist = saved is not None and self.dist.is_main
        fitted = False
        for spec in pending:
            data = self.split(task, spec.split, job.proposals_arg)
            examples = data.examples[: spec.limit] if spec.limit else data.examples
            chunks = saved(spec) if saved is not None else []
            wanted = {ex.example_id for ex in examples}
            rows = {r["example_id"]: r for c in chunks for r in c["rows"] if r["example_id"] in wanted}
            remaining = [ex for ex in presentation_order(examples, task.name, spec.split) if ex.example_id not in rows]
            resumed = len(rows)
            split_fit = 0.0
            if remaining and not fitted:
                split_fit = self._fit(job, method)
                fitted = True
            fit_info = _plain(method.describe()) if fitted or not chunks else dict(chunks[-1].get("fit_info") or {})
            if remaining and job.method_cls.uses_eval_labels:
                method.set_eval_labels(data.labels)
            method.take_counters()  # what fit or an earlier split counted is not this split's
            counters = _sum_counters(c.get("counters") or {} for c in chunks)
            t_pred = time.perf_counter()
            for new, chunk_counters in self._predict_rounds(method, job, data, remaining):
                if persist:
                    faults.point("predict.chunk")
                    self.store.append_chunk(spec.run_id, new, chunk_counters, fit_info)
                    faults.point("chunk.saved")
                counters = _sum_counters([counters, chunk_counters])
                rows.update((r["example_id"], r) for r in new)
                self.progress(f"{task.name}/{spec.split}", len(rows), len(examples))
            order = {ex.example_id: i for i, ex in enumerate(examples)}
            yield SplitResult(spec, sorted(rows.values(), key=lambda r: order[r["example_id"]]), counters, fit_info,
                              split_fit, time.perf_counter() - t_pred, resumed,
                              {**_plain(method.perf_info()), "images": self.dataset(task).images.stats()},
                              dict(data.skipped))

    def _predict_rounds(self, method: Method, job: Job, data, remaining: Sequence[Example]):
        """(scored rows, counters) per saved chunk. Distributed: each rank predicts its images'
        share of a round; rank 0 receives the round's rows and counters of every rank."""
        chunk = max(1, self.request.chunk_size)
        images = self.dataset(job.task).images
        if self.dist.active:
            groups: dict[str, list[Example]] = {}
            for ex in remaining:
                groups.setdefault(ex.image_key, []).append(ex)
            shards = [[ex for g in list(groups.values())[r::self.dist.world] for ex in g] for r in range(self.dist.world)]
            per_rank = max(1, chunk // self.dist.world)
            mine = shards[self.dist.rank]
            rounds = max((len(s) + per_rank - 1) // per_rank for s in shards) if remaining else 0
        else:
            per_rank, mine = chunk, list(remaining)
            rounds = (len(mine) + chunk - 1) // chunk
        for k in range(rounds):
            batch = mine[k * per_rank:(k + 1) * per_rank]
            upcoming = mine[(k + 1) * per_rank:(k + 2) * per_rank]
            if upcoming:
                images.prefetch([ex.image_key for ex in upcoming])
            scores = method.predict(batch) if batch else []
            faults.point("predict.round")
            if len(scores) != len(batch):
                raise RuntimeError(f"method {job.method_cls.name!r} returned {len(scores)} score arrays for {len(batch)} examples")
            rows = [score_example(ex, data.labels[ex.example_id], s, job.task.metric).to_json(s)
                    for ex, s in zip(batch, scores)]
            counters = _plain(method.take_counters())
            if self.dist.active:
                gathered = self.dist.gather((rows, counters))
                if not self.dist.is_main:
                    continue
                rows = [r for part, _ in gathered for r in part]
                counters = _sum_counters(c for _, c in gathered)
            yield rows, counters

    def finish(self, job: Job, result: "SplitResult") -> RunRecord | None:
        """Finalise a split's predictions and append its record (the store's only writer)."""
        spec = result.spec
        faults.point("split.predicted")
        sha = self.store.finalize_predictions(spec.run_id, result.rows)
        faults.point("predictions.done")
        record = self._record(job, result, sha)
        written = self.store.append_record(record)
        if written:
            self.event("done", record.to_json())
        faults.point("record.done")
        self.store.drop_partial(spec.run_id)
        faults.point("partial.dropped")
        return record if written else None

    def _record(self, job: Job, result: "SplitResult", predictions_sha: str) -> RunRecord:
        from cptbench.core.provenance import git_revision, package_versions, platform_info

        spec = result.spec
        summary = summarize(result.rows)
        manifest_path = self.store.manifest_path(job.manifest.task, job.manifest.shots, job.manifest.seed)
        fit_s, pred_s = round(result.fit_seconds, 3), round(result.predict_seconds, 3)
        perf = dict(result.perf)
        if self.dist.active:
            perf["world_size"] = self.dist.world
        return RunRecord(
            run_id=spec.run_id, task=spec.task, task_version=spec.task_version, split=spec.split,
            method=spec.method, method_config=json.loads(spec.method_config), method_config_hash=spec.config_hash,
            model=spec.model, model_fingerprint=spec.model_fingerprint, data_fingerprint=spec.data_fingerprint,
            proposals=spec.proposals, shots=spec.shots, seed=spec.seed, limit=spec.limit, metric=asdict(spec.metric),
            uses_eval_labels=job.method_cls.uses_eval_labels, accuracy=summary.accuracy, n=summary.n,
            n_correct=summary.n_correct, n_invalid=summary.n_invalid, n_no_candidates=summary.n_no_candidates,
            fit_seconds=fit_s, predict_seconds=pred_s, seconds=round(fit_s + pred_s, 3),
            resumed_examples=result.resumed, manifest_sha256=job.manifest.sha256,
            manifest_path=str(manifest_path.relative_to(self.store.root)),
            predictions_path=str(self.store.predictions_path(spec.run_id).relative_to(self.store.root)),
            method_info={**result.fit_info, **result.counters}, skip_bad=spec.skip_bad, n_skipped=dict(result.skipped),
            predictions_sha256=predictions_sha, results_version=spec.results_version,
            seed_policy=str(result.fit_info.get("seed_policy", "")),
            model_source=dict(job.model_fp.source) if job.model_fp else {},
            data_source=dict(job.data_fp.source) if job.data_fp else {},
            perf=perf, task_card=job.task.path, device=self.device, versions=package_versions(),
            git_revision=git_revision(), platform=platform_info(),
            created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), command=self.request.command,
        )


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


def _sum_counters(parts) -> dict[str, Any]:
    """Key-wise sum of counter dicts (numbers add; nested dicts add key-wise)."""
    out: dict[str, Any] = {}
    for part in parts:
        for k, v in part.items():
            if isinstance(v, dict):
                out[k] = _sum_counters([out.get(k) or {}, v])
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out[k] = out.get(k, 0) + v
            else:
                out[k] = v
    return out


def _plain(obj: Any) -> Any:
    """A JSON round-trip copy (tuples become lists, numpy scalars plain numbers)."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
