"""Planning: a :class:`RunRequest` becomes frozen :class:`Job` s, and a prepared job its :class:`RunSpec` s.

A *run* is one frozen :class:`RunSpec` (task, split, method + config, the model's and the data's
content fingerprints, proposals, shots, seed, limit, data policy) with a stable id over that
content (:meth:`RunSpec.identity`: paths never enter it). Runs that share everything but the split
form a *job*: the method is fitted once on the k-shot manifest and then predicts every pending
split. :func:`plan` checks names and options and lists the jobs; the data session
(:meth:`cptbench.run.session.DataSession.prepare`) returns each job with its fingerprints, manifest
and runs filled in, as a new frozen object.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Mapping, Sequence

from cptbench.core.boxes import MetricSpec
from cptbench.core.defaults import DEFAULT_SEEDS, EVAL_BATCH_SIZE, CHUNK_SIZE
from cptbench.core.errors import UsageError
from cptbench.data.sampling import DEFAULT_SAMPLER, check_sampler
from cptbench.methods.base import Method
from cptbench.methods.options import card_method_defaults, check_scopes, config_dict, has_option, method_config
from cptbench.methods.registry import get_method_class
from cptbench.core.hashing import digest_of
from cptbench.run.fingerprint import RESULTS_VERSION, Fingerprint
from cptbench.tasks.spec import TaskSpec


@dataclass(frozen=True)
class RunRequest:
    """Everything a ``cptbench run`` (or :func:`cptbench.evaluate`) asks for.

    ``proposals`` and ``model`` default to the task card's; ``options`` maps ``key`` or
    ``method.key`` to a value, as ``--set`` does; ``precision`` (``auto``, ``fp32``, ``bf16``), when
    given, is the ``precision`` option of every method that has one; ``eval_batch_size`` is an int
    or ``"auto"``; ``chunk_size`` is the resume granularity (predictions are saved every chunk).
    """

    tasks: Sequence[TaskSpec]
    methods: Sequence[str]
    shots: Sequence[int]
    seeds: Sequence[int] = DEFAULT_SEEDS
    proposals: str | None = None  # "gt" or a detections file; None = the task card's default
    model: str | None = None  # None = the task card's default
    options: Mapping[str, Any] = field(default_factory=dict)  # "key" or "method.key" -> value
    splits: Sequence[str] | None = None  # None = the task's eval splits
    limit: int | None = None
    data_root: str | None = None
    images: str | None = None
    device: str = "cpu"
    eval_batch_size: int | str = EVAL_BATCH_SIZE  # or "auto": the largest batch the device holds
    chunk_size: int = CHUNK_SIZE  # predictions are saved every chunk (the resume granularity)
    skip_bad: bool = False  # drop degenerate boxes / expressions instead of refusing them
    strict_data: bool = False  # refuse boxes reaching past the image and zero-area boxes too (--strict-data)
    precision: str | None = None  # None: each method's own precision option (default auto)
    sampler: str = DEFAULT_SAMPLER  # the k-shot draw: cptbench | release (the CPT release's own)
    sealed: bool | None = None  # None: methods that are not part of cptbench run sealed (cptbench.run.sealed)
    threads: int | None = None  # torch CPU threads (None: $CPTBENCH_THREADS, else torch's default)
    command: str = ""  # the command line, recorded with every run (provenance)


@dataclass(frozen=True)
class RunSpec:
    """One run: what decides its result (:meth:`identity`) and its display name of the model."""

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
    method_version: int = 0  # the method's own result version (identity only when non-zero)
    sampler: str = DEFAULT_SAMPLER  # the k-shot sampler (identity only when not the default)
    #: the box policy where it matters (cptbench.data.box_policy.data_policy): "strict", "release" (the
    #: default kept boxes reaching past the image or zero-area ones), or "" (identity only when not "")
    data_policy: str = ""

    def identity(self) -> dict[str, Any]:
        """What decides the result: everything but the model's display name. Fields added later
        enter only when they differ from their default (``method_version`` 0, the default
        ``sampler``, an empty ``data_policy``), so the ids of runs made before them stay the same."""
        d = asdict(self)
        d.pop("model")
        if not self.method_version:
            d.pop("method_version")
        if self.sampler == DEFAULT_SAMPLER:
            d.pop("sampler")
        if not self.data_policy:
            d.pop("data_policy")
        return d

    @property
    def run_id(self) -> str:
        """The run's stable id: a digest of :meth:`identity`."""
        return digest_of(self.identity())

    @property
    def config_hash(self) -> str:
        """A short digest of the method config alone."""
        return digest_of(json.loads(self.method_config), 12)


