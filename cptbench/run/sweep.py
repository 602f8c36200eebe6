"""Study files: a study (tasks x methods x shots x seeds, from the command line or a YAML file)
becomes a :class:`~cptbench.run.plan.RunRequest`.

A *cell* of a sweep is one job of :func:`cptbench.run.plan.plan`: one fitted method and all its
eval splits. Locally the cells run in order in this process, exactly as ``cptbench run`` would run
them (:class:`cptbench.run.engine.Runner`); on a cluster they run as Ray tasks
(:mod:`cptbench.run.ray`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from cptbench.core.defaults import DEFAULT_SEEDS, EVAL_BATCH_SIZE
from cptbench.core.errors import UsageError
from cptbench.core.values import int_list, name_list

#: keys of a study file (YAML) and what they mean; the same as `cptbench run`'s options
STUDY_KEYS = {
    "tasks": "task card names", "methods": "method names", "shots": "k values", "seeds": "seeds",
    "options": "method options (key or method.key -> value), as --set", "model": "backbone",
    "proposals": "'gt' or a detections file", "splits": "eval splits", "limit": "first N expressions per split",
    "data_root": "refer-layout data root", "images": "image folder", "device": "torch device",
    "batch_size": "evaluation batch size", "skip_bad": "drop degenerate data",
    "strict_data": "refuse boxes reaching past the image and zero-area boxes too", "results": "results folder",
    "precision": "numerics of every model method: auto, fp32 or bf16", "sampler": "k-shot draw: cptbench or release",
    "threads": "torch CPU threads (recorded in each record's perf, not part of a run's identity)",
}
#: a ``--config`` file's option names (``run`` / ``sweep`` sections) -> study keys: the one schema
OPTION_TO_STUDY = {"task": "tasks", "method": "methods", "set": "options", "sets": "options", "split": "splits",
                   "data-root": "data_root", "batch-size": "batch_size", "skip-bad": "skip_bad",
                   "strict-data": "strict_data", **{k: k for k in STUDY_KEYS}}
#: options of a command section that say how to show results, not what to run (ignored in a study)
DISPLAY_OPTIONS = ("no_leaderboard", "no-leaderboard")


@dataclass
class Study:
    """A study file's content (:data:`STUDY_KEYS`), with the CLI's defaults."""

    tasks: list[str] = field(default_factory=lambda: ["synthref"])
    methods: list[str] = field(default_factory=lambda: ["cpt"])
    shots: list[int] = field(default_factory=lambda: [1])
    seeds: list[int] = field(default_factory=lambda: list(DEFAULT_SEEDS))
    options: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    proposals: str | None = None
    splits: list[str] | None = None
    limit: int | None = None
    data_root: str | None = None
    images: str | None = None
    device: str = "cpu"
    batch_size: int = EVAL_BATCH_SIZE
    skip_bad: bool = False
    strict_data: bool = False
    results: str | None = None
    precision: str | None = None
    sampler: str = "cptbench"
    threads: int | None = None


def _ints(value: Any, key: str, file: str) -> list[int]:
    try:
        return int_list(value, f"key '{key}'")
    except UsageError as exc:
        raise UsageError(f"{file}: {exc}") from None


def load_study(path: str) -> Study:
    """A study file: a YAML mapping of :data:`STUDY_KEYS` (unknown or duplicate keys are refused)."""
    import yaml

    from cptbench.core.registry import unknown_name_message
    from cptbench.core.yamlio import StrictYamlError, load_yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = load_yaml(f.read()) or {}
    except (OSError, yaml.YAMLError, StrictYamlError) as exc:
        raise UsageError(f"{path}: cannot read the study file: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path}: a study file is a mapping of {', '.join(STUDY_KEYS)}")
    data = study_keys_of(data, path)
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
        elif key == "limit":
            value = _positive(value, key, path) if value is not None else None
        elif key == "batch_size":
            value = "auto" if str(value).strip().lower() == "auto" else _positive(value, key, path)
        elif key == "threads":
            value = _positive(value, key, path) if value is not None else None
        elif key == "precision" and value not in ("auto", "fp32", "bf16", None):
            raise UsageError(f"{path}: key 'precision' must be auto, fp32 or bf16, got {value!r}")
        elif key in ("skip_bad", "strict_data"):
            if not isinstance(value, bool):
                raise UsageError(f"{path}: key '{key}' must be true or false, got {value!r}")
        elif value is not None and not isinstance(value, str):
            raise UsageError(f"{path}: key '{key}' must be a string ({STUDY_KEYS[key]}), got {type(value).__name__} {value!r}")
        setattr(study, key, value)
    for name in study.tasks:  # a misspelt task is named with its file
        from cptbench.tasks import get_task

        try:
            get_task(name)
        except UsageError as exc:
            raise UsageError(f"{path}: key 'tasks': {exc}") from None
    return study


def study_keys_of(data: dict, path: str) -> dict:
    """A study from a file in either form of the one schema: study keys, or a ``--config`` file's
    command sections (``sweep:`` first, then ``run:``; option names as on the command line, ``set``
    as a list of KEY=VALUE) over its study keys. Sections of other commands are left out."""
    from cptbench.core.registry import unknown_name_message

    study = {k: v for k, v in data.items() if k in STUDY_KEYS}
    for key, value in data.items():
        if key not in STUDY_KEYS and not isinstance(value, dict):
            raise UsageError(f"{path}: " + unknown_name_message("study key", str(key), STUDY_KEYS))
    for section in ("run", "sweep"):  # sweep's section wins over run's
        body = data.get(section)
        if not isinstance(body, dict):
            continue
        for key, value in body.items():
            if key in DISPLAY_OPTIONS:
                continue
            if key not in OPTION_TO_STUDY:
                raise UsageError(f"{path}: section '{section}': " + unknown_name_message(
                    "option with a study key", str(key), OPTION_TO_STUDY))
            target = OPTION_TO_STUDY[key]
            if target == "options" and isinstance(value, (list, tuple, str)):
                value = _sets(value, path, section)
            study[target] = value
    return study


def _sets(values: Any, path: str, section: str) -> dict[str, Any]:
    out = {}
    for item in [values] if isinstance(values, str) else values:
        key, eq, val = str(item).partition("=")
        if not eq or not key.strip():
            raise UsageError(f"{path}: section '{section}', key 'set': expected KEY=VALUE items, got {item!r}")
        out[key.strip()] = val.strip()
    return out


def _positive(value: Any, key: str, file: str) -> int:
    """A whole number >= 1 of a study file (``limit: 0`` would silently mean the whole split)."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() or int(value) < 1:
        raise UsageError(f"{file}: key '{key}' must be a whole number >= 1, got {value!r}")
    return int(value)


def study_request(study: Study, **overrides: Any):
    """The request of ``study`` with the non-``None`` ``overrides`` (command-line options) applied."""
    from cptbench.run.plan import RunRequest
    from cptbench.tasks import get_task

    command = overrides.pop("command", "")
    s = replace(study, **{k: v for k, v in overrides.items() if v is not None})
    return RunRequest(tasks=[get_task(t) for t in s.tasks], methods=s.methods, shots=s.shots, seeds=s.seeds,
                      proposals=s.proposals, model=s.model, options=s.options, splits=s.splits, limit=s.limit,
                      data_root=s.data_root, images=s.images, device=s.device, eval_batch_size=s.batch_size,
                      skip_bad=s.skip_bad, strict_data=s.strict_data, precision=s.precision, sampler=s.sampler,
                      threads=s.threads, command=command)
