"""The one owner of the results folder's layout: every path under ``<results>/`` is composed here.

::

    runs.jsonl                          one typed record per finished run (append-only)
    runs.deleted.jsonl                  records moved aside by ``cptbench runs --delete``
    predictions/<run_id>.jsonl          per-example predictions of a finished run
    predictions/<run_id>.partial.jsonl  a run in progress: one line per saved chunk (the resume point)
    deleted/predictions/                predictions files of deleted runs
    splits/<task>/k<k>_s<seed>.json     k-shot manifests (``k<k>_s<seed>_release.json``: the release's sampler)
    locks/<run_id>.lock                 held (flock) by the process computing that run
    artifacts/<run_id>/                 what a method saves when asked (tuned weights)
    leaderboard.csv, leaderboard_wide.csv, leaderboard.md   rebuilt from runs.jsonl alone
    audits/<task>/<proposals>.json      ``cptbench data audit``'s report (the report's blind ceilings)
    report.html                         ``cptbench report``'s default output
    plots/                              ``cptbench plot``'s default output folder

Paths read back from records (``predictions_path``, ``manifest_path``) are resolved with
:meth:`ResultsLayout.inside`, which refuses any path that leaves the folder.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from cptbench.core.errors import ResultsError

#: the results folder of every command (``--results``), unless $CPTBENCH_RESULTS says otherwise
RESULTS_ENV = "CPTBENCH_RESULTS"
DEFAULT_RESULTS_DIR = "cptbench-results"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def default_results_dir() -> str:
    """``$CPTBENCH_RESULTS`` or ``./cptbench-results``."""
    return os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS_DIR


def safe_component(name: str, what: str) -> str:
    """``name`` if it can be one path component (no separators, not ``.`` or ``..``, no leading dot),
    else a :class:`ResultsError` naming it: task names and run ids become file names."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or name in (".", ".."):
        raise ResultsError(f"{what} {name!r} cannot name a file in the results folder (letters, digits, '.', '_', "
                           f"'+', '-' only, not starting with a dot); rename it.")
    return name


@dataclass(frozen=True)
class ResultsLayout:
    """Where each kind of file lives under ``root`` (nothing is created here)."""

    root: Path

    def __init__(self, root: str | os.PathLike):
        object.__setattr__(self, "root", Path(root))

    # -- records -------------------------------------------------------------------------------
    @property
    def runs(self) -> Path:
        """``runs.jsonl``: one record per finished run."""
        return self.root / "runs.jsonl"

    @property
    def deleted_runs(self) -> Path:
        """``runs.deleted.jsonl``: records moved aside (appending a line back restores it)."""
        return self.root / "runs.deleted.jsonl"

    # -- predictions -----------------------------------------------------------------------------
    @property
    def predictions_dir(self) -> Path:
        """The folder of per-run predictions files."""
        return self.root / "predictions"

    def predictions(self, run_id: str, partial: bool = False) -> Path:
        """A run's predictions file (``partial``: its resume file while in progress)."""
        safe_component(run_id, "run id")
        return self.predictions_dir / (f"{run_id}.partial.jsonl" if partial else f"{run_id}.jsonl")

    @property
    def deleted_predictions_dir(self) -> Path:
        """Where ``runs --delete`` moves the predictions files of deleted runs."""
        return self.root / "deleted" / "predictions"

    # -- manifests, locks, artifacts -------------------------------------------------------------
    def manifest(self, task: str, shots: int, seed: int, sampler: str = "cptbench") -> Path:
        """The k-shot manifest of (task, k, seed) (a non-default sampler's beside it, ``_<sampler>``)."""
        suffix = "" if sampler == "cptbench" else f"_{safe_component(sampler, 'sampler')}"
        return self.root / "splits" / safe_component(task, "task name") / f"k{int(shots)}_s{int(seed)}{suffix}.json"

    def lock(self, run_id: str) -> Path:
        """The lock file of a run (held while a process computes it)."""
        return self.root / "locks" / f"{safe_component(run_id, 'run id')}.lock"

    def artifacts(self, run_id: str) -> Path:
        """Where a method saves what it is asked to keep for a run (tuned weights)."""
        return self.root / "artifacts" / safe_component(run_id, "run id")

    #: sub-folders that must be folders for the store to write (checked before a run)
    WRITABLE_DIRS = ("", "predictions", "splits", "locks")

    # -- derived files -----------------------------------------------------------------------------
    @property
    def leaderboards(self) -> dict[str, Path]:
        """The leaderboard files rebuilt from ``runs.jsonl``: ``long`` (CSV), ``wide`` (CSV), ``markdown``."""
        return {"long": self.root / "leaderboard.csv", "wide": self.root / "leaderboard_wide.csv",
                "markdown": self.root / "leaderboard.md"}

    def audit(self, task: str, proposals: str) -> Path:
        """The stored shortcut audit of ``task`` with ``proposals`` (``gt`` or a detections setting)."""
        import hashlib

        slug = "gt" if proposals == "gt" else "det-" + hashlib.sha256(proposals.encode()).hexdigest()[:12]
        return self.root / "audits" / safe_component(task, "task name") / f"{slug}.json"

    @property
    def audits_dir(self) -> Path:
        """The folder of stored shortcut audits."""
        return self.root / "audits"

    @property
    def report(self) -> Path:
        """``cptbench report``'s default output."""
        return self.root / "report.html"

    @property
    def plots(self) -> Path:
        """``cptbench plot``'s default output folder."""
        return self.root / "plots"

    def show(self, task: str, ref_id: int, sent_id: int) -> Path:
        """``cptbench show``'s default output folder for one expression."""
        return self.root / "show" / f"{safe_component(task, 'task name')}-{int(ref_id)}-{int(sent_id)}"

    def relative(self, path: Path) -> str:
        """``path`` relative to the root, as records store it."""
        return str(Path(path).relative_to(self.root))

    def inside(self, relative: str, what: str) -> Path:
        """The path a record names (relative to the root), refused with a :class:`ResultsError` when
        it is absolute or leaves the results folder (``../elsewhere.jsonl``)."""
        rel = Path(str(relative))
        resolved_root = self.root.resolve()
        target = (self.root / rel).resolve()
        if rel.is_absolute() or (target != resolved_root and resolved_root not in target.parents):
            raise ResultsError(f"{self.runs}: {what} {str(relative)!r} points outside the results folder {self.root}; "
                               f"a record may only name files inside it. Repair or delete that record.")
        return self.root / rel
