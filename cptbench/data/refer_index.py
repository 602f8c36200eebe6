"""The user's refer annotations (``refs(<splitBy>).p`` + ``instances.json``, as the refer archives
hold them), indexed to match the rows of a copy to their refs: by the refer file name
(``COCO_train2014_<12 digits>_<n>.jpg``), by COCO annotation id, by image and box, and an
expression's text to one of its ref's sentences.

Only what the files hold is used; a record that is not what the refer layout has is refused naming
the file and the record. ``refs(google).p`` beside the refs, when there, says which google split a
ref is in (RefCOCO / RefCOCOg), for reporting the rows of a merged split.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cptbench.core.errors import DataError
from cptbench.core.hashing import file_sha256
from cptbench.data.safe_pickle import load_plain_pickle

#: how far (pixels, per coordinate) a copy's box may be from the refer annotation's (float32 storage,
#: rounding to 0.01 px or to whole pixels)
BOX_TOL = 0.5
_WORD = re.compile(r"[a-z0-9]+")
_IMAGE_ID = re.compile(r"COCO_train2014_(\d{12})")


def norm_text(text: Any) -> str:
    """An expression compared across copies: lower-cased words and numbers, punctuation and spacing
    dropped (the refer ``sent`` is the tokenised, lower-cased ``raw``)."""
    return " ".join(_WORD.findall(str(text).lower()))


def image_id_in(name: Any) -> int | None:
    """The COCO image id in a train2014 file name or path (``COCO_train2014_<12 digits>``), else None."""
    m = _IMAGE_ID.search(str(name or ""))
    return int(m.group(1)) if m else None


def as_box(value: Any) -> list[float] | None:
    """Four finite numbers as floats, else None."""
    try:
        box = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return box if len(box) == 4 and all(v == v and abs(v) != float("inf") for v in box) else None


def box_distance(a: Sequence[float], b: Sequence[float]) -> float:
    """The largest coordinate difference of two boxes of four numbers (inf when either is not one)."""
    if a is None or b is None or len(a) != 4 or len(b) != 4:
        return float("inf")
    return max(abs(float(p) - float(q)) for p, q in zip(a, b))


def xyxy_to_xywh(box: Sequence[float]) -> list[float]:
    """[x1, y1, x2, y2] as [x, y, w, h]."""
    x1, y1, x2, y2 = box
    return [x1, y1, x2 - x1, y2 - y1]


@dataclass
class ReferIndex:
    """One dataset's refer annotations, indexed (see the module doc)."""

    folder: Path
    refs_path: Path
    instances_path: Path
    refs: list[dict]
    images: dict[int, dict]
    anns: dict[int, dict]
    categories: list[dict]
    google: dict[int, str] = field(default_factory=dict)  # ref_id -> its split in refs(google).p, when there
    google_by_file: dict[str, dict] = field(default_factory=dict)  # refs(google).p by refer file name
    by_ref: dict[int, dict] = field(default_factory=dict)
    by_ann: dict[int, list[dict]] = field(default_factory=dict)
    by_file: dict[str, list[dict]] = field(default_factory=dict)
    anns_by_image: dict[int, list[dict]] = field(default_factory=dict)

    def __post_init__(self):
        for r in self.refs:
            self.by_ref[r["ref_id"]] = r
            self.by_ann.setdefault(r["ann_id"], []).append(r)
            if r.get("file_name"):
                self.by_file.setdefault(str(r["file_name"]), []).append(r)
        for a in self.anns.values():
            self.anns_by_image.setdefault(a["image_id"], []).append(a)

    def split_refs(self, split: str) -> list[dict]:
        """The refs of one split, in file order."""
        return [r for r in self.refs if r["split"] == split]

    def anns_at(self, image_id: int, box_xywh: Sequence[float], tol: float = BOX_TOL) -> list[dict]:
        """The annotations of an image whose box is within ``tol`` px of ``box_xywh``, nearest first."""
        close = [(box_distance(a["bbox"], box_xywh), a) for a in self.anns_by_image.get(image_id, [])]
        return [a for d, a in sorted(close, key=lambda x: x[0]) if d <= tol]

    def nearest_box(self, image_id: int, box_xywh: Sequence[float]) -> str:
        """The nearest annotation box of an image, for messages."""
        anns = sorted(self.anns_by_image.get(image_id, []), key=lambda a: box_distance(a["bbox"], box_xywh))
        if not anns:
            return f"image {image_id} is not in {self.instances_path.name}" if image_id not in self.images else \
                f"image {image_id} has no annotations"
        return f"nearest annotation {anns[0]['id']} at {[round(v, 2) for v in anns[0]['bbox']]}"

    def refs_at(self, image_id: int, box_xywh: Sequence[float]) -> list[dict]:
        """The refs whose annotation is on the image with (nearly) this box."""
        return [r for a in self.anns_at(image_id, box_xywh) for r in self.by_ann.get(a["id"], [])]

    @staticmethod
    def sentences_reading(ref: dict, text: Any) -> list[dict]:
        """The sentences of ``ref`` that read ``text`` (their ``sent`` or ``raw``, compared by
        :func:`norm_text`; a ref may hold the same expression twice)."""
        want = norm_text(text)
        return [s for s in ref["sentences"] if want and want in (norm_text(s.get("sent", "")), norm_text(s.get("raw", "")))]

    @classmethod
    def sentence(cls, ref: dict, text: Any) -> dict | None:
        """The first sentence of ``ref`` that reads ``text``, else None."""
        found = cls.sentences_reading(ref, text)
        return found[0] if found else None

    def source(self) -> dict:
        """The annotation files and their sha256, for the provenance."""
        return {"path": str(self.folder), "refs": {"file": self.refs_path.name, "sha256": file_sha256(self.refs_path)},
                "instances": {"file": self.instances_path.name, "sha256": file_sha256(self.instances_path)}}


