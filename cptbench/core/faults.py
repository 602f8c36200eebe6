"""Named kill points for fault-injection tests (``CPTBENCH_KILL_AT``).

``CPTBENCH_KILL_AT=<point>[:<n>]`` makes the process kill itself with SIGKILL (no cleanup, no
``finally``: exactly what ``kill -9`` or a power cut does) the ``n``-th time (default 1) it passes
``point``; with ``CPTBENCH_KILL_RANK=<r>`` only the process of that torchrun rank does; with
``CPTBENCH_KILL_ONCE=<file>`` only the first process to get there does (it creates the file), so a
retried worker survives. Unset, :func:`point` costs one dictionary lookup. Points that can tear a write
(``*.torn``) write half of the bytes first. The tests in ``tests/run/test_faults.py`` drive every point
and check that the resumed results equal an uninterrupted run field by field.
"""

from __future__ import annotations

import os
import signal

ENV = "CPTBENCH_KILL_AT"

#: every kill point, where it is (tests iterate over this list)
POINTS = {
    "prepare.done": "after the pre-flight checks, before the first job",
    "job.start": "a job was locked, nothing computed yet",
    "fit.start": "before the method's fit",
    "fit.done": "after fit, before the first prediction chunk",
    "predict.round": "a rank predicted its share of a chunk (every rank passes it)",
    "predict.chunk": "after a chunk was predicted, before it is saved",
    "chunk.torn": "half of a chunk's line written to the partial file",
    "chunk.saved": "right after a chunk was saved",
    "split.predicted": "all chunks of a split saved, predictions not yet finalised",
    "predictions.tmp": "the finalised predictions written to a temporary file, not yet renamed",
    "predictions.done": "predictions finalised, record not yet appended",
    "record.torn": "half of the record's line written to runs.jsonl",
    "record.done": "record appended, partial file not yet removed",
    "partial.dropped": "partial file removed, before the next split of the job",
    "manifest.tmp": "a new k-shot manifest written to a temporary file, not yet renamed",
    "manifest.done": "a new k-shot manifest saved",
    "lock.taken": "a run's lock was just taken",
    "leaderboard.tmp": "a leaderboard file written to a temporary file, not yet renamed",
}

_target: tuple[str, int] | None = None
_counts: dict[str, int] = {}
_parsed = False


def _parse() -> None:
    global _target, _parsed
    _parsed = True
    raw = os.environ.get(ENV, "")
    if not raw:
        return
    rank = os.environ.get("CPTBENCH_KILL_RANK")
    if rank is not None and rank != os.environ.get("RANK", "0"):
        return
    name, _, n = raw.partition(":")
    _target = (name, int(n) if n else 1)


def armed(name: str) -> bool:
    """Whether passing ``name`` now would kill (counts the pass)."""
    if not _parsed:
        _parse()
    if _target is None or _target[0] != name:
        return False
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] != _target[1]:
        return False
    once = os.environ.get("CPTBENCH_KILL_ONCE")
    return not (once and os.path.exists(once))  # somebody already died here once


def point(name: str) -> None:
    """A kill point: the process dies here when ``$CPTBENCH_KILL_AT`` names it (tests only)."""
    if armed(name):
        die()


def die() -> None:
    """SIGKILL this process (after marking ``$CPTBENCH_KILL_ONCE``, so a rerun passes the point)."""
    once = os.environ.get("CPTBENCH_KILL_ONCE")
    if once:
        open(once, "a").close()
    os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Re-read the environment (tests that set it after import, in a forked child)."""
    global _parsed, _target
    _parsed, _target = False, None
    _counts.clear()
