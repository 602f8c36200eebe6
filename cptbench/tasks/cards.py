"""Finding task cards: the bundled ``tasks/`` folder plus any folders named in ``CPTBENCH_TASKS_PATH``.

The one owner of task discovery: ``get_task``, ``list_tasks`` and ``include:`` all look here."""

from __future__ import annotations

import os
from pathlib import Path

from cptbench.core.registry import UnknownNameError
from cptbench.tasks.spec import TaskCardError, TaskSpec, load_task_card

TASKS_PATH_ENV = "CPTBENCH_TASKS_PATH"


def task_dirs(extra: tuple[str, ...] = ()) -> list[Path]:
    """The folders searched for cards: the bundled ``tasks/``, then ``$CPTBENCH_TASKS_PATH``, then ``extra``."""
    import importlib.resources

    dirs = [Path(str(importlib.resources.files("cptbench_tasks")))]
    env = os.environ.get(TASKS_PATH_ENV, "")
    for p in [q for q in env.split(os.pathsep) if q]:
        if not Path(p).is_dir():
            raise TaskCardError(f"{TASKS_PATH_ENV} names {p!r}, which is not a folder; fix or unset {TASKS_PATH_ENV} "
                                f"(it lists folders of task cards, separated by {os.pathsep!r}).")
        dirs.append(Path(p))
    dirs += [Path(p) for p in extra]
    return dirs


def card_files(extra: tuple[str, ...] = ()) -> dict[str, Path]:
    """Task name -> card file, over every task folder; a name defined twice is an error."""
    return _card_files(extra)


def _card_files(extra: tuple[str, ...] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in task_dirs(extra):
        for f in sorted(d.glob("*.yaml")):
            if f.stem in found:
                raise TaskCardError(f"{f}: task {f.stem!r} is also defined in {found[f.stem]}; rename one of them.")
            found[f.stem] = f
    return found


def list_tasks(extra: tuple[str, ...] = ()) -> list[str]:
    """The names of every task card found."""
    return sorted(_card_files(extra))


_LOADED: dict[str, tuple[tuple[tuple[str, int], ...], TaskSpec]] = {}


def _stamp(files) -> tuple[tuple[str, int], ...]:
    out = []
    for f in files:
        try:
            out.append((str(f), Path(f).stat().st_mtime_ns))
        except OSError:
            out.append((str(f), -1))
    return tuple(out)


def _load(path: Path) -> TaskSpec:
    """The card at ``path``, re-read when it or a card it includes changed on disk."""
    cached = _LOADED.get(str(path))
    if cached is not None and _stamp(f for f, _ in cached[0]) == cached[0]:
        return cached[1]
    read: list[Path] = []
    spec = load_task_card(path, read)
    _LOADED[str(path)] = (_stamp(read), spec)
    return spec


def get_task(name: str, extra: tuple[str, ...] = ()) -> TaskSpec:
    """The validated card of task ``name``; an unknown name raises with "did you mean"."""
    files = _card_files(extra)
    if name not in files:
        raise UnknownNameError("task", name, files)
    f = files[name]
    return _load(f)
