"""Loader for the classic refer layout (lichengunc/refer), used by RefCOCO, RefCOCO+, RefCOCOg and
by the bundled synthref benchmark alike.

``<root>/<dataset>/refs(<splitBy>).p``: a pickle list of refs (read with the plain-data unpickler);
``<root>/<dataset>/instances.json``: COCO annotations (read through pycocotools, quietly);
images in a folder the caller picks (:func:`cptbench.data.source.find_image_dir`).

Examples reach methods with an image *handle* (:class:`cptbench.data.images.ImageHandle`), never a path
into the data root. Degenerate data (:mod:`cptbench.data.quality`) is refused with a count and
examples, or dropped and counted with ``skip_bad=True``; boxes that reach past the image or have
zero area are kept and counted (refused with ``strict=True``, ``--strict-data``).
"""

from __future__ import annotations

import contextlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from cptbench.core.boxes import xywh_to_xyxy
from cptbench.data.examples import Example, Label, example_id
from cptbench.data.images import ImageSource
from cptbench.core.errors import DataError
from cptbench.data.proposals import Candidates, DetectionProposals
from cptbench.data.quality import QualityReport
from cptbench.data.safe_pickle import load_plain_pickle

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
    #: what ``skip_bad`` dropped: {"expressions": n, "candidates": n} (zeros when nothing was bad)
    skipped: dict[str, int]
    #: what the default box policy kept and counted, by :data:`cptbench.data.quality.KEPT_TITLES` key
    #: (candidates of the split's images reaching past the image or of zero area, and expressions
    #: whose ground-truth box is); zeros under ``strict``
    kept: dict[str, int] = field(default_factory=dict)
    #: the loading's report: every kept and refused box, named (what ``data check`` lists)
    quality: QualityReport | None = None


def _xywh(bbox) -> list[float]:
    """A COCO ``bbox`` as four floats; anything else as four NaNs (refused by the box policy, named
    in its message), so one malformed annotation never stops the loader with a traceback."""
    try:
        vals = [float(v) for v in bbox]
    except (TypeError, ValueError, OverflowError):
        return [float("nan")] * 4
    return vals if len(vals) == 4 else [float("nan")] * 4


