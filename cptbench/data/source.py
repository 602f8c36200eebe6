"""Where a task's data lives: the user's refer-layout folder, or the synthref cache."""

from __future__ import annotations

import os
from pathlib import Path

from cptbench.tasks.spec import TaskSpec
from cptbench.core.defaults import DATA_ROOT_ENV
from cptbench.core.errors import DataError
from cptbench.core.hashing import cache_root
from cptbench.data.refer import ReferDataset

def resolve_data_root(task: TaskSpec, data_root: str | Path | None) -> Path:
    """The data root of ``task``: ``data_root``, else ``$CPTBENCH_DATA_ROOT``, else (synthref only) its
    generated cache folder; raises :class:`DataError` for a refer task with none."""
    if data_root is None:
        data_root = os.environ.get(DATA_ROOT_ENV) or None
    if task.source == "synthref" and data_root is None:
        from cptbench.data.synthref import ensure_synthref

        return ensure_synthref(task, cache_root())
    if data_root is None:
        raise DataError(
            f"task {task.name!r} needs its data: pass --data-root DIR (holding {task.dataset}/{task.refs_file} "
            f"and {task.dataset}/instances.json) or set {DATA_ROOT_ENV}. The bundled offline task is 'synthref'."
        )
    return Path(data_root)


#: image folders tried under the data root when --images is not given, after the card's image_dir:
#: the refer toolkit's own layout (REFER.IMAGE_DIR) and a plain COCO download beside the annotations
IMAGE_LAYOUTS: tuple[tuple[str, str], ...] = (
    ("refer toolkit", "images/mscoco/images/train2014"),
    ("coco download", "train2014"),
)


def find_image_dir(task: TaskSpec, root: Path, images: str | Path | None = None) -> tuple[Path, str]:
    """The image folder and a description of the layout it was found in (for the console and the
    record). ``--images`` wins; else the card's ``image_dir``, then :data:`IMAGE_LAYOUTS`, the first
    that exists. When none exists the card's folder is returned (the image check names it)."""
    if images is not None:
        return Path(images), "--images"
    tried = [("task card", task.image_dir), *[(n, d) for n, d in IMAGE_LAYOUTS if d != task.image_dir]]
    for name, rel in tried:
        if (root / rel).is_dir():
            return root / rel, f"{name} layout, {rel}"
    return root / task.image_dir, f"task card layout, {task.image_dir}; not found"


def open_dataset(task: TaskSpec, data_root: str | Path | None = None, images: str | Path | None = None) -> ReferDataset:
    """``task``'s dataset loaded from its data root, with the image folder :func:`find_image_dir` finds;
    raises :class:`DataError` when the root is not a folder or its files do not load."""
    root = resolve_data_root(task, data_root)
    if not root.is_dir():
        raise DataError(f"{root}: --data-root does not exist (or is not a folder). It must hold {task.dataset}/{task.refs_file} "
                        f"and {task.dataset}/instances.json; `cptbench data download {task.name} --to DIR` fetches them.")
    images_dir, layout = find_image_dir(task, root, images)
    return ReferDataset(root, task.dataset, task.split_by, images_dir, image_layout=layout)
