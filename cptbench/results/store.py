"""The results store: an append-only, resumable folder of JSON lines.

The folder's layout is :class:`~cptbench.results.layout.ResultsLayout`'s (every path is composed
there).

Crash safety: a record line is written with one ``write`` under an exclusive lock and fsynced; a torn
last line (a kill mid-write) is cut off before the next append and ignored by readers; a run appears
in ``runs.jsonl`` only after its predictions file is complete. Partial predictions are appended one
chunk per line (its rows, the method's counters for those rows and its fit facts), so a kill loses
at most the chunk being written, never part of one.

Concurrency: a process computes a run only while it holds that run's lock (``flock`` on
``locks/<run_id>.lock``, non-blocking: a run locked by another process is skipped and reported);
the lock file names the holder (host, pid, start). The lock holder alone writes the run's partial
predictions, finalises its predictions file and appends its record. Two records with one run id
and different results are an error naming both lines.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator

from cptbench.core import faults
from cptbench.core.errors import ResultsError
from cptbench.core.files import write_atomic
from cptbench.results.layout import ResultsLayout
from cptbench.results.records import RecordError, RunRecord, dumps
from cptbench.data.sampling import Manifest


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


def append_jsonl(path: Path, rows: Iterable[dict[str, Any]], torn_point: str = "") -> None:
    """Append rows as JSON lines, all in one write, under a lock, fsynced."""
    payload = "".join(json.dumps(r, sort_keys=True, allow_nan=True) + "\n" for r in rows).encode()
    if not payload:
        return
    with _locked(path):
        _append_unlocked(path, payload, torn_point)


def _append_unlocked(path: Path, payload: bytes, torn_point: str = "") -> None:
    _repair_tail(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if torn_point and faults.armed(torn_point):
            os.write(fd, payload[: len(payload) // 2])
            os.fsync(fd)
            faults.die()
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: Path, with_lines: bool = False) -> list[Any]:
    """Complete JSON lines of ``path`` ([] if missing); a torn last line is ignored.
    ``with_lines``: (line number, row) pairs."""
    if not path.exists():
        return []
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: cannot read ({exc}).") from exc
    lines = text.split("\n")
    complete = lines[:-1]  # the piece after the last newline is empty or torn
    for i, line in enumerate(complete, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise RecordError(f"{path}: line {i} is not valid JSON ({exc}); this file is append-only, so the line was edited by hand. Fix or delete that line.") from exc
        rows.append((i, row) if with_lines else row)
    return rows


class ResultsStore:
    """Reads and writes a results folder (append-only records, chunked predictions, manifests,
    run locks); see the module docstring for its crash-safety and concurrency rules."""

    def __init__(self, root: str | Path):
        self.layout = ResultsLayout(root)
        self.root = self.layout.root

    @property
    def runs_path(self) -> Path:
        """``runs.jsonl``."""
        return self.layout.runs

    def check_writable(self) -> None:
        """Refuse, with the path and the fix, a results folder this process cannot write."""
        for sub in self.layout.WRITABLE_DIRS:
            d = self.root / sub if sub else self.root
            if d.exists() and not d.is_dir():
                raise ResultsError(f"{d}: exists but is not a folder; the results folder needs it as a folder. "
                                   f"Move that file away or pick another --results folder.")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise ResultsError(f"{self.root}: cannot write to the results folder ({exc.strerror or exc}); "
                               f"pick another --results folder or fix its permissions.") from exc

    def records(self) -> list[RunRecord]:
        """Finished run records, validated. An exact repeat of a run id is dropped; a repeat with
        a different result is an error naming both lines."""
        seen: dict[str, tuple[int, RunRecord]] = {}
        out = []
        for line, raw in read_jsonl(self.runs_path, with_lines=True):
            rec = RunRecord.from_json(raw, f"{self.runs_path}: line {line}")
            first = seen.get(rec.run_id)
            if first is not None:
                if not first[1].same_result(rec):
                    raise RecordError(
                        f"{self.runs_path}: lines {first[0]} and {line} are both run {rec.run_id} with different results "
                        f"({first[1].accuracy:.4g}% vs {rec.accuracy:.4g}%); delete the wrong line (or both, to compute it again).")
                continue
            seen[rec.run_id] = (line, rec)
            out.append(rec)
        return out

    def finished_ids(self) -> set[str]:
        """The run ids of :meth:`records`."""
        return {r.run_id for r in self.records()}

    def append_record(self, record: RunRecord) -> bool:
        """Append unless a record with the same run id exists; returns whether it was written."""
        with _locked(self.runs_path):
            _repair_tail(self.runs_path)
            if record.run_id in {r.get("run_id") for r in read_jsonl(self.runs_path)}:
                return False
            _append_unlocked(self.runs_path, (dumps(record) + "\n").encode(), "record.torn")
        return True

    def move_records(self, run_ids: Iterable[str], aside: Path) -> list[str]:
        """Move the lines of ``run_ids`` from ``runs.jsonl`` to the end of ``aside`` (same format,
        so appending them back restores them), under the store's lock: appended and fsynced there
        first, then ``runs.jsonl`` rewritten atomically without them (a crash in between leaves a
        copy in both files, never in neither). Returns the moved lines."""
        ids = set(run_ids)
        with _locked(self.runs_path):
            _repair_tail(self.runs_path)
            if not self.runs_path.exists():
                return []
            lines = self.runs_path.read_text(encoding="utf-8").splitlines(keepends=True)
            hit = [bool(ln.strip()) and json.loads(ln).get("run_id") in ids for ln in lines]
            moved = [ln for ln, h in zip(lines, hit) if h]
            if moved:
                with _locked(aside):
                    _append_unlocked(aside, "".join(moved).encode())
                write_atomic(self.runs_path, "".join(ln for ln, h in zip(lines, hit) if not h).encode())
        return moved

    def restore_records(self, run_ids: Iterable[str], aside: Path) -> list[str]:
        """The reverse of :meth:`move_records`: move the lines of ``run_ids`` from ``aside`` back to
        the end of ``runs.jsonl`` (under both locks, ``runs.jsonl``'s first, as a move takes them:
        appended and fsynced there first, then ``aside`` rewritten without them). A run that is in
        ``runs.jsonl`` again (computed anew since) is not restored. Returns the restored lines."""
        ids = set(run_ids)
        with _locked(self.runs_path):
            _repair_tail(self.runs_path)
            present = {r.get("run_id") for r in read_jsonl(self.runs_path)}
            with _locked(aside):
                _repair_tail(aside)
                if not aside.exists():
                    return []
                lines = aside.read_text(encoding="utf-8").splitlines(keepends=True)
                hit = [bool(ln.strip()) and json.loads(ln).get("run_id") in ids - present for ln in lines]
                back = [ln for ln, h in zip(lines, hit) if h]
                if back:
                    _append_unlocked(self.runs_path, "".join(back).encode())
                    write_atomic(aside, "".join(ln for ln, h in zip(lines, hit) if not h).encode())
        return back

    # -- run locks -----------------------------------------------------------------------------
    def lock_path(self, run_id: str) -> Path:
        """The run's lock file."""
        return self.layout.lock(run_id)

    def try_lock(self, run_id: str) -> "RunLock | None":
        """The run's lock if no other process holds it (non-blocking), else ``None``."""
        path = self.lock_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        info = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(info).encode())
        faults.point("lock.taken")
        return RunLock(path, fd)

    def lock_holder(self, run_id: str) -> str:
        """Who holds the run's lock, as its lock file says (``pid ... on host since ...``)."""
        try:
            info = json.loads(self.lock_path(run_id).read_text() or "{}")
            return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"
        except (OSError, ValueError):
            return "another process"

    # -- predictions ---------------------------------------------------------------------------
    def predictions_path(self, run_id: str, partial: bool = False) -> Path:
        """The run's predictions file (``partial``: its resume file)."""
        return self.layout.predictions(run_id, partial)

    def partial_chunks(self, run_id: str) -> list[dict[str, Any]]:
        """Saved chunks of a run in progress: ``{"rows": [...], "counters": {...}, "fit_info": {...}}``."""
        chunks = []
        for c in read_jsonl(self.predictions_path(run_id, partial=True)):
            if isinstance(c, dict) and isinstance(c.get("rows"), list):
                chunks.append(c)
        return chunks

    def append_chunk(self, run_id: str, rows: list[dict[str, Any]], counters: dict[str, Any], fit_info: dict[str, Any]) -> None:
        """One chunk as one line: a kill keeps all of it or none of it."""
        append_jsonl(self.predictions_path(run_id, partial=True), [{"rows": rows, "counters": counters, "fit_info": fit_info}],
                     torn_point="chunk.torn")

    def finalize_predictions(self, run_id: str, rows: list[dict[str, Any]]) -> str:
        """Write the run's predictions file atomically; returns its sha256."""
        path = self.predictions_path(run_id)
        data = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode()
        write_atomic(path, data, kill_point="predictions.tmp")
        return hashlib.sha256(data).hexdigest()

    def read_predictions(self, rec: RunRecord) -> list[dict[str, Any]]:
        """The verified per-example rows of a finished run: its ``predictions_path`` must lie inside
        the results folder and the file's sha256 must equal the record's ``predictions_sha256``
        (an edited or swapped file is refused, naming both files); its rows must be the record's
        ``n`` and ``n_correct``."""
        path = self.layout.inside(rec.predictions_path, "predictions_path")
        what = f"run {rec.run_id} ({rec.method} k={rec.shots} seed {rec.seed} {rec.split})"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ResultsError(f"{path}: predictions file of {what} is missing; restore it, or delete the run "
                               f"(`cptbench runs --run-id {rec.run_id[:8]} --delete`) and run it again.") from None
        except OSError as exc:
            raise ResultsError(f"{path}: cannot read the predictions of {what} ({exc}).") from exc
        if rec.predictions_sha256 and hashlib.sha256(data).hexdigest() != rec.predictions_sha256:
            raise ResultsError(f"{path}: its sha256 is not the one {self.runs_path} records for {what} "
                               f"({rec.predictions_sha256[:12]}...): the predictions file was changed after the run. "
                               f"Restore it, or delete the run (`cptbench runs --run-id {rec.run_id[:8]} --delete`) and "
                               f"run it again.")
        rows = read_jsonl(path)
        correct = sum(1 for r in rows if isinstance(r, dict) and r.get("correct") is True)
        if len(rows) != rec.n or correct != rec.n_correct:
            raise ResultsError(f"{path}: {len(rows)} rows, {correct} correct, but {self.runs_path} records n = {rec.n}, "
                               f"n_correct = {rec.n_correct} for {what}; delete the run and run it again.")
        return rows

    def drop_partial(self, run_id: str) -> None:
        """Delete the run's resume file and the append lock beside it (once the run is recorded)."""
        p = self.predictions_path(run_id, partial=True)
        p.unlink(missing_ok=True)
        p.with_name(p.name + ".lock").unlink(missing_ok=True)

    # -- manifests -----------------------------------------------------------------------------
    def manifest_path(self, task: str, shots: int, seed: int, sampler: str = "cptbench") -> Path:
        """The k-shot manifest file of (task, k, seed, sampler)."""
        return self.layout.manifest(task, shots, seed, sampler)

    def save_or_check_manifest(self, manifest: Manifest) -> Path:
        """Save a new manifest; if one exists, it must be identical (else the data changed)."""
        path = self.manifest_path(manifest.task, manifest.shots, manifest.seed, manifest.sampler)
        if path.exists():
            try:
                old = Manifest.from_json(json.loads(path.read_text()))
            except (ValueError, KeyError, TypeError, json.JSONDecodeError) as exc:
                raise ResultsError(f"{path}: unreadable k-shot manifest ({exc}); delete it to re-sample.") from exc
            if old.sha256 != manifest.sha256:
                raise ResultsError(
                    f"{path}: the saved k-shot manifest (sha256 {old.sha256[:12]}) differs from a fresh draw "
                    f"({manifest.sha256[:12]}): the train split changed. Use a new --results folder, or delete the "
                    f"manifest and the runs that used it."
                )
            return path
        write_atomic(path, (json.dumps(manifest.to_json(), indent=1, sort_keys=True) + "\n").encode(), kill_point="manifest.tmp")
        faults.point("manifest.done")
        return path


class RunLock:
    """A held run lock; :meth:`release` (or the process ending) frees it."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    def release(self, remove: bool = False) -> None:
        """Free the lock; ``remove``: delete its file first (only for a run that is recorded: a
        process that opened the old file and locks it after this re-checks ``runs.jsonl`` and finds
        the run done, and a later one finds no file, so no stale lock is left per finished run)."""
        if self._fd is not None:
            try:
                if remove:
                    self.path.unlink(missing_ok=True)
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            finally:
                os.close(self._fd)
                self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