def _records(value: Any, path: Path, what: str) -> list:
    if not isinstance(value, list):
        raise DataError(f"{path}: {what} is a {type(value).__name__}, not a list; not a refer annotation file: "
                        f"get the refer archive again (`cptbench data download TASK --to DIR --no-images`).")
    return value


def _check_ref(i: int, r: Any, path: Path) -> dict:
    ok = isinstance(r, dict) and all(k in r for k in ("ref_id", "ann_id", "image_id", "split", "sentences"))
    if ok:
        try:
            r["ref_id"], r["ann_id"], r["image_id"] = int(r["ref_id"]), int(r["ann_id"]), int(r["image_id"])
            ok = isinstance(r["sentences"], list) and all(isinstance(s, dict) and "sent_id" in s for s in r["sentences"])
        except (TypeError, ValueError):
            ok = False
    if not ok:
        raise DataError(f"{path}: record {i} is not a refer ref (ref_id, ann_id, image_id, split, sentences "
                        f"[{{sent_id, sent, raw}}]): {str(r)[:120]}; get the refer archive again.")
    return r


def find_refer_files(path: str | Path, dataset: str, refs_file: str) -> tuple[Path, Path]:
    """(refs file, instances.json) of ``dataset`` under ``path`` (a data root holding ``<dataset>/``, or
    the dataset folder itself); :class:`DataError` naming both places tried and the fix."""
    base = Path(path).expanduser()
    for folder in (base / dataset, base):
        if (folder / refs_file).is_file() and (folder / "instances.json").is_file():
            return folder / refs_file, folder / "instances.json"
    raise DataError(f"--annotations {base}: neither {base / dataset} nor {base} holds {refs_file} and instances.json. "
                    f"Point it at the refer folder (the data root of `cptbench data download {dataset} --to DIR "
                    f"--no-images`, which fetches the refer archive of about 50 MB, or the unpacked {dataset}.zip).")


def load_refer_index(path: str | Path, dataset: str, refs_file: str) -> ReferIndex:
    """The refer annotations of ``dataset`` (``refs_file``, e.g. ``refs(unc).p``) under ``path``, indexed."""
    refs_path, inst_path = find_refer_files(path, dataset, refs_file)
    refs = [_check_ref(i, r, refs_path) for i, r in enumerate(_records(load_plain_pickle(refs_path), refs_path, "the file"))]
    try:
        inst = json.loads(inst_path.read_bytes())
    except (OSError, ValueError) as exc:
        raise DataError(f"{inst_path}: not readable JSON ({exc}); get the refer archive again.") from None
    if not isinstance(inst, dict):
        raise DataError(f"{inst_path}: not a COCO instances object; get the refer archive again.")
    images, anns = {}, {}
    for i, im in enumerate(_records(inst.get("images"), inst_path, "'images'")):
        try:
            images[int(im["id"])] = im
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{inst_path}: images[{i}] has no integer id: {str(im)[:120]}; get the refer archive again.") from None
    for i, a in enumerate(_records(inst.get("annotations"), inst_path, "'annotations'")):
        try:
            a["id"], a["image_id"] = int(a["id"]), int(a["image_id"])
        except (TypeError, KeyError, ValueError):
            raise DataError(f"{inst_path}: annotations[{i}] has no integer id / image_id: {str(a)[:120]}; get the refer "
                            f"archive again.") from None
        anns[a["id"]] = a
    google: dict[int, str] = {}
    google_by_file: dict[str, dict] = {}
    gpath = refs_path.parent / "refs(google).p"
    if refs_file != "refs(google).p" and gpath.is_file():
        for i, r in enumerate(_records(load_plain_pickle(gpath), gpath, "the file")):
            r = _check_ref(i, r, gpath)
            google[r["ref_id"]] = str(r["split"])
            if r.get("file_name"):
                google_by_file[str(r["file_name"])] = r
    return ReferIndex(refs_path.parent, refs_path, inst_path, refs, images, anns, list(inst.get("categories") or []),
                      google, google_by_file)