@dataclass(frozen=True)
class Job:
    """Runs that share one fitted method (all eval splits of one setting).

    :func:`plan` makes it from the request alone; :meth:`cptbench.run.session.DataSession.prepare`
    returns a copy with the fingerprints, the model's local path, the k-shot manifest and the runs."""

    task: TaskSpec
    method_cls: type[Method]
    config: Any
    model: str | None
    proposals_arg: str
    shots: int
    seed: int
    splits: tuple[str, ...]
    sampler: str = DEFAULT_SAMPLER
    runs: tuple[RunSpec, ...] = ()
    model_path: str | None = None
    model_fp: Fingerprint | None = None
    data_fp: Fingerprint | None = None
    manifest: Any = None  # cptbench.data.sampling.Manifest once prepared

    @property
    def label(self) -> str:
        """``task · method · k=K · seed S`` for messages."""
        return f"{self.task.name} · {self.method_cls.name} · k={self.shots} · seed {self.seed}"

    @property
    def prepared(self) -> bool:
        """Whether the data session has filled in the runs."""
        return self.manifest is not None

    @property
    def info(self) -> dict[str, Any]:
        """The job's coordinates for events and messages."""
        return {"task": self.task.name, "method": self.method_cls.name, "shots": self.shots, "seed": self.seed}


def _request_options(request: RunRequest, cls: type[Method]) -> dict[str, Any]:
    options = dict(request.options)
    if request.precision is not None and has_option(cls, "precision"):
        options[f"{cls.name}.precision"] = request.precision
    return options


#: options of ``--set`` / study files that belong to the harness, not to a method
HARNESS_OPTIONS = ("sampler",)


def harness_options(request: RunRequest) -> tuple[dict[str, Any], str]:
    """(the method options, the sampler): an unscoped ``sampler`` option is the harness's
    ``--sampler`` (given both ways, they must agree)."""
    options = dict(request.options)
    sampler = request.sampler
    if "sampler" in options:
        given = str(options.pop("sampler"))
        if request.sampler != DEFAULT_SAMPLER and given != request.sampler:
            raise UsageError(f"--set sampler={given} disagrees with --sampler {request.sampler}; give one.")
        sampler = given
    return options, check_sampler(sampler)


def plan(request: RunRequest) -> list[Job]:
    """All jobs of a request, in a deterministic order. Raises early on unknown names/options."""
    options, sampler = harness_options(request)
    request = replace(request, options=options, sampler=sampler)
    if not request.methods:
        raise UsageError("no method given (--method)")
    if not request.shots:
        raise UsageError("no shots given (--shots, e.g. -k 0,1)")
    if not request.seeds:
        raise UsageError("no seeds given (--seeds, e.g. 0,1,2,3,4)")
    classes = [get_method_class(m) for m in dict.fromkeys(request.methods)]
    classes = list({c.name: c for c in classes}.values())
    check_scopes(request.options, classes)
    jobs: list[Job] = []
    for task in request.tasks:
        splits = tuple(request.splits) if request.splits else tuple(task.eval_splits)
        bad = [s for s in splits if s not in task.eval_splits]
        if bad:
            from cptbench.core.registry import unknown_name_message

            raise UsageError(unknown_name_message(f"eval split of task {task.name!r}:", bad[0], task.eval_splits))
        card_method_defaults(task)  # a broken card is refused even for methods not asked for
        proposals_arg = request.proposals or task.default_proposals
        for cls in classes:
            config = method_config(cls, task, _request_options(request, cls))
            model = (request.model or task.default_model) if cls.needs_model else None
            # A method that does not train gives the same result at every k: run it once, at the
            # smallest k asked for (its row is the same for every k).
            shot_list = list(request.shots) if cls.trains else [min(request.shots)]
            for shots in shot_list:
                # A deterministic method that does not train gives the same result for every seed.
                varies = cls.stochastic or (cls.trains and shots > 0)
                seeds = list(request.seeds) if varies else list(request.seeds)[:1]
                for seed in seeds:
                    # zero-shot draws nothing: its runs are the same under every sampler
                    jobs.append(Job(task, cls, config, model, proposals_arg, shots, seed, splits,
                                    sampler if shots else DEFAULT_SAMPLER))
    return jobs


def run_specs(job: Job, *, model_fp: str, data_fp: str, proposal_setting: str, limit: int | None,
              skip_bad: bool, data_policy: Mapping[str, str] | None = None) -> tuple[RunSpec, ...]:
    """The runs of ``job`` (one per split) for the given fingerprints and data policy
    (``data_policy``: split -> :attr:`RunSpec.data_policy`, "" for a split not named)."""
    task = job.task
    config_json = json.dumps(config_dict(job.config), sort_keys=True)
    return tuple(RunSpec(task.name, task.version, split, job.method_cls.name, config_json, job.model or "none",
                         model_fp, data_fp, proposal_setting, job.shots, job.seed, limit, task.metric, skip_bad,
                         method_version=int(getattr(job.method_cls, "version", 0) or 0),
                         sampler=job.sampler, data_policy=(data_policy or {}).get(split, ""))
                 for split in job.splits)


def with_runs(job: Job, **resolved: Any) -> Job:
    """A copy of ``job`` with its resolved fields (``runs``, ``model_path``, ``model_fp``,
    ``data_fp``, ``manifest``)."""
    return replace(job, **resolved)
