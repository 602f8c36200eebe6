"""``cptbench data check``: validate a download against the task card's known sizes, the images
runs need, and the provenance record of the annotation files.

* Counts per split (sentences, refs, images) against the card's ``expected_counts``.
* Images: every image of the eval splits must be there; of the train split, those of the k-shot
  draws runs make (k x seeds, drawn as :meth:`cptbench.run.session.DataSession.manifest` draws
  them; all of them with ``all_train``). Train images nothing draws are counted, not required.
* Damaged images: every image of the task on disk is checked as runs check it (header, size, end
  marker; a full decode for :data:`cptbench.data.images.KNOWN_DAMAGED`).
* Boxes (:mod:`cptbench.data.box_policy`), of every split, for the ground-truth candidates and a
  detections file: every box reaching past the image or of zero area (kept by default, refused with
  ``strict``) and every box or expression a run refuses, named.
* No image in both train and an eval split.
* Provenance (:data:`cptbench.run.fingerprint.SOURCE_FILE`, written by ``data download`` / ``data
  import``): where the annotation files came from, and whether they still have the recorded sha256.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from cptbench.data.provenance import SOURCE_FILE
from cptbench.tasks.spec import TaskSpec
from cptbench.core.defaults import DEFAULT_SEEDS
from cptbench.data.image_download import DEFAULT_SHOTS, kshot_images
from cptbench.data.images import check_image_file
from cptbench.data.provenance import FileCheck, check_files, load_provenance
from cptbench.core.errors import DataError
from cptbench.data.refer import ReferDataset

__all__ = ["SplitReport", "ProvenanceReport", "BoxReport", "CheckReport", "check_provenance", "check_boxes",
           "check_dataset"]


@dataclass
class SplitReport:
    """One split's counts against the card's expected ones, and the images runs need that are missing."""

    split: str
    sentences: int
    refs: int
    images: int
    expected: dict[str, int | None]
    missing_images: int  # images runs need that are missing (a problem)
    missing_examples: list[str] = field(default_factory=list)
    not_needed_missing: int = 0  # train images no k-shot draw uses, not on disk (fine)
    damaged: list[str] = field(default_factory=list)  # images on disk that runs refuse (one line each)

    @property
    def mismatches(self) -> list[str]:
        """One line per count (sentences, refs, images) that differs from the card's."""
        out = []
        for key in ("sentences", "refs", "images"):
            want = self.expected.get(key)
            if want is not None and getattr(self, key) != want:
                out.append(f"{key} {getattr(self, key)} != expected {want}")
        return out


@dataclass
class ProvenanceReport:
    """The annotation files against their provenance record; ``error`` says why a record could not be read."""

    path: str
    record: dict[str, Any] | None
    files: list[FileCheck]
    error: str = ""

    @property
    def ok(self) -> bool:
        """True when the record is readable and no file changed since it was recorded."""
        return not self.error and all(f.ok for f in self.files)

    @property
    def source_text(self) -> str:
        """Where the files came from, in one line (a URL or file, a Hugging Face dataset, or a note)."""
        if self.record is None:
            return "no record: these files were not fetched by `cptbench data download` or `data import`"
        src = self.record.get("source") or {}
        kind = src.get("kind")
        if kind in ("url", "file"):
            extra = ", ".join(x for x in (f"{src['size']:,} bytes" if src.get("size") else "",
                                          f"sha256 {src['sha256']}" if src.get("sha256") else "") if x)
            return f"{src.get('url')} ({extra}; {src.get('checksum', '')})"
        if kind == "huggingface":
            rev = src.get("revision") or "revision unknown"
            return f"Hugging Face {src.get('dataset') or '?'} @ {rev}, {src.get('layout')} layout, {len(src.get('files') or [])} file(s)"
        return str(src.get("note") or kind or "unknown")


def check_provenance(ds: ReferDataset) -> ProvenanceReport:
    """The annotation files against their provenance record; a malformed record is reported in
    ``error`` (the check fails) with the files shown as having no record."""
    record, error = None, ""
    try:
        record = load_provenance(ds.dir)
    except DataError as exc:
        error = str(exc)
    files = check_files(ds.dir, [ds.refs_path.name, ds.instances_path.name], record)
    return ProvenanceReport(str(ds.dir / SOURCE_FILE), record, files, error)


@dataclass
class BoxReport:
    """The boxes of one candidate source (``gt`` or a detections setting) in every split, as the
    policy (``strict``: --strict-data) judges them: each split's data as loaded, with its
    :class:`~cptbench.data.quality.QualityReport` naming every kept and refused box."""

    source: str
    strict: bool
    splits: dict[str, Any]  # split -> SplitData

    def kept(self) -> list[tuple[str, str, list[str]]]:
        """(split, title, lines) of each kind of box kept by the default policy, splits in order."""
        from cptbench.data.quality import KEPT_TITLES

        return [(split, KEPT_TITLES[k], items) for split, sd in self.splits.items()
                for k, items in sd.quality.kept.items() if items]

    def refused(self) -> list[tuple[str, str, list[str]]]:
        """(split, title, lines) of each kind of problem a run refuses (without --skip-bad)."""
        out = []
        for split, sd in self.splits.items():
            q = sd.quality
            for title, items in q.problems():
                # no candidate at all is a matter of the detections' coverage (reported apart), and the
                # expressions' own problems are reported with the ground truth
                if items is q.without_candidates or (self.source != "gt" and items is q.bad_expressions):
                    continue
                out.append((split, title, items))
        return out

    def without_candidates(self) -> dict[str, int]:
        """Expressions whose image has no candidate, per split (kept as misses with --skip-bad)."""
        return {split: len(sd.quality.without_candidates) for split, sd in self.splits.items()
                if sd.quality.without_candidates}

    @property
    def ok(self) -> bool:
        """True when a run refuses nothing of it (boxes past the image, zero-area ones are kept)."""
        return not self.refused()


