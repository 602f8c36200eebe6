"""Candidate regions: every COCO annotation of the image (``gt``) or a detector's output file.

Detection files come in the layouts users hold:

* MAttNet's ``res101_coco_minus_refer_notime_dets.json``: a list of records ``{box: [x, y, w, h],
  image_id, category_name, score, det_id, h5_id}`` (``bbox`` is accepted for ``box``; ``rle`` when
  present is the candidate's mask), also wrapped as ``{"dets": [...]}``;
* ReCLIP's detections: ``{image_id: [[x, y, w, h], ...]}``, plain lists (records as above are
  accepted in the lists too).

Boxes are converted to xyxy here, at the boundary. Boxes that reach past the image or have zero area
are kept and judged per image by the box policy (:mod:`cptbench.data.box_policy`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cptbench.core.boxes import xywh_to_xyxy
from cptbench.core.errors import DataError

_LAYOUTS = ("a list of {box: [x, y, w, h], image_id, ...} records (MAttNet), {'dets': [...]}, or "
            "{image_id: [[x, y, w, h], ...]} (ReCLIP)")


@dataclass(frozen=True)
class Candidates:
    """The candidate regions of one image: xyxy boxes, a category name each, a segmentation each
    (None when there is none), and what names each in messages (``ids``: COCO annotation ids, a
    detection's ``det_id`` or record; ``id_name``: "annotation", "detection")."""

    boxes: np.ndarray  # (n, 4) xyxy
    categories: tuple[str, ...]
    masks: tuple[Any, ...]
    ids: tuple[Any, ...] = ()
    id_name: str = "candidate"

    @property
    def n(self) -> int:
        """The number of candidates."""
        return int(self.boxes.shape[0])


@dataclass
class DetectionProposals:
    """Detections read from one file, indexed by image id."""

    path: Path
    sha256: str
    by_image: dict[int, Candidates]

    @property
    def setting(self) -> str:
        """The proposal setting named in every record: file name plus a content hash."""
        return f"det:{self.path.name}:{self.sha256[:12]}"

    def for_image(self, image_id: int) -> Candidates:
        """The detections of ``image_id`` (none when the file has none for it)."""
        c = self.by_image.get(int(image_id))
        if c is None:
            return Candidates(np.zeros((0, 4)), (), ())
        return c


def _records(data: Any, path: Path):
    """(where, record, image id from the key or None) of every detection of the file."""
    if isinstance(data, dict) and "dets" in data:
        data = data["dets"]
    if isinstance(data, list):
        for i, rec in enumerate(data):
            yield i, rec, None
    elif isinstance(data, dict):
        for key, recs in data.items():
            if not isinstance(recs, list):
                raise DataError(f"{path}: entry for image {key!r} is a {type(recs).__name__}, not a list of "
                                f"detections; the file must be {_LAYOUTS}.")
            for i, rec in enumerate(recs):
                yield f"{key}[{i}]", rec, key
    else:
        raise DataError(f"{path}: a {type(data).__name__} at the top level; the file must be {_LAYOUTS}.")


def _detection(rec: Any, where: Any, key: Any, path: Path) -> tuple[int, list[float], str, Any, Any]:
    """(image id, box, category, mask, id) of one detection record; :class:`DataError` naming it."""
    if isinstance(rec, (list, tuple)):  # ReCLIP: a plain [x, y, w, h] under its image id
        if key is None:
            raise DataError(f"{path}: detection {where} is a plain list {rec!r}, which only the {{image_id: [[x, y, w, h], "
                            f"...]}} layout allows (a list of detections needs records with 'box' and 'image_id').")
        box, image_id, category, mask, det_id = rec, key, "object", None, where
    elif isinstance(rec, dict):
        box = rec.get("box", rec.get("bbox"))
        image_id = rec.get("image_id", key)
        if box is None or image_id is None:
            raise DataError(f"{path}: detection {where} lacks 'box' ([x, y, w, h]) or 'image_id'; every record needs both.")
        category, mask = str(rec.get("category_name", "object")), rec.get("rle")
        det_id = rec.get("det_id", where)
        score = rec.get("score")
        if score is not None and (isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score)):
            raise DataError(f"{path}: detection {det_id} has score {score!r}; a detector's score is a finite number. "
                            f"Fix or drop that record.")
    else:
        raise DataError(f"{path}: detection {where} is a {type(rec).__name__}, neither a record nor an [x, y, w, h] "
                        f"list; the file must be {_LAYOUTS}.")
    try:
        image_id = int(image_id)
        box = [float(v) for v in box]
    except (TypeError, ValueError, OverflowError):
        raise DataError(f"{path}: detection {where} has a non-numeric box or image_id ({box!r}, {image_id!r}).") from None
    if len(box) != 4:
        raise DataError(f"{path}: detection {where} has box {box!r}; expected [x, y, w, h].")
    return image_id, box, category, mask, det_id


def load_detections(path: str | Path) -> DetectionProposals:
    """Read a detections JSON file (any layout of the module docstring), boxes converted to xyxy; raises
    :class:`DataError` naming the record that does not fit."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the proposals file ({exc}); pass --proposals gt or an existing detections JSON.") from exc
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc}).") from exc
    grouped: dict[int, list[tuple[list[float], str, Any, Any]]] = {}
    seen: dict[tuple, Any] = {}
    for where, rec, key in _records(data, path):
        image_id, box, category, mask, det_id = _detection(rec, where, key, path)
        same = (image_id, tuple(box), category)
        if same in seen:
            raise DataError(f"{path}: detections {seen[same]} and {det_id} of image {image_id} are the same {category!r} "
                            f"box {box} twice (a copy doubles the candidates); remove the duplicates (a file joined "
                            f"with itself?).")
        seen[same] = det_id
        # NaN, negative sizes, boxes wholly outside the image (refused) and boxes reaching past it or
        # of zero area (kept by default) are judged per image by the box policy
        grouped.setdefault(image_id, []).append((box, category, mask, det_id))
    by_image = {
        img: Candidates(xywh_to_xyxy(np.array([r[0] for r in recs])).reshape(-1, 4), tuple(r[1] for r in recs),
                        tuple(r[2] for r in recs), tuple(r[3] for r in recs), "detection")
        for img, recs in grouped.items()
    }
    return DetectionProposals(path, hashlib.sha256(raw).hexdigest(), by_image)
