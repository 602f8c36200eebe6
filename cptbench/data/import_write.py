"""Writing an imported copy as the refer layout the loader reads (``<root>/<dataset>/refs(<splitBy>).p``
+ ``instances.json``, images under the card's image folder) with its provenance record; shared by
every import (:mod:`cptbench.data.hf_import`, :mod:`cptbench.data.expr_import`)."""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from cptbench.core.errors import DataError
from cptbench.core.files import write_atomic
from cptbench.data.fetch import now_iso
from cptbench.data.provenance import file_entries, provenance_record, read_provenance, write_provenance


@dataclass
class ImportResult:
    """What an import did: each split's decision, the refs and sentences written per split, the
    images written or kept, the caveats recorded and the paths of the files."""

    task: str
    layout: str
    decisions: list
    refs: dict[str, int]
    sentences: dict[str, int]
    images: int
    images_written: int
    images_kept: int
    caveats: list[str]
    paths: dict[str, Path]


def output_paths(task, root: Path) -> tuple[Path, Path, Path]:
    """(dataset folder, refs file, instances file) the import writes under ``root``."""
    ds_dir = root / task.dataset
    return ds_dir, ds_dir / task.refs_file, ds_dir / "instances.json"


def check_output(task, root: Path, force: bool, annotations: Path | None = None) -> None:
    """Refuse to overwrite refer files already in ``root`` (unless ``force``), and ever to overwrite the
    ``--annotations`` files the import reads."""
    ds_dir, refs_path, inst_path = output_paths(task, root)
    if annotations is not None and ds_dir.resolve() == annotations.resolve():
        raise DataError(f"--to {root}: would overwrite the refer annotations the import reads ({annotations}); "
                        f"import into another folder.")
    if not force and (refs_path.exists() or inst_path.exists()):
        raise DataError(f"{ds_dir}: already holds {task.refs_file} / instances.json; pass --force to replace them "
                        f"(or import into another folder).")


def split_totals(refs: Sequence[dict]) -> tuple[dict[str, int], dict[str, int]]:
    """Refs and sentences per split, in the order the splits first appear."""
    order = list(dict.fromkeys(r["split"] for r in refs))
    return ({s: sum(1 for r in refs if r["split"] == s) for s in order},
            {s: sum(len(r["sentences"]) for r in refs if r["split"] == s) for s in order})


def write_refer_files(task, root: Path, refs: list[dict], images: list[dict], anns: list[dict], categories: list[dict],
                      source: dict[str, Any], caveats: list[str], images_record: dict | None) -> dict[str, Path]:
    """Write the refs pickle, instances.json and the provenance record (an earlier record's image
    summary is kept when this import writes no images); the paths written."""
    ds_dir, refs_path, inst_path = output_paths(task, root)
    ds_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(refs_path, pickle.dumps(refs, protocol=2))
    write_atomic(inst_path, json.dumps({"images": sorted(images, key=lambda i: i["id"]),
                                        "annotations": sorted(anns, key=lambda a: a["id"]),
                                        "categories": categories}).encode())
    record = provenance_record(task, "import", source, file_entries(ds_dir, [task.refs_file, "instances.json"]), caveats)
    if images_record is not None:
        record["images"] = {**images_record, "updated_at": now_iso()}
    else:
        old = read_provenance(ds_dir)
        if old and old.get("images"):
            record["images"] = old["images"]
    write_provenance(ds_dir, record)
    return {"refs": refs_path, "instances": inst_path, "images": root / task.image_dir}


def images_summary(image_dir: Path, needed: int, written: int, kept: int, source: str) -> dict:
    """The provenance's image summary for images an import wrote from the copy itself."""
    return {"dir": str(image_dir), "source": source, "needed": needed, "fetched": written, "skipped": kept, "failed": 0}


ProgressFn = Callable[[str, int, "int | None"], None]


def no_progress(label: str, done: int, total: int | None) -> None:
    """A progress callback that shows nothing."""


def write_row_images(needed: dict[int, tuple], column: str, image_dir: Path, index) -> tuple[dict[int, dict], int, int]:
    """Write the embedded image of each needed image id from the row named (``{image_id: (InputFile,
    row index)}``), checked against the size the refer annotations give; the image records (the
    annotations' record with the written file name) and how many were written and kept."""
    from cptbench.data.hf_convert import Converted, write_embedded

    counts = Converted()
    by_file: dict[Path, tuple[Any, dict[int, int]]] = {}
    for image_id, (f, row) in needed.items():
        by_file.setdefault(f.path, (f, {}))[1][row] = image_id
    records: dict[int, dict] = {}
    for f, rows in by_file.values():
        offset = 0
        for batch in f.batches([column]):
            for i, row in enumerate(batch):
                image_id = rows.get(offset + i)
                if image_id is None:
                    continue
                where, name = f"{f.path}: row {offset + i}", f"COCO_train2014_{image_id:012d}.jpg"
                size = write_embedded(row.get(column), image_dir / name, where, counts)
                rec = index.images[image_id]
                if rec.get("width") and rec.get("height") and (int(rec["width"]), int(rec["height"])) != (size["width"], size["height"]):
                    raise DataError(f"{where}: the embedded image {name} is {size['width']}x{size['height']} px, but "
                                    f"{index.instances_path} says {rec['width']}x{rec['height']}: not the same image; the "
                                    f"copy and the annotations are of different releases.")
                records[image_id] = {**rec, "file_name": name}
            offset += len(batch)
    return records, counts.images_written, counts.images_kept
