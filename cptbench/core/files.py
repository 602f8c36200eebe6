"""Writing files so that a kill at any moment leaves either the old file or the new one."""

from __future__ import annotations

import os
from pathlib import Path

from cptbench.core import faults


def fsync_dir(path: Path) -> None:
    """fsync a folder (so a rename in it is durable); a folder that cannot be opened is skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sweep_stale_temps(path: Path) -> None:
    """Remove temporary files of ``path`` left by writers that died (their pid is gone)."""
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            pid = int(tmp.name[len(path.name) + 2:-4])
            os.kill(pid, 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except (ValueError, PermissionError, OSError):
            continue


def write_atomic(path: Path, data: bytes, kill_point: str = "") -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsynced and renamed
    over it (temporary files of writers that died are swept first); ``kill_point`` is a fault point
    between writing and renaming (tests)."""
    """Replace ``path`` with ``data`` atomically (a fsynced temporary file renamed over it), so a
    reader sees the old file or the new one, never part of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_stale_temps(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk (or a kill signal turned exception) leaves no temp file
        raise
    if kill_point:
        faults.point(kill_point)
    os.replace(tmp, path)
    fsync_dir(path.parent)