def check_boxes(task: TaskSpec, ds: ReferDataset, proposals=None, *, strict: bool = False) -> BoxReport:
    """Every split of ``task`` (train, then the eval splits) loaded with ``proposals`` (``None``:
    the ground-truth candidates) under the box policy, nothing refused (what would be is reported)."""
    splits = {split: ds.load_split(split, proposals, skip_bad=True, strict=strict)
              for split in [task.train_split, *task.eval_splits] if ds.refs_of(split)}  # an empty split: the counts say so
    return BoxReport("gt" if proposals is None else proposals.setting, strict, splits)


@dataclass
class CheckReport:
    """What ``cptbench data check`` found for one task."""

    task: str
    refs_path: str
    images_dir: str
    splits: list[SplitReport]
    shared_images: dict[str, int]  # eval split -> images also in train
    image_layout: str = ""
    provenance: ProvenanceReport | None = None
    needed_for: str = ""  # what the train images were checked for
    boxes: list[BoxReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every count matches, no needed image is missing, no image on disk is damaged, no
        eval image is also a train image, runs refuse no box and the provenance check passes."""
        return (all(not s.mismatches and not s.missing_images and not s.damaged for s in self.splits)
                and not any(self.shared_images.values()) and all(b.ok for b in self.boxes)
                and (self.provenance is None or self.provenance.ok))

    def to_json(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (``data check --format json``): counts, missing and damaged
        images, provenance and the boxes kept or refused per candidate source."""
        prov = self.provenance
        return {
            "task": self.task, "ok": self.ok, "refs_path": self.refs_path, "images_dir": self.images_dir,
            "image_layout": self.image_layout, "train_images_checked": self.needed_for,
            "splits": [{"split": s.split, "sentences": s.sentences, "refs": s.refs, "images": s.images,
                        "expected": s.expected, "mismatches": s.mismatches, "missing_images": s.missing_images,
                        "missing_examples": s.missing_examples, "not_needed_missing": s.not_needed_missing,
                        "damaged": s.damaged, "shared_with_train": self.shared_images.get(s.split)}
                       for s in self.splits],
            "provenance": None if prov is None else {
                "path": prov.path, "ok": prov.ok, "source": prov.source_text, "error": prov.error, "record": prov.record,
                "files": [{"name": f.name, "size": f.size, "sha256": f.sha256, "status": f.status, "ok": f.ok}
                          for f in prov.files]},
            "boxes": [{"source": b.source, "strict": b.strict, "ok": b.ok,
                       "kept": [{"split": sp, "what": what, "items": items} for sp, what, items in b.kept()],
                       "refused": [{"split": sp, "what": what, "items": items} for sp, what, items in b.refused()],
                       "without_candidates": b.without_candidates()} for b in self.boxes],
        }


def check_dataset(task: TaskSpec, ds: ReferDataset, check_images: bool = True, *,
                  shots: Sequence[int] = DEFAULT_SHOTS, seeds: Sequence[int] = DEFAULT_SEEDS,
                  all_train: bool = False, strict: bool = False, boxes: bool = True, proposals=None) -> CheckReport:
    """Check ``ds`` against ``task``'s card: counts per split (train included), the images runs need
    (those of the eval splits and of the k-shot draws ``shots`` x ``seeds``, or every train image with
    ``all_train``; none without ``check_images``) and damaged images on disk, images shared by train
    and an eval split, the provenance record, and (``boxes``) the boxes of the ground-truth candidates
    and of ``proposals`` (detections) under the box policy (``strict``: --strict-data)."""
    reports = []
    image_sets: dict[str, set[int]] = {}
    needed_train = None
    if check_images and not all_train:
        needed_train, _ = kshot_images(task, ds, shots, seeds, strict=strict)
    for split in [task.train_split, *task.eval_splits]:
        refs = ds.refs_of(split)
        images = {int(r["image_id"]) for r in refs}
        image_sets[split] = images
        present = {i: ds.image_path(i).is_file() for i in sorted(images)} if check_images else {}
        missing = [i for i, here in present.items() if not here]
        damaged = [p for i, here in present.items() if here for p in [check_image_file(ds.image_path(i), ds.image_size(i))] if p]
        optional = 0
        if split == task.train_split and needed_train is not None:
            optional = sum(1 for i in missing if i not in needed_train)
            missing = [i for i in missing if i in needed_train]
        exp = task.expected_counts.get(split)
        reports.append(SplitReport(
            split, sum(len(r["sentences"]) for r in refs), len(refs), len(images),
            {"sentences": exp.sentences, "refs": exp.refs, "images": exp.images} if exp else {},
            len(missing), [str(ds.image_path(i)) for i in missing[:3]], optional, damaged,
        ))
    shared = {s: len(image_sets[s] & image_sets[task.train_split]) for s in task.eval_splits}
    needed_for = ("all train images" if all_train else
                  f"train images of the k-shot draws k in {','.join(map(str, shots))} x seeds {','.join(map(str, seeds))}")
    box_reports = []
    if boxes:
        box_reports.append(check_boxes(task, ds, strict=strict))
        if proposals is not None:
            box_reports.append(check_boxes(task, ds, proposals, strict=strict))
    return CheckReport(task.name, str(ds.refs_path), str(ds.images_dir), reports, shared, ds.image_layout,
                       check_provenance(ds), needed_for, box_reports)
