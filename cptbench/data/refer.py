"""Loader for the classic refer layout (lichengunc/refer), used by RefCOCO, RefCOCO+, RefCOCOg and
by the bundled synthref benchmark alike.

``<root>/<dataset>/refs(<splitBy>).p``: a pickle list of refs (read with the plain-data unpickler);
``<root>/<dataset>/instances.json``: COCO annotations (read through pycocotools, quietly);
images under ``<root>/images/train2014`` unless another folder is given.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from ..boxes import xywh_to_xyxy
from ..examples import Example, Label, example_id
from .errors import DataError
from .proposals import Candidates, DetectionProposals
from .safe_pickle import load_plain_pickle

_REF_KEYS = ("ref_id", "ann_id", "image_id", "split", "sentences")


@dataclass
class SplitData:
    """The examples of one split, the labels kept apart, and the proposal setting used."""

    split: str
    examples: list[Example]
    labels: dict[str, Label]
    proposals: str
    n_refs: int
    image_ids: set[int]


class ReferDataset:
    """One dataset (e.g. refcoco with splitBy unc) in the refer layout."""

    def __init__(self, root: str | Path, dataset: str, split_by: str, images_dir: str | Path):
        self.root = Path(root)
        self.dir = self.root / dataset
        self.refs_path = self.dir / f"refs({split_by}).p"
        self.instances_path = self.dir / "instances.json"
        self.images_dir = Path(images_dir)
        for p, what in ((self.refs_path, "refs file"), (self.instances_path, "COCO instances file")):
            if not p.is_file():
                raise DataError(
                    f"{p}: {what} not found. --data-root must hold <dataset>/refs(<splitBy>).p and "
                    f"<dataset>/instances.json (the lichengunc/refer layout); got --data-root {self.root}."
                )
        self.refs = self._read_refs()
        self.coco = self._read_instances()
        self._categories = {c["id"]: c["name"] for c in self.coco.dataset.get("categories", [])}
        self._check_refs()

    # -- reading -------------------------------------------------------------------------------
    def _read_refs(self) -> list[dict]:
        refs = load_plain_pickle(self.refs_path)
        if not isinstance(refs, list):
            raise DataError(f"{self.refs_path}: expected a list of refs, got {type(refs).__name__}.")
        for i, ref in enumerate(refs):
            if not isinstance(ref, dict):
                raise DataError(f"{self.refs_path}: record {i} is a {type(ref).__name__}, not a dict.")
            missing = [k for k in _REF_KEYS if k not in ref]
            if missing:
                rid = ref.get("ref_id", f"#{i}")
                raise DataError(f"{self.refs_path}: ref {rid} lacks key(s) {missing}; a refer-format ref has {list(_REF_KEYS)}. Re-download or repair this record.")
            if not ref["sentences"]:
                raise DataError(f"{self.refs_path}: ref {ref['ref_id']} has no sentences; remove the record or add its expressions.")
        return refs

    def _read_instances(self):
        from pycocotools.coco import COCO

        with contextlib.redirect_stdout(io.StringIO()):
            try:
                return COCO(str(self.instances_path))
            except Exception as exc:  # json errors, wrong structure
                raise DataError(f"{self.instances_path}: cannot read COCO instances ({type(exc).__name__}: {exc}).") from exc

    def _check_refs(self) -> None:
        for ref in self.refs:
            if ref["ann_id"] not in self.coco.anns:
                raise DataError(f"{self.refs_path}: ref {ref['ref_id']} points to annotation {ref['ann_id']}, which {self.instances_path} does not have; the two files are from different releases.")
            if ref["image_id"] not in self.coco.imgs:
                raise DataError(f"{self.refs_path}: ref {ref['ref_id']} points to image {ref['image_id']}, missing from {self.instances_path}.")

    # -- access --------------------------------------------------------------------------------
    def splits(self) -> list[str]:
        return sorted({r["split"] for r in self.refs})

    def refs_of(self, split: str) -> list[dict]:
        return [r for r in self.refs if r["split"] == split]

    def image_path(self, image_id: int) -> Path:
        info = self.coco.imgs[image_id]
        name = info.get("file_name") or f"COCO_train2014_{int(image_id):012d}.jpg"
        return self.images_dir / name

    def gt_candidates(self, image_id: int) -> Candidates:
        anns = self.coco.imgToAnns.get(image_id, [])
        boxes = xywh_to_xyxy(np.array([a["bbox"] for a in anns], dtype=np.float64)).reshape(-1, 4)
        cats = tuple(self._categories.get(a["category_id"], "object") for a in anns)
        masks = tuple(a.get("segmentation") for a in anns)
        return Candidates(boxes, cats, masks)

    def load_split(self, split: str, proposals: DetectionProposals | None = None,
                   ref_filter: Iterable[tuple[int, int]] | None = None) -> SplitData:
        """Examples (one per sentence) of ``split``; ``proposals=None`` means gt candidates.

        ``ref_filter``: only these (ref_id, sent_id) pairs (the k-shot manifest)."""
        refs = self.refs_of(split)
        if not refs:
            raise DataError(f"{self.refs_path}: split {split!r} has no refs; the file has splits {self.splits()}.")
        wanted = set(map(tuple, ref_filter)) if ref_filter is not None else None
        setting = proposals.setting if proposals is not None else "gt"
        examples: list[Example] = []
        labels: dict[str, Label] = {}
        cache: dict[int, Candidates] = {}
        for ref in refs:
            image_id = int(ref["image_id"])
            ann = self.coco.anns[ref["ann_id"]]
            for sent in ref["sentences"]:
                sent_id = int(sent["sent_id"])
                if wanted is not None and (int(ref["ref_id"]), sent_id) not in wanted:
                    continue
                if image_id not in cache:
                    cache[image_id] = proposals.for_image(image_id) if proposals is not None else self.gt_candidates(image_id)
                cand = cache[image_id]
                info = self.coco.imgs[image_id]
                eid = example_id(ref["ref_id"], sent_id)
                text = sent.get("sent") or str(sent.get("raw", "")).lower()
                examples.append(Example(
                    example_id=eid, ref_id=int(ref["ref_id"]), sent_id=sent_id, image_id=image_id,
                    image_path=self.image_path(image_id),
                    image_size=(int(info["width"]), int(info["height"])),
                    expression=text, boxes=cand.boxes, categories=cand.categories, masks=cand.masks,
                    split=split, candidate_key=f"{setting}:{image_id}",
                ))
                labels[eid] = Label(eid, xywh_to_xyxy(ann["bbox"]), ann.get("segmentation"))
        if wanted is not None:
            found = {(e.ref_id, e.sent_id) for e in examples}
            lost = sorted(wanted - found)
            if lost:
                raise DataError(f"{self.refs_path}: split {split!r} lacks the manifest's (ref_id, sent_id) pairs {lost[:5]}; the data changed since the k-shot manifest was written. Delete the manifest to re-sample.")
        return SplitData(split, examples, labels, setting, len(refs), {int(r["image_id"]) for r in refs})
