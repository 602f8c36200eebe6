"""The run record: one typed, versioned, validated line of ``runs.jsonl`` per finished run.

Schema 2 (this version) adds the content fingerprints of the model and the data, the data-quality
policy, per-split method facts and a ``perf`` section. Records written before it (schema 1, no
``schema_version`` key) still read: their fingerprints read as ``"unknown"``, so they are never
taken for a run of today's identity and never grouped with one.

Timings name what they time: ``load_seconds`` is importing torch / transformers and loading the
model (once per process and model, carried by the run during which it happened), ``fit_seconds``
the job's fit without loading (carried by the first run of the job that needed it; the other
splits of the job carry 0), ``predict_seconds`` this split's ``predict`` calls alone without
loading; ``seconds = load_seconds + fit_seconds + predict_seconds``, so summing ``seconds`` over
records gives the time spent in methods. Older records have no ``load_seconds`` (0): there, the
loading is inside ``fit_seconds`` or ``predict_seconds``.

Resume guarantee: a run resumed after a kill has a record equal to an uninterrupted one in every
field except :data:`VOLATILE_FIELDS` (timings, ``resumed_examples``, ``perf``, ``created_at``, and
the host facts).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

from cptbench.core.errors import ResultsError

SCHEMA_VERSION = 2

#: fields that may differ between a resumed run and an uninterrupted one
VOLATILE_FIELDS = ("fit_seconds", "predict_seconds", "seconds", "load_seconds", "resumed_examples", "perf", "created_at",
                   "device", "platform", "git_revision", "versions", "command")


class RecordError(ResultsError):
    """A ``runs.jsonl`` line that is not a valid record; the message names the file and line."""


@dataclass(frozen=True)
class RunRecord:
    """One finished run (one split of one job): its identity, setting, result, timings and
    provenance. Read with :meth:`from_json`, written with :func:`dumps`."""

    run_id: str
    task: str
    task_version: int
    split: str
    method: str
    method_config: Mapping[str, Any]
    method_config_hash: str
    model: str
    model_fingerprint: str
    data_fingerprint: str
    proposals: str
    shots: int
    seed: int
    limit: int | None
    metric: Mapping[str, Any]
    uses_eval_labels: bool
    accuracy: float
    n: int
    n_correct: int
    n_invalid: int
    n_no_candidates: int
    fit_seconds: float
    predict_seconds: float
    seconds: float
    resumed_examples: int
    manifest_sha256: str
    manifest_path: str
    predictions_path: str
    method_info: Mapping[str, Any]
    schema_version: int = SCHEMA_VERSION
    skip_bad: bool = False
    n_skipped: Mapping[str, int] = field(default_factory=dict)
    predictions_sha256: str = ""
    results_version: int = 0
    seed_policy: str = ""
    model_source: Mapping[str, Any] = field(default_factory=dict)
    data_source: Mapping[str, Any] = field(default_factory=dict)
    perf: Mapping[str, Any] = field(default_factory=dict)
    task_card: str = ""
    device: str = ""
    versions: Mapping[str, Any] = field(default_factory=dict)
    git_revision: str = ""
    platform: Mapping[str, Any] = field(default_factory=dict)
    created_at: str = ""
    #: the command line that computed this run, as launched (a resumed run: the resuming one)
    command: str = ""
    #: the method's own result version (0 for methods that never changed their results)
    method_version: int = 0
    #: the numerics the method ran under: ``fp32`` or ``bf16`` (autocast); empty in older records
    precision: str = ""
    #: the k-shot sampler of the manifest (``cptbench`` or ``release``)
    sampler: str = "cptbench"
    #: the method ran sealed: in its own process, without evaluation labels or paths to them
    sealed: bool = False
    #: importing torch / transformers and loading the model, counted where it happened (once per
    #: process and model); ``seconds = load_seconds + fit_seconds + predict_seconds``
    load_seconds: float = 0.0
    #: the box policy where it mattered: ``strict`` (--strict-data), ``release`` (boxes reaching past
    #: the image or of zero area were kept), "" (the default, on data without such boxes)
    data_policy: str = ""
    #: boxes the default policy kept, by kind (``candidates_outside``, ``candidates_zero_area``,
    #: ``targets_outside``, ``targets_zero_area``; kinds with none left out)
    n_kept: Mapping[str, int] = field(default_factory=dict)

    @property
    def strict_data(self) -> bool:
        """Whether the run refused boxes reaching past the image and zero-area boxes (--strict-data)."""
        return self.data_policy == "strict"

    def to_json(self) -> dict[str, Any]:
        """Every field as plain JSON values (mappings as dicts, tuples as lists)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def __getitem__(self, key: str) -> Any:
        """Mapping-style read access (``rec["accuracy"]``), for scripts written against schema 1."""
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def get(self, key: str, default: Any = None) -> Any:
        """Mapping-style ``get``, for scripts written against schema 1."""
        return getattr(self, key, default)

    def stable_view(self) -> dict[str, Any]:
        """The record without :data:`VOLATILE_FIELDS` (what a resumed run must reproduce)."""
        d = self.to_json()
        for k in VOLATILE_FIELDS:
            d.pop(k, None)
        return d

    def same_result(self, other: "RunRecord") -> bool:
        """Whether ``other`` has the same accuracy and counts (NaN equals NaN) and, where both
        record one, the same predictions hash."""
        keys = ("accuracy", "n", "n_correct", "n_invalid", "n_no_candidates")
        a, b = self.to_json(), other.to_json()
        same = all(_eq(a[k], b[k]) for k in keys)
        if self.predictions_sha256 and other.predictions_sha256:
            same = same and self.predictions_sha256 == other.predictions_sha256
        return same

    @classmethod
    def from_json(cls, data: Any, where: str = "record") -> "RunRecord":
        """A validated record from a parsed ``runs.jsonl`` line (schema 1 upgraded); a
        :class:`RecordError` naming ``where`` otherwise. Unknown keys are ignored."""
        if not isinstance(data, Mapping):
            raise RecordError(f"{where}: a run record is a JSON object, got {type(data).__name__}.")
        data = dict(data)
        version = data.get("schema_version", 1)
        if not isinstance(version, int) or version < 1:
            raise RecordError(f"{where}: schema_version {version!r} is not a positive integer.")
        if version > SCHEMA_VERSION:
            raise RecordError(f"{where}: written by a newer cptbench (record schema {version}, this one reads up to "
                              f"{SCHEMA_VERSION}); upgrade cptbench to read this results folder.")
        if version == 1:
            data = _upgrade_v1(data)
        names = {f.name: f for f in dataclasses.fields(cls)}
        required = [n for n, f in names.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise RecordError(f"{where}: run record lacks {', '.join(missing)}; the line was edited or cut. "
                              f"Delete that line (its run is then computed again).")
        kwargs = {k: v for k, v in data.items() if k in names}
        _check_types(kwargs, where)
        _check_numbers(kwargs, where)
        kwargs["schema_version"] = SCHEMA_VERSION
        return cls(**kwargs)


_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "task": (str,), "task_version": (int,), "split": (str,), "method": (str,),
    "method_config": (dict,), "method_config_hash": (str,), "model": (str,), "model_fingerprint": (str,),
    "data_fingerprint": (str,), "proposals": (str,), "shots": (int,), "seed": (int,), "limit": (int, type(None)),
    "metric": (dict,), "uses_eval_labels": (bool,), "accuracy": (int, float, type(None)), "n": (int,),
    "n_correct": (int,), "n_invalid": (int,), "n_no_candidates": (int,), "fit_seconds": (int, float),
    "predict_seconds": (int, float), "seconds": (int, float), "resumed_examples": (int,),
    "manifest_sha256": (str,), "manifest_path": (str,), "predictions_path": (str,), "method_info": (dict,),
    "skip_bad": (bool,), "n_skipped": (dict,), "predictions_sha256": (str,), "results_version": (int,),
    "method_version": (int,), "precision": (str,), "sampler": (str,), "sealed": (bool,), "load_seconds": (int, float), "data_policy": (str,),
    "n_kept": (dict,),
}


