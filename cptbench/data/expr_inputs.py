"""Reading the per-expression copies of RefCOCO / RefCOCO+ / RefCOCOg (one record per expression)
into one shape, :class:`ExprRecord`, for :mod:`cptbench.data.expr_import` to match to refer refs:

* **Qwen-VL / InternVL evaluation JSONL** (``refcoco_val.jsonl``, ``refcoco+_testA.jsonl``,
  ``refcocog_test.jsonl`` ...): one JSON object a line with ``image`` (a path naming
  ``COCO_train2014_<12 digits>.jpg``), ``sent``, ``bbox`` ([x1, y1, x2, y2] pixels, as their
  evaluation scripts read it), ``width``, ``height``.
* **MDETR** (``finetune_<dataset>_<split>.json``; ``final_refexp_val.json`` holds the val of all
  three datasets, told apart by ``dataset_name``): COCO style, one image record per expression
  (``original_id`` = the COCO image id, ``caption`` = the refer ``sent``, ``dataset_name``, ``width``,
  ``height``) and one annotation per image record (``bbox`` [x, y, w, h], ``original_id`` = the COCO
  annotation id), as MDETR's conversion scripts (scripts/fine-tuning/refexp_coco_format.py,
  scripts/pre-training/refexp_combined_val.py) write them.
* a **per-expression parquet** (Kangheng/refcoco, refcocop; schema UNVERIFIED): its columns are found
  by name and type (:func:`parquet_roles`) and reported; the box convention is decided by matching.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cptbench.core.errors import DataError
from cptbench.data.hf_inputs import InputFile
from cptbench.data.hf_schema import describe, is_image, is_int, is_list_of, is_number, is_string
from cptbench.data.refer_index import as_box, image_id_in

_SPLIT_NAMES = {"train": "train", "val": "val", "validation": "val", "test": "test", "testa": "testA", "testb": "testB"}
_QWEN = re.compile(r"^(refcoco|refcoco\+|refcocog)_([A-Za-z]+)\.jsonl$")
_MDETR = re.compile(r"^(?:finetune|final_refexp)_(?:(refcoco|refcoco\+|refcocog)_)?([A-Za-z_]+)\.json$")


@dataclass
class ExprRecord:
    """One expression of a copy: where it is (file and line / row), its split, image, box (as the copy
    stores it), text, and what else the copy states (annotation id, image size, embedded image)."""

    where: str
    split: str
    image_id: int
    box: list[float]
    text: str
    ann_id: int | None = None
    size: tuple[int, int] | None = None  # (width, height) as the copy states it
    image_at: tuple | None = None  # (InputFile, row index) of an embedded image


@dataclass
class ExprSource:
    """The records of a per-expression copy by split, what it is (``kind``), its box convention
    (``xyxy``, ``xywh`` or ``decide``), the files read and the ones left out (with why)."""

    kind: str
    box_format: str
    files: list[Path]
    records: dict[str, list[ExprRecord]] = field(default_factory=dict)
    origins: dict[str, list[str]] = field(default_factory=dict)  # split -> the files its records came from
    left_out: dict[str, tuple[int, str]] = field(default_factory=dict)  # file -> (records, why left out)
    roles: dict[str, str] = field(default_factory=dict)  # parquet: what each column was read as
    image_column: str | None = None

    def add(self, split: str, origin: str) -> list[ExprRecord]:
        """The record list of ``split``, noting that ``origin`` (a file name) adds to it."""
        if origin not in self.origins.setdefault(split, []):
            self.origins[split].append(origin)
        return self.records.setdefault(split, [])


def expression_files(paths: Sequence[str | Path]) -> list[Path]:
    """The per-expression files named (any ``.jsonl``, MDETR-named ``.json``) or under the folders named
    (only those whose names are the published ones: ``<dataset>_<split>.jsonl``, MDETR's)."""
    out = []
    for p in map(lambda q: Path(q).expanduser(), paths):
        if p.is_dir():
            out += [q for q in sorted(p.rglob("*")) if q.is_file() and (_QWEN.match(q.name) or _MDETR.match(q.name))
                    and not any(part.startswith(".") for part in q.relative_to(p).parts)]
        elif p.is_file() and (p.suffix == ".jsonl" or _MDETR.match(p.name)):
            out.append(p)
    return out


def _split(name: str) -> str | None:
    return _SPLIT_NAMES.get(name.lower())


def _number(value: Any, what: str, where: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise DataError(f"{where}: {what} is {value!r}, not a number; the line is damaged: download the file again.") from None


def read_qwen_jsonl(path: Path, task, source: ExprSource) -> None:
    """The expressions of one Qwen-VL / InternVL evaluation file (``<dataset>_<split>.jsonl``)."""
    m = _QWEN.match(path.name)
    if not m or _split(m.group(2)) is None:
        raise DataError(f"{path}: not a Qwen-VL / InternVL evaluation file name (<refcoco|refcoco+|refcocog>_<split>.jsonl, "
                        f"e.g. refcoco_val.jsonl); the name says the dataset and split: keep the published name.")
    if m.group(1) != task.dataset:
        source.left_out[path.name] = (0, f"a {m.group(1)} file, not {task.dataset} (import it with --as {m.group(1)})")
        return
    split = _split(m.group(2))
    records = source.add(split, path.name)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot be read ({exc}); download it again.") from None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}: line {n}"
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise DataError(f"{where}: not a JSON object ({exc}); the file is damaged: download it again.") from None
        if not isinstance(obj, dict) or not {"image", "sent", "bbox"} <= set(obj):
            keys = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
            raise DataError(f"{where}: a Qwen-VL evaluation line has image, sent, bbox, width, height; this one has {keys}. "
                            f"It is another format: pass the published refcoco*_<split>.jsonl files.")
        image_id = image_id_in(obj["image"])
        box = as_box(obj["bbox"])
        if image_id is None or box is None:
            raise DataError(f"{where}: image {obj['image']!r} names no COCO_train2014_<12 digits> file, or bbox "
                            f"{obj['bbox']!r} is not four numbers; the line is damaged: download the file again.")
        size = (_number(obj["width"], "width", where), _number(obj["height"], "height", where)) \
            if "width" in obj and "height" in obj else None
        records.append(ExprRecord(where, split, image_id, box, str(obj["sent"]), size=size))
    source.files.append(path)


def read_mdetr(path: Path, task, source: ExprSource) -> None:
    """The expressions of one MDETR annotation file (``finetune_<dataset>_<split>.json`` or
    ``final_refexp_val.json``), those of ``task.dataset`` only."""
    m = _MDETR.match(path.name)
    split = _split(m.group(2)) if m else None
    if m and m.group(1) and m.group(1) != task.dataset:
        source.left_out[path.name] = (0, f"a {m.group(1)} file, not {task.dataset} (import it with --as {m.group(1)})")
        return
    if split is None:
        source.left_out[path.name] = (0, f"split {m.group(2) if m else '?'!r} is none of {task.name}'s")
        return
    try:
        data = json.loads(path.read_bytes())
        images, anns = data["images"], data["annotations"]
        by_image = {}
        for a in anns:
            by_image.setdefault(int(a["image_id"]), []).append(a)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise DataError(f"{path}: not an MDETR annotation file (COCO style: images with caption / original_id, "
                        f"annotations with bbox / original_id): {type(exc).__name__}: {exc}; download it again.") from None
    records = source.add(split, path.name)
    other = 0
    for i, im in enumerate(images):
        where = f"{path}: images[{i}]"
        if not isinstance(im, dict) or not {"id", "original_id", "caption"} <= set(im):
            raise DataError(f"{where}: an MDETR image record has id, original_id, caption, file_name, width, height, "
                            f"dataset_name; this one has {sorted(im) if isinstance(im, dict) else im!r}; the file is "
                            f"not MDETR's: pass the published finetune_*.json / final_refexp_val.json.")
        if im.get("dataset_name", task.dataset) != task.dataset:
            other += 1
            continue
        mine = by_image.get(_number(im["id"], "id", where), [])
        box = as_box(mine[0].get("bbox")) if len(mine) == 1 and isinstance(mine[0], dict) else None
        if box is None:
            raise DataError(f"{where}: image record {im['id']} has {len(mine)} annotations (MDETR writes one per "
                            f"expression) or no [x, y, w, h] bbox; the file is damaged: download it again.")
        ann_id = mine[0].get("original_id")
        records.append(ExprRecord(where, split, _number(im["original_id"], "original_id", where), box, str(im["caption"]),
                                  ann_id=_number(ann_id, "annotations' original_id", where) if ann_id is not None else None,
                                  size=(_number(im.get("width"), "width", where), _number(im.get("height"), "height", where))
                                  if "width" in im else None))
    if other:
        source.left_out[f"{path.name} (other datasets)"] = (other, f"records whose dataset_name is not {task.dataset}")
    source.files.append(path)


#: candidate column names of each role in a per-expression parquet (schema UNVERIFIED)
_TEXT = ("sent", "sentence", "expression", "referring_expression", "refexp", "ref_exp", "caption", "text", "phrase",
         "answer", "sentences", "expressions", "captions")
_BOX = ("bbox", "box", "gt_bbox", "gt_box", "bboxes", "boxes")
_IMAGE_ID = ("image_id", "img_id", "coco_id", "original_id")
_IMAGE_NAME = ("file_name", "image_path", "img_path", "image_file", "path", "image_name", "image")
_IMAGE = ("image", "img", "jpg")


def parquet_roles(f: InputFile) -> dict[str, str]:
    """Which column of a per-expression parquet holds what (``image_id`` / ``image_name``, ``text``,
    ``box``, ``image``, ``ann_id``), found by name and type; :class:`DataError` listing the columns, what
    was found and what is missing when the image, the expression or the box cannot be told."""
    types = {fld.name: fld.type for fld in f.schema}
    roles: dict[str, str] = {}
    pick = lambda names, ok: next((n for n in names if n in types and ok(types[n])), None)  # noqa: E731
    if (c := pick(_IMAGE_ID, is_int)):
        roles["image_id"] = c
    elif (c := pick(_IMAGE_NAME, is_string)):
        roles["image_name"] = c
    if (c := pick(_TEXT, is_string)) or (c := pick(_TEXT, is_list_of(is_string))):
        roles["text"] = c
    if (c := pick(_BOX, is_list_of(is_number))):
        roles["box"] = c
    if (c := pick(_IMAGE, is_image)):
        roles["image"] = c
        if "image_id" not in roles and "image_name" not in roles:
            roles["image_name"] = c + ".path"
    if "ann_id" in types and is_int(types["ann_id"]):
        roles["ann_id"] = "ann_id"
    missing = [r for r, ok in (("the image (an id or a COCO_train2014 file name)", "image_id" in roles or "image_name" in roles),
                               ("the expression (a string)", "text" in roles), ("the box (four numbers)", "box" in roles))
               if not ok]
    if missing:
        found = ", ".join(f"{k} from {v!r}" for k, v in roles.items()) or "nothing"
        raise DataError(f"{f.path}: columns {describe(f.schema)} match no known layout (jxu124: ref_id, ann_id, "
                        f"image_id, sentences ...; lmms-lab: question_id, answer, bbox, file_name ...; a per-expression "
                        f"copy such as Kangheng/refcoco, whose schema is not verified: found {found}; no column for "
                        f"{', '.join(missing)}). Pass the dataset's own parquet files, or tell us the columns.")
    return roles


def read_expr_parquet(files: Sequence[InputFile], task, source: ExprSource) -> None:
    """The expressions of a per-expression parquet copy (one row each), read by :func:`parquet_roles`;
    the embedded images are only located here (written after the match)."""
    roles = parquet_roles(files[0])
    for f in files[1:]:
        if parquet_roles(f) != roles:
            raise DataError(f"{f.path}: its columns differ from {files[0].path}'s ({describe(f.schema)}); import one "
                            f"dataset's files at a time.")
    source.roles, source.image_column = roles, roles.get("image")
    cols = [c.split(".")[0] for k, c in roles.items() if k != "image"]  # "image.path": the image column itself
    for f in files:
        split = _split(f.hf_split)
        if split is None or split not in (task.train_split, *task.eval_splits):
            source.left_out[f.path.name] = (f.rows, f"split {f.hf_split!r} is none of {task.name}'s")
            continue
        records = source.add(split, f.path.name)
        offset = 0
        for batch in f.batches(list(dict.fromkeys(cols))):
            for i, row in enumerate(batch):
                where = f"{f.path}: row {offset + i}"
                if "image_id" in roles:
                    image_id = row.get(roles["image_id"])
                else:
                    name = row.get(roles["image_name"].split(".")[0])
                    image_id = image_id_in(name.get("path") if isinstance(name, dict) else name)
                text = row.get(roles["text"])
                if isinstance(text, list):
                    text = text[0] if len(text) == 1 else None
                box = as_box(row.get(roles["box"]))
                if image_id is None or not text or box is None:
                    raise DataError(f"{where}: image {image_id!r}, expression {row.get(roles['text'])!r} (one string) and "
                                    f"box {row.get(roles['box'])!r} (four numbers) are needed; the row is damaged.")
                ann = row.get("ann_id") if "ann_id" in roles else None
                records.append(ExprRecord(where, split, int(image_id), box, str(text),
                                          ann_id=int(ann) if ann is not None else None,
                                          image_at=(f, offset + i) if source.image_column else None))
            offset += len(batch)
        source.files.append(f.path)
