"""Candidate regions: every COCO annotation of the image (``gt``) or a detector's output file.

Detection files hold records ``{box: [x, y, w, h], image_id, category_name?, score?, rle?}`` (``bbox``
is accepted for ``box``) as a plain list, as MAttNet's ``{"dets": [...]}`` or as ReCLIP's
``{image_id: [...]}``. Boxes are converted to xyxy here, at the boundary.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cptbench.core.boxes import xywh_to_xyxy
from cptbench.core.errors import DataError


@dataclass(frozen=True)
class Candidates:
    """The candidate regions of one image: xyxy boxes, a category name each and a segmentation each (None
    when there is none)."""

    boxes: np.ndarray  # (n, 4) xyxy
    categories: tuple[str, ...]
    masks: tuple[Any, ...]

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
    if isinstance(data, dict) and "dets" in data:
        data = data["dets"]
    if isinstance(data, list):
        for i, rec in enumerate(data):
            yield i, rec, None
    elif isinstance(data, dict):
        for key, recs in data.items():
            if not isinstance(recs, list):
                raise DataError(f"{path}: entry for image {key!r} must be a list of detections; see `cptbench data check --help` for the accepted layouts.")
            for i, rec in enumerate(recs):
                yield f"{key}[{i}]", rec, key
    else:
        raise DataError(f"{path}: expected a list of detections, {{'dets': [...]}} or {{image_id: [...]}}, got {type(data).__name__}.")


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
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc}).") from exc
    grouped: dict[int, list[tuple[list[float], str, Any]]] = {}
    for where, rec, key in _records(data, path):
        if not isinstance(rec, dict):
            raise DataError(f"{path}: detection {where} is not a JSON object.")
        box = rec.get("box", rec.get("bbox"))
        image_id = rec.get("image_id", key)
        if box is None or image_id is None:
            raise DataError(f"{path}: detection {where} lacks 'box' ([x, y, w, h]) or 'image_id'; every record needs both.")
        try:
            image_id = int(image_id)
            box = [float(v) for v in box]
        except (TypeError, ValueError):
            raise DataError(f"{path}: detection {where} has a non-numeric box or image_id ({box!r}, {image_id!r}).") from None
        if len(box) != 4:
            raise DataError(f"{path}: detection {where} has box {box!r}; expected [x, y, w, h].")
        # degenerate values (NaN, w or h <= 0, outside the image) are judged per image by the
        # data-quality policy (cptbench.data.quality), which can refuse or skip them
        grouped.setdefault(image_id, []).append((box, str(rec.get("category_name", "object")), rec.get("rle")))
    by_image = {
        img: Candidates(xywh_to_xyxy(np.array([b for b, _, _ in recs])).reshape(-1, 4),
                        tuple(c for _, c, _ in recs), tuple(m for _, _, m in recs))
        for img, recs in grouped.items()
    }
    return DetectionProposals(path, hashlib.sha256(raw).hexdigest(), by_image)
