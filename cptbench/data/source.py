"""Where a task's data lives: the user's refer-layout folder, or the synthref cache."""

from __future__ import annotations

import os
from pathlib import Path

from ..taskspec import TaskSpec
from .errors import DataError
from .refer import ReferDataset

DATA_ROOT_ENV = "CPTBENCH_DATA_ROOT"
CACHE_ENV = "CPTBENCH_CACHE"


def cache_root() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "cptbench")


def resolve_data_root(task: TaskSpec, data_root: str | Path | None) -> Path:
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV) or None
    if task.source == "synthref" and data_root is None:
        from .synthref import ensure_synthref

        return ensure_synthref(task, cache_root())
    if data_root is None:
        raise DataError(
            f"task {task.name!r} needs its data: pass --data-root DIR (holding {task.dataset}/{task.refs_file} "
            f"and {task.dataset}/instances.json) or set {DATA_ROOT_ENV}. The bundled offline task is 'synthref'."
        )
    return Path(data_root)


def open_dataset(task: TaskSpec, data_root: str | Path | None = None, images: str | Path | None = None) -> ReferDataset:
    root = resolve_data_root(task, data_root)
    images_dir = Path(images) if images is not None else root / task.image_dir
    return ReferDataset(root, task.dataset, task.split_by, images_dir)
