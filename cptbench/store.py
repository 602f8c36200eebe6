"""The results store: an append-only, resumable folder of JSON lines.

Layout of ``<results>/``::

    runs.jsonl                         one JSON record per finished run (append-only)
    predictions/<run_id>.jsonl         per-example predictions of a finished run
    predictions/<run_id>.partial.jsonl predictions of a run in progress (resume point)
    splits/<task>/k<k>_s<seed>.json    k-shot manifests: {"examples": [{ref_id, sent_id}], "sha256", ...}
    leaderboard.csv, leaderboard_wide.csv, leaderboard.md   rebuilt from runs.jsonl alone

Crash safety: a record line is written with one ``write`` under an exclusive lock and fsynced; a torn
last line (a kill mid-write) is cut off before the next append and ignored by readers; a run appears
in ``runs.jsonl`` only after its predictions file is complete. Partial predictions are appended in
chunks, so an interrupted run resumes from its last complete chunk.
"""

from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from .sampling import Manifest


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _repair_tail(path: Path) -> None:
    """Cut a torn (newline-less) last line left by an interrupted write."""
    if not path.exists():
        return
    with open(path, "rb+") as f:
        size = f.seek(0, os.SEEK_END)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        data = f.seek(0) or f.read()
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Append rows as JSON lines, all in one write, under a lock, fsynced."""
    payload = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in rows).encode()
    if not payload:
        return
    with _locked(path):
        _append_unlocked(path, payload)


def _append_unlocked(path: Path, payload: bytes) -> None:
    _repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of ``path`` ([] if missing); a torn last line is ignored."""
    if not path.exists():
        return []
    rows = []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    complete = lines[:-1]  # the piece after the last newline is empty or torn
    for i, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: line {i} is not valid JSON ({exc}); this file is append-only, so the line was edited by hand. Fix or delete that line.") from exc
    return rows


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    @property
    def runs_path(self) -> Path:
        return self.root / "runs.jsonl"

    def records(self) -> list[dict[str, Any]]:
        """Finished run records, first one kept where a run id appears twice."""
        seen: set[str] = set()
        out = []
        for rec in read_jsonl(self.runs_path):
            if rec.get("run_id") in seen:
                continue
            seen.add(rec.get("run_id"))
            out.append(rec)
        return out

    def finished_ids(self) -> set[str]:
        return {r["run_id"] for r in self.records()}

    def append_record(self, record: dict[str, Any]) -> bool:
        """Append unless a record with the same run id exists; returns whether it was written."""
        with _locked(self.runs_path):
            _repair_tail(self.runs_path)
            if record["run_id"] in {r.get("run_id") for r in read_jsonl(self.runs_path)}:
                return False
            _append_unlocked(self.runs_path, (json.dumps(record, sort_keys=True) + "\n").encode())
        return True

    # -- predictions ---------------------------------------------------------------------------
    def predictions_path(self, run_id: str, partial: bool = False) -> Path:
        return self.root / "predictions" / (f"{run_id}.partial.jsonl" if partial else f"{run_id}.jsonl")

    def partial_predictions(self, run_id: str) -> dict[str, dict[str, Any]]:
        return {r["example_id"]: r for r in read_jsonl(self.predictions_path(run_id, partial=True))}

    def append_partial(self, run_id: str, rows: list[dict[str, Any]]) -> None:
        append_jsonl(self.predictions_path(run_id, partial=True), rows)

    def finalize_predictions(self, run_id: str, rows: list[dict[str, Any]]) -> Path:
        path = self.predictions_path(run_id)
        write_atomic(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
        return path

    def drop_partial(self, run_id: str) -> None:
        p = self.predictions_path(run_id, partial=True)
        p.unlink(missing_ok=True)
        p.with_name(p.name + ".lock").unlink(missing_ok=True)

    # -- manifests -----------------------------------------------------------------------------
    def manifest_path(self, task: str, shots: int, seed: int) -> Path:
        return self.root / "splits" / task / f"k{shots}_s{seed}.json"

    def save_or_check_manifest(self, manifest: Manifest) -> Path:
        """Save a new manifest; if one exists, it must be identical (else the data changed)."""
        path = self.manifest_path(manifest.task, manifest.shots, manifest.seed)
        if path.exists():
            try:
                old = Manifest.from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: unreadable k-shot manifest ({exc}); delete it to re-sample.") from exc
            if old.sha256 != manifest.sha256:
                raise ValueError(
                    f"{path}: the saved k-shot manifest (sha256 {old.sha256[:12]}) differs from a fresh draw "
                    f"({manifest.sha256[:12]}): the train split changed. Use a new --results folder, or delete the "
                    f"manifest and the runs that used it."
                )
            return path
        write_atomic(path, (json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n").encode())
        return path
