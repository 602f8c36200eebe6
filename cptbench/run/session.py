"""The data session: one process's view of the tasks' data, loaded once and checked before any fit.

Shared by every caller that needs task data: the run engine (local, torchrun, Ray workers),
``show``, ``data audit``, ``data download`` (the k-shot draws it fetches images for) and the Python
API. It caches datasets, detections, splits, the train split's pairs, k-shot training examples and
the content fingerprints of data and models, and it checks what a run will need:

* :meth:`DataSession.prepare` (before any fit): every task's data loads and passes the data-quality
  policy; the model of every job is found and fingerprinted; every k-shot manifest is drawn and
  agrees with the saved one; every image of the eval splits and of the k-shot training sets exists,
  decodes its header, has its annotated size and is not truncated. A problem stops the command
  here, before anything is spent. It returns the jobs with their runs (new frozen objects).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from cptbench.core.errors import DataError, ModelError
from cptbench.data.box_policy import data_policy
from cptbench.data.examples import Example, TrainExample
from cptbench.data.sampling import DEFAULT_SAMPLER, Manifest, draw_manifest
from cptbench.run.fingerprint import Fingerprint, data_fingerprint, model_fingerprint
from cptbench.run.plan import Job, run_specs, with_runs
from cptbench.tasks.spec import TaskSpec

EventFn = Callable[[str, Mapping[str, Any]], None]


def _no_event(kind: str, info: Mapping[str, Any]) -> None:
    return None


class DataSession:
    """Datasets, splits, manifests, fingerprints and checks of one process (module docstring).

    ``limit`` cuts each eval split to its first N expressions (smoke tests); ``skip_bad`` drops
    degenerate data instead of refusing it; ``strict_data`` refuses boxes reaching past the image and
    zero-area boxes too (:mod:`cptbench.data.box_policy`); ``event(kind, info)`` hears ``load`` and
    ``data``; ``datasets`` adopts datasets a caller already opened."""

    def __init__(self, data_root: str | None = None, images: str | None = None, *, skip_bad: bool = False,
                 limit: int | None = None, event: EventFn = _no_event, datasets: Mapping[str, Any] | None = None,
                 strict_data: bool = False):
        self.data_root, self.images, self.skip_bad, self.limit = data_root, images, skip_bad, limit
        self.strict_data = strict_data
        self.event = event
        self._datasets: dict[str, Any] = dict(datasets or {})  # task name -> an already opened dataset
        self._detections: dict[str, Any] = {}
        self._splits: dict[tuple[str, str, str], Any] = {}
        self._data_fps: dict[str, Fingerprint] = {}
        self._models: dict[str, tuple[Fingerprint, str | None]] = {}
        self._checked_images: set[str] = set()
        self._pairs: dict[str, list[tuple[int, int]]] = {}
        self._train: dict[tuple, list[TrainExample]] = {}
        self._train_kept: dict[tuple, dict[str, int]] = {}

    @classmethod
    def for_request(cls, request, event: EventFn = _no_event) -> "DataSession":
        """The session a :class:`~cptbench.run.plan.RunRequest` reads its data through."""
        return cls(request.data_root, request.images, skip_bad=request.skip_bad, limit=request.limit, event=event,
                   strict_data=request.strict_data)

    # -- data ----------------------------------------------------------------------------------
    def dataset(self, task: TaskSpec):
        """The task's dataset (opened once; synthref is generated on first use)."""
        if task.name not in self._datasets:
            from cptbench.data.source import open_dataset

            self.event("load", {"task": task.name})
            ds = self._datasets[task.name] = open_dataset(task, self.data_root, self.images)
            self.event("data", {"task": task.name, "root": str(ds.root), "images": str(ds.images_dir),
                                "image_layout": ds.image_layout})
        return self._datasets[task.name]

    def detections(self, arg: str):
        """The detections of a ``--proposals`` file (``None`` for ``gt``), read once."""
        if arg == "gt":
            return None
        if arg not in self._detections:
            from cptbench.data.proposals import load_detections

            self._detections[arg] = load_detections(arg)
        return self._detections[arg]

    def proposal_setting(self, arg: str) -> str:
        """``gt`` or ``det:<file>:<sha256>``: the proposal setting records name."""
        dets = self.detections(arg)
        return "gt" if dets is None else dets.setting

    def split(self, task: TaskSpec, split: str, proposals_arg: str = "gt"):
        """A split's examples and labels (whole; :meth:`eval_examples` applies the limit)."""
        key = (task.name, split, proposals_arg)
        if key not in self._splits:
            self._splits[key] = self.dataset(task).load_split(split, self.detections(proposals_arg), skip_bad=self.skip_bad,
                                                              strict=self.strict_data)
        return self._splits[key]

    def eval_examples(self, task: TaskSpec, split: str, proposals_arg: str = "gt") -> list[Example]:
        """The examples of an eval split that a run evaluates (the first ``limit`` when set)."""
        examples = self.split(task, split, proposals_arg).examples
        return list(examples[: self.limit]) if self.limit else list(examples)

    def train_pairs(self, task: TaskSpec) -> list[tuple[int, int]]:
        """The (ref_id, sent_id) pairs of the train split (read once, not once per job)."""
        if task.name not in self._pairs:
            self._pairs[task.name] = self.dataset(task).pairs(task.train_split, skip_bad=self.skip_bad,
                                                              strict=self.strict_data)
        return self._pairs[task.name]

    def manifest(self, task: TaskSpec, shots: int, seed: int, sampler: str = DEFAULT_SAMPLER) -> Manifest:
        """The k-shot draw of (task, k, seed) with ``sampler`` (:func:`cptbench.data.sampling.draw_manifest`)."""
        return draw_manifest(task, self.train_pairs(task), shots, seed, sampler)

    def train_examples(self, task: TaskSpec, manifest: Manifest, proposals_arg: str = "gt") -> list[TrainExample]:
        """The k-shot training examples of ``manifest``, with their labels, in draw order."""
        if not manifest.examples:
            return []
        key = (task.name, manifest.sha256, proposals_arg)
        if key not in self._train:
            data = self.dataset(task).load_split(task.train_split, self.detections(proposals_arg),
                                                 ref_filter=manifest.examples, skip_bad=self.skip_bad,
                                                 strict=self.strict_data)
            self._train_kept[key] = data.kept
            by_pair = {(ex.ref_id, ex.sent_id): ex for ex in data.examples}
            self._train[key] = [TrainExample(by_pair[p], data.labels[by_pair[p].example_id]) for p in manifest.examples]
        return self._train[key]

    def data_fingerprint(self, task: TaskSpec) -> Fingerprint:
        """The content fingerprint of the task's data (annotations and image list)."""
        if task.name not in self._data_fps:
            self._data_fps[task.name] = data_fingerprint(self.dataset(task))
        return self._data_fps[task.name]

    def model(self, name: str | None) -> tuple[Fingerprint, str | None]:
        """(content fingerprint, local path) of a model name (``None``: no model)."""
        key = name or "none"
        if key not in self._models:
            self._models[key] = model_fingerprint(name)
        return self._models[key]

    # -- checks --------------------------------------------------------------------------------
    def check_images(self, task: TaskSpec, examples: Sequence[Example]) -> None:
        """Refuse, before any fit, images of ``examples`` that are missing, unreadable, truncated or
        of another size than annotated (each image is checked once per session)."""
        ds = self.dataset(task)
        todo = {}
        for ex in examples:
            if ex.image_key not in self._checked_images:
                todo[ex.image_key] = ex.image_size
        if not todo:
            return
        problems = ds.images.check(todo)
        if problems:
            shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
            raise DataError(f"{len(problems)} of the {len(todo)} images this command needs cannot be used "
                            f"(images looked for in {ds.images_dir}, layout: {ds.image_layout}):\n  {shown}\n"
                            f"Fetch them again (`cptbench data download {task.name} --to {ds.root} --repair` replaces "
                            f"damaged ones; `cptbench data check {task.name}` lists them all), or point --images at the "
                            f"right folder. Nothing was run.")
        self._checked_images.update(todo)

    def prepare(self, jobs: Sequence[Job], manifests=None) -> list[Job]:
        """Everything that can fail on user input, before any fit (module docstring); the jobs with
        their runs. ``manifests``: a results store whose saved k-shot manifests new draws must equal
        (new ones are saved there; ``None``: nothing saved, e.g. a non-writing rank)."""
        out = []
        for job in jobs:
            task = job.task
            data_fp = self.data_fingerprint(task)
            model_fp, model_path = self.model(job.model)
            check_model_type(job.method_cls, job.model)
            setting = self.proposal_setting(job.proposals_arg)
            manifest = self.manifest(task, job.shots, job.seed, job.sampler)
            if manifests is not None:
                manifests.save_or_check_manifest(manifest)
            self.check_images(task, [t.example for t in self.train_examples(task, manifest, job.proposals_arg)])
            for split in job.splits:
                self.check_images(task, self.eval_examples(task, split, job.proposals_arg))
            train_kept = self._train_kept.get((task.name, manifest.sha256, job.proposals_arg), {})
            policy = {split: data_policy(self.strict_data, self.split(task, split, job.proposals_arg).kept, train_kept)
                      for split in job.splits}
            runs = run_specs(job, model_fp=model_fp.digest, data_fp=data_fp.digest, proposal_setting=setting,
                             limit=self.limit, skip_bad=self.skip_bad, data_policy=policy)
            out.append(with_runs(job, runs=runs, model_path=model_path, model_fp=model_fp, data_fp=data_fp,
                                 manifest=manifest))
        return out


def check_model_type(method_cls: type, model: str | None) -> None:
    """Refuse, before any fit, a local model folder whose ``model_type`` the method does not take
    (its ``model_types``): a run of ``cpt`` and ``clip-crop`` on one model cannot succeed, and
    should not spend the first method's jobs finding out. A hub id is not looked up here."""
    types = getattr(method_cls, "model_types", None)
    if not types or not model or not getattr(method_cls, "needs_model", False):
        return
    from cptbench.models.loading import local_model_type

    found = local_model_type(model)
    if found is not None and found not in types:
        raise ModelError(f"method {method_cls.name!r} takes {', '.join(types)} models; --model {model!r} is a "
                         f"{found!r} model. Give each model family its own run. Nothing was run.")
