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


def int_list(values: Any, what: str) -> list[int]:
    """Integers >= 0 from repeated values and comma lists (``-k 0 -k 1,2`` -> [0, 1, 2]); at least one."""
    out: list[int] = []
    shown = values if isinstance(values, (list, tuple)) else [values]
    for part in name_list(values):
        try:
            n = int(part)
        except ValueError:
            raise UsageError(f"{what} must be integers, got {part!r}") from None
        if n < 0:
            raise UsageError(f"{what} must be >= 0, got {n}")
        if n not in out:
            out.append(n)
    if not out:
        raise UsageError(f"{what} needs at least one integer (e.g. {what} 0,1), got "
                         f"{' '.join(map(repr, [v for v in shown if v is not None])) or 'nothing'}")
    return out