class ReferDataset:
    """One dataset (e.g. refcoco with splitBy unc) in the refer layout."""

    def __init__(self, root: str | Path, dataset: str, split_by: str, images_dir: str | Path, image_layout: str = ""):
        self.root = Path(root)
        self.image_layout = image_layout or str(images_dir)
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
        self.images = ImageSource()
        for image_id in {int(r["image_id"]) for r in self.refs}:
            self.images.add(self.image_key(image_id), self.image_path(image_id))

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
            if not isinstance(ref["sentences"], list) or not ref["sentences"]:
                raise DataError(f"{self.refs_path}: ref {ref['ref_id']} has no sentences; remove the record or add its expressions.")
            for j, sent in enumerate(ref["sentences"]):
                if not isinstance(sent, dict) or "sent_id" not in sent:
                    raise DataError(f"{self.refs_path}: ref {ref['ref_id']} sentence #{j} has no 'sent_id' (a refer sentence is "
                                    f"{{sent_id, sent, raw, tokens}}). Repair or re-download this record.")
                try:
                    int(sent["sent_id"])
                except (TypeError, ValueError):
                    raise DataError(f"{self.refs_path}: ref {ref['ref_id']} sentence #{j} has sent_id {sent['sent_id']!r}, "
                                    f"not an integer. Repair or re-download this record.") from None
        counts = Counter(int(r["ref_id"]) for r in refs)
        if len(counts) != len(refs):
            dup = next(i for i, n in counts.items() if n > 1)
            raise DataError(f"{self.refs_path}: ref_id {dup} appears more than once; every ref needs its own id. Re-download the file.")
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
        """The split names of the refs, sorted."""
        return sorted({r["split"] for r in self.refs})

    def refs_of(self, split: str) -> list[dict]:
        """The refs of ``split``, in file order."""
        return [r for r in self.refs if r["split"] == split]

    def image_path(self, image_id: int) -> Path:
        """Where image ``image_id``'s file is expected: its ``file_name`` (else the COCO train2014 name) in
        the image folder."""
        info = self.coco.imgs[image_id]
        name = info.get("file_name") or f"COCO_train2014_{int(image_id):012d}.jpg"
        return self.images_dir / name

    @staticmethod
    def image_key(image_id: int) -> str:
        """The key of image ``image_id`` in :attr:`images`."""
        return f"image:{int(image_id)}"

    def image_size(self, image_id: int) -> tuple[int, int]:
        """(W, H) of image ``image_id`` from the annotations; 0 where unknown."""
        info = self.coco.imgs[image_id]
        return int(info.get("width") or 0), int(info.get("height") or 0)

    def gt_candidates(self, image_id: int) -> Candidates:
        """Every COCO annotation of image ``image_id`` as candidates (xyxy boxes, category names,
        segmentations)."""
        anns = self.coco.imgToAnns.get(image_id, [])
        boxes = xywh_to_xyxy(np.array([_xywh(a.get("bbox")) for a in anns], dtype=np.float64)).reshape(-1, 4)
        cats = tuple(self._categories.get(a["category_id"], "object") for a in anns)
        masks = tuple(a.get("segmentation") for a in anns)
        return Candidates(boxes, cats, masks, tuple(a.get("id") for a in anns), "annotation")

    def _sentences(self, refs: Iterable[dict], quality: QualityReport):
        """(ref, sentence id, text, (kind, why) of the ground-truth box) of ``refs`` (one split's) whose
        expression and ground-truth box are usable; the others are recorded in ``quality``."""
        for ref in refs:
            image_id = int(ref["image_id"])
            ann = self.coco.anns[ref["ann_id"]]
            target = quality.target(ann.get("bbox"), self.image_size(image_id))
            for sent in ref["sentences"]:
                sent_id = int(sent["sent_id"])
                text = _valid_text(str(sent.get("sent") or str(sent.get("raw") or "").lower()))
                if not text.strip():
                    quality.bad_expression(f"{self.refs_path}: ref {ref['ref_id']} sentence {sent_id} is empty")
                elif not any(ch.isalnum() for ch in text):
                    quality.bad_expression(f"{self.refs_path}: ref {ref['ref_id']} sentence {sent_id} is {text!r}, "
                                           f"which has no word (only punctuation)")
                elif target[0] == "bad":
                    quality.bad_expression(f"{self.instances_path}: annotation {ann.get('id')} (target of ref {ref['ref_id']}, "
                                           f"image {image_id}) has bbox {ann.get('bbox')!r}, which {target[1]}")
                else:
                    yield ref, sent_id, text, target

    def pairs(self, split: str, *, skip_bad: bool = False, strict: bool = False) -> list[tuple[int, int]]:
        """The (ref_id, sent_id) pairs of ``split`` the k-shot sampler draws from: the usable
        expressions whose ground-truth box is ``ok``. Expressions whose target reaches past the image
        or has zero area are left out of the pool under either policy (``strict`` refuses them, as it
        refuses any bad data, unless ``skip_bad``), so k-shot draws and saved manifests are the same
        with and without --strict-data, and as they were before such boxes were kept."""
        quality = QualityReport(split, strict)
        out = [(int(ref["ref_id"]), sent_id) for ref, sent_id, _, (kind, _) in self._sentences(self.refs_of(split), quality)
               if kind == "ok"]
        quality.raise_unless(skip_bad, what=f"split {split!r} of {self.dir}")
        return out

    def load_split(self, split: str, proposals: DetectionProposals | None = None,
                   ref_filter: Iterable[tuple[int, int]] | None = None, *, skip_bad: bool = False,
                   strict: bool = False) -> SplitData:
        """Examples (one per sentence) of ``split``; ``proposals=None`` means gt candidates.

        ``ref_filter``: only these (ref_id, sent_id) pairs (the k-shot manifest). Degenerate data
        (:mod:`cptbench.data.quality`) raises a :class:`DataError` with a count and examples,
        unless ``skip_bad`` (then it is dropped and counted in ``skipped``). Boxes reaching past the
        image and zero-area boxes are kept and counted in ``kept`` (refused as degenerate with
        ``strict``, ``--strict-data``)."""
        refs = self.refs_of(split)
        if not refs:
            raise DataError(f"{self.refs_path}: split {split!r} has no refs; the file has splits {self.splits()}.")
        wanted = set(map(tuple, ref_filter)) if ref_filter is not None else None
        setting = proposals.setting if proposals is not None else "gt"
        source = str(proposals.path) if proposals is not None else str(self.instances_path)
        quality = QualityReport(split, strict)
        examples: list[Example] = []
        labels: dict[str, Label] = {}
        cache: dict[int, Candidates] = {}
        for ref, sent_id, text, (kind, why) in self._sentences(refs, quality):
            if wanted is not None and (int(ref["ref_id"]), sent_id) not in wanted:
                continue
            image_id = int(ref["image_id"])
            if kind != "ok":
                quality.kept_target(kind, f"{self.instances_path}: annotation {ref['ann_id']} (target of ref "
                                          f"{ref['ref_id']} sentence {sent_id}, image {image_id}) has bbox "
                                          f"{self.coco.anns[ref['ann_id']].get('bbox')!r}, which {why}")
            size = self.image_size(image_id)
            if image_id not in cache:
                raw = proposals.for_image(image_id) if proposals is not None else self.gt_candidates(image_id)
                cache[image_id] = quality.clean_candidates(raw, size, f"{source}: image {image_id}")
            cand = cache[image_id]
            if cand.n == 0:
                quality.no_candidates(f"{source}: image {image_id} (ref {ref['ref_id']})")
            eid = example_id(ref["ref_id"], sent_id)
            examples.append(Example(
                example_id=eid, ref_id=int(ref["ref_id"]), sent_id=sent_id, image_id=image_id,
                image_handle=self.images.handle(self.image_key(image_id), size), image_size=size,
                expression=text, boxes=cand.boxes, categories=cand.categories, masks=cand.masks,
                split=split, candidate_key=f"{setting}:{image_id}",
            ))
            labels[eid] = Label(eid, xywh_to_xyxy(self.coco.anns[ref["ann_id"]]["bbox"]),
                                self.coco.anns[ref["ann_id"]].get("segmentation"))
        if wanted is not None:
            lost = sorted(wanted - {(e.ref_id, e.sent_id) for e in examples})
            if lost:
                raise DataError(f"{self.refs_path}: split {split!r} lacks the manifest's (ref_id, sent_id) pairs {lost[:5]} "
                                f"(or they are now unusable); the data changed since the k-shot manifest was written. "
                                f"Use a new --results folder, or delete the manifest to re-sample.")
            # a k-shot draw is judged on its own examples only
            quality.bad_expressions.clear()
        if proposals is not None and examples and all(e.n_candidates == 0 for e in examples):
            known = sorted(proposals.by_image)
            quality.hint = (f"{proposals.path} matches none of the images of split {split!r}: it lists "
                            f"{len(known)} image ids (e.g. {known[:3]}); is it the detections file of this dataset?")
        quality.raise_unless(skip_bad, what=f"split {split!r} of {self.dir}")
        return SplitData(split, examples, labels, setting, len(refs), {int(r["image_id"]) for r in refs},
                         quality.skipped(), quality.kept_counts(), quality)


def _valid_text(text: str) -> str:
    """``text`` with code points that cannot be written as UTF-8 (lone surrogates from a damaged
    file) replaced by ``?``, as a UTF-8 reader replaces invalid bytes."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace").decode("utf-8")