def _check_types(kwargs: dict[str, Any], where: str) -> None:
    for key, types in _TYPES.items():
        if key not in kwargs:
            continue
        v = kwargs[key]
        bad = not isinstance(v, types) or (isinstance(v, bool) and bool not in types)
        if bad:
            raise RecordError(f"{where}: field {key!r} is {type(v).__name__} {v!r}, expected "
                              f"{' or '.join(t.__name__ for t in types)}. Delete or repair that line.")
    if kwargs.get("accuracy") is None:
        kwargs["accuracy"] = float("nan")


def _check_numbers(kw: dict[str, Any], where: str) -> None:
    """Refuse a record whose numbers cannot all be true: counts below 0 or above ``n``, an accuracy
    outside 0-100 or other than ``100 * n_correct / n``, a non-finite or negative time."""
    def bad(what: str) -> RecordError:
        return RecordError(f"{where}: {what}; the numbers of this record cannot all be true (the line was edited). "
                           f"Delete that line (its run is then computed again).")

    n = kw["n"]
    counts = {k: kw[k] for k in ("n", "n_correct", "n_invalid", "n_no_candidates", "resumed_examples") if k in kw}
    for key, value in counts.items():
        if value < 0:
            raise bad(f"{key} is {value}, below 0")
        if key != "n" and key != "resumed_examples" and value > n:
            raise bad(f"{key} is {value}, more than n = {n}")
    if kw["n_correct"] + kw["n_invalid"] + kw["n_no_candidates"] > n:
        raise bad(f"n_correct + n_invalid + n_no_candidates = "
                  f"{kw['n_correct'] + kw['n_invalid'] + kw['n_no_candidates']} exceeds n = {n}")
    acc = kw["accuracy"]
    if n == 0:
        if not (isinstance(acc, float) and math.isnan(acc)):
            raise bad(f"accuracy is {acc!r} for a split of 0 expressions (it must be empty)")
    elif not math.isfinite(acc) or not 0.0 <= acc <= 100.0:
        raise bad(f"accuracy is {acc!r}, not a percentage")
    elif abs(acc - 100.0 * kw["n_correct"] / n) > 1e-6:
        raise bad(f"accuracy is {acc!r} but n_correct / n = {kw['n_correct']} / {n} = {100.0 * kw['n_correct'] / n:.6g}%")
    for key in ("fit_seconds", "predict_seconds", "seconds", "load_seconds"):
        value = kw.get(key)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise bad(f"{key} is {value!r}")
    if kw["shots"] < 0:
        raise bad(f"shots is {kw['shots']}")


def _upgrade_v1(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    out.setdefault("model_fingerprint", "unknown")
    out.setdefault("data_fingerprint", "unknown")
    out.setdefault("fit_seconds", 0.0)
    out.setdefault("predict_seconds", float(out.get("seconds", 0.0) or 0.0))
    out.setdefault("resumed_examples", 0)
    out.setdefault("n_no_candidates", 0)
    out.setdefault("method_info", {})
    out.setdefault("manifest_path", "")
    out.setdefault("predictions_path", "")
    return out


def _eq(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def _plain(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def dumps(record: RunRecord) -> str:
    """``record`` as one ``runs.jsonl`` line (sorted keys, no newline)."""
    return json.dumps(record.to_json(), sort_keys=True, allow_nan=True)
