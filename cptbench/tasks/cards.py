"""Finding task cards: the bundled ``tasks/`` folder plus any folders named in ``CPTBENCH_TASKS_PATH``."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from cptbench.core.registry import UnknownNameError
from cptbench.tasks.spec import TaskCardError, TaskSpec, load_task_card

TASKS_PATH_ENV = "CPTBENCH_TASKS_PATH"


def task_dirs(extra: tuple[str, ...] = ()) -> list[Path]:
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


def _card_files(extra: tuple[str, ...] = ()) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in task_dirs(extra):
        for f in sorted(d.glob("*.yaml")):
            if f.stem in found:
                raise TaskCardError(f"{f}: task {f.stem!r} is also defined in {found[f.stem]}; rename one of them.")
            found[f.stem] = f
    return found


def list_tasks(extra: tuple[str, ...] = ()) -> list[str]:
    return sorted(_card_files(extra))


@lru_cache(maxsize=None)
def _load(path: str, mtime: float) -> TaskSpec:
    return load_task_card(path)


def get_task(name: str, extra: tuple[str, ...] = ()) -> TaskSpec:
    """The validated card of task ``name``; an unknown name raises with "did you mean"."""
    files = _card_files(extra)
    if name not in files:
        raise UnknownNameError("task", name, files)
    f = files[name]
    return _load(str(f), f.stat().st_mtime)
