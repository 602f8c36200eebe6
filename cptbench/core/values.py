"""Parsing the list values that the command line, study files and config files share."""

from __future__ import annotations

from typing import Any, Iterable

from cptbench.core.errors import UsageError


def name_list(values: Any) -> list[str]:
    """Repeated values and comma lists: ``["cpt", "ft,random"]`` -> ["cpt", "ft", "random"] (order kept, no repeats)."""
    if values is None:
        return []
    items: Iterable[Any] = values if isinstance(values, (list, tuple)) else [values]
    return list(dict.fromkeys(p.strip() for item in items for p in str(item).split(",") if p.strip()))


def _expand(part: str, what: str) -> list[int]:
    """One item of an integer list: ``3`` or an inclusive range ``0-4``."""
    import re

    m = re.fullmatch(r"(\d+)\s*(?:-|\.\.)\s*(\d+)", part)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        if lo > hi:
            raise UsageError(f"{what}: the range {part!r} runs backwards; write it low-high, e.g. {hi}-{lo}")
        return list(range(lo, hi + 1))
    try:
        n = int(part)
    except ValueError:
        raise UsageError(f"{what} must be integers, comma lists or ranges (e.g. 0,1,2 or 0-4), got {part!r}") from None
    if n < 0:
        raise UsageError(f"{what} must be >= 0, got {n}")
    return [n]


def int_list(values: Any, what: str) -> list[int]:
    """Integers >= 0 from repeated values, comma lists and inclusive ranges (``-k 0 -k 1,2`` ->
    [0, 1, 2]; ``--seeds 0-4`` -> [0, 1, 2, 3, 4]; a scalar is a list of one); at least one."""
    out: list[int] = []
    shown = values if isinstance(values, (list, tuple)) else [values]
    for part in name_list(values):
        for n in _expand(part, what):
            if n not in out:
                out.append(n)
    if not out:
        raise UsageError(f"{what} needs at least one integer (e.g. {what} 0,1), got "
                         f"{' '.join(map(repr, [v for v in shown if v is not None])) or 'nothing'}")
    return out


_DURATION_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, what: str, *, end_of_day: bool = False, now=None):
    """A point in time for ``--since`` / ``--until``, as an aware UTC datetime: an ISO date
    (``2025-01-31``; with ``end_of_day`` the end of that day), an ISO date-time (``2025-01-31T12:00``,
    UTC unless it names a zone), or a duration back from now (``30m``, ``12h``, ``7d``, ``2w``).
    Anything else (``yesterday``, ``last-week``) is a usage error with examples."""
    import re
    from datetime import datetime, timedelta, timezone

    now = now or datetime.now(timezone.utc)
    raw = str(text).strip()
    m = re.fullmatch(r"(\d+)\s*([mhdw])", raw)
    if m:
        return now - timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", raw):
        try:
            day = datetime.strptime(raw, "%Y-%m-%d").replace(tzinfo=timezone.utc)
        except ValueError:
            raise UsageError(f"{what} {raw!r} is not a calendar date.") from None
        return day + timedelta(days=1) if end_of_day else day
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)?", raw):
        try:
            when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"{what} {raw!r} is not a valid date and time.") from None
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    raise UsageError(f"{what} {raw!r} is not a date: give an ISO date (2025-01-31), a date and time "
                     f"(2025-01-31T12:00, UTC unless a zone is named) or a duration back from now (30m, 12h, 7d, 2w).")
