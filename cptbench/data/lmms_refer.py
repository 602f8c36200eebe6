"""lmms-lab rows matched to the user's refer annotations (``--annotations``): each row (one object)
to its ref, so that a merged val is separated into the unc (umd) val refs and the rest, and every
imported split is checked ref by ref against the published one.

A row is matched, in this order, by its ``file_name`` (the refer file name
``COCO_train2014_<12 digits>_<n>.jpg``), by its ``question_id`` read as a COCO annotation id on that
image, or by image and box; its box must agree with the annotation's and every one of its
``answer`` texts must be an expression of that ref. Whether ``question_id`` is the COCO annotation
id (UNVERIFIED) is counted and reported, never assumed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from cptbench.core.errors import DataError
from cptbench.data.hf_convert import lmms_box, lmms_image_id
from cptbench.data.hf_splits import SplitDecision, expected
from cptbench.data.refer_index import BOX_TOL, ReferIndex, box_distance

_COLUMNS = ["file_name", "question_id", "bbox", "answer"]


@dataclass
class LmmsMatch:
    """One split's rows matched to refs: the refs kept (in row order), where the first row of each
    kept image is, and what was left out and how the rows were matched."""

    refs: list[dict] = field(default_factory=list)
    image_rows: dict[int, tuple] = field(default_factory=dict)  # image id -> (file, row index)
    how: Counter = field(default_factory=Counter)  # file_name / question_id / image and box
    qid_is_ann: int = 0
    rows: int = 0
    other: Counter = field(default_factory=Counter)  # left-out rows by the ref's own split(s)
    repeated: int = 0  # rows of a ref already kept


def _find_ref(index: ReferIndex, row: dict, where: str) -> tuple[dict | None, str, str]:
    """(ref, how it was matched, why not when it was not) for one lmms-lab row."""
    image_id = lmms_image_id(row, where)
    box = lmms_box(row, where)
    answers = [str(a) for a in row.get("answer") or ()]
    named = index.by_file.get(str(row.get("file_name")), [])
    if len(named) > 1:  # one refer file name for several refs: the one at this box
        named = [r for r in named if box_distance(index.anns.get(r["ann_id"], {}).get("bbox"), box) <= BOX_TOL] or named[:1]
    ref = named[0] if named else None
    how = "file_name"
    if ref is None:
        try:
            qid = int(str(row.get("question_id")))
        except ValueError:
            qid = None
        ann = index.anns.get(qid) if qid is not None else None
        if ann is not None and ann["image_id"] == image_id and box_distance(ann["bbox"], box) <= BOX_TOL and index.by_ann.get(qid):
            refs, how = index.by_ann[qid], "question_id"
        else:
            refs, how = index.refs_at(image_id, box), "image and box"
        if len(refs) > 1:  # refs of identical boxes: the one whose expressions these are
            refs = [r for r in refs if all(index.sentence(r, a) for a in answers)] or refs
        if len(refs) != 1:
            why = (f"no ref of {index.refs_path.name} on image {image_id} has box {box} ({index.nearest_box(image_id, box)})"
                   if not refs else f"{len(refs)} refs (ids {[r['ref_id'] for r in refs]}) fit it")
            return None, how, why
        ref = refs[0]
    ann_box = index.anns.get(ref["ann_id"], {}).get("bbox")
    if ref["image_id"] != image_id or box_distance(ann_box, box) > BOX_TOL:
        return None, how, (f"its {how} names ref {ref['ref_id']} (annotation {ref['ann_id']} of image {ref['image_id']}, "
                           f"box {ann_box}), but the row is image {image_id}, box {box}")
    wrong = [a for a in answers if not index.sentence(ref, a)]
    if wrong or not answers:
        return None, how, (f"matched ref {ref['ref_id']} by {how}, but its answer {wrong[0] if wrong else answers!r} is "
                           f"not one of that ref's expressions")
    return ref, how, ""


def match_split(task, index: ReferIndex, d: SplitDecision) -> LmmsMatch:
    """Match every row of one lmms-lab split to its ref; keep the refs of ``d.target`` (for a merged val,
    leave out the rest); refuse unless exactly the published refs of the split are kept."""
    m = LmmsMatch()
    unmatched: list[str] = []
    strays: list[str] = []
    kept: set[int] = set()
    for f in d.files:
        offset = 0
        for batch in f.batches(_COLUMNS):
            for i, row in enumerate(batch):
                where = f"{f.path}: row {offset + i}"
                m.rows += 1
                ref, how, why = _find_ref(index, row, where)
                gref = index.google_by_file.get(str(row.get("file_name"))) if ref is None and d.merged else None
                if gref is not None:  # a ref of the google split only (not in the unc / umd refs)
                    m.how["file_name"] += 1
                    m.other[f"google {gref['split']} only"] += 1
                    continue
                if ref is None:
                    unmatched.append(f"{where} (file_name {row.get('file_name')!r}): {why}")
                    continue
                m.how[how] += 1
                m.qid_is_ann += str(row.get("question_id")) == str(ref["ann_id"])
                if ref["split"] != d.target:
                    if not d.merged:
                        strays.append(f"{where}: ref {ref['ref_id']} is in {task.split_by} {ref['split']}, not {d.target}")
                    google = index.google.get(ref["ref_id"])
                    m.other[f"{task.split_by} {ref['split']}" + (f", google {google}" if google else "")] += 1
                elif ref["ref_id"] in kept:
                    m.repeated += 1
                else:
                    kept.add(ref["ref_id"])
                    m.refs.append(ref)
                    m.image_rows.setdefault(ref["image_id"], (f, offset + i))
            offset += len(batch)
    want = expected(task, d.target)
    published = {r["ref_id"] for r in index.split_refs(d.target)}
    problems = unmatched[:5] + strays[:5]
    if unmatched or strays or (want is not None and len(kept) != want) or kept != published:
        missing = len(published - kept)
        raise DataError(
            f"{d.hf_split} -> {task.name} {d.target}: refused. {m.rows:,} rows: {len(kept):,} are {task.split_by} "
            f"{d.target} refs (published: {want if want is not None else '?'}; {index.refs_path.name} has {len(published):,}, "
            f"{missing:,} of them in no row), {len(unmatched):,} match no ref of {index.refs_path}, {len(strays):,} are "
            f"refs of another split" + (":\n  " + "\n  ".join(problems) if problems else ".") +
            f"\nThe rows are not the {task.name} release the annotations are; check that --annotations is the "
            f"{task.dataset} refer folder, or import only the other splits (--splits).")
    return m


def describe_match(task, d: SplitDecision, m: LmmsMatch, index: ReferIndex) -> str:
    """One line for the decision's reason and the provenance: how the rows were matched and what was
    left out."""
    how = ", ".join(f"{n:,} by {k}" for k, n in m.how.most_common())
    text = f"{m.rows:,} rows matched to refs of {index.refs_path.name} ({how}); {len(m.refs):,} {task.split_by} {d.target} refs kept"
    if m.other:
        text += "; left out: " + ", ".join(f"{n:,} of {k}" for k, n in sorted(m.other.items()))
        if not index.google:
            text += " (no refs(google).p beside the refs to say which google split)"
        else:
            odd = sum(n for k, n in m.other.items() if not k.endswith(f"google {d.target}") and k != f"google {d.target} only")
            if odd:
                text += f" ({odd:,} of them in no google {d.target} either: not the merge lmms-lab's val is known to be)"
    if m.repeated:
        text += f"; {m.repeated:,} repeated rows of kept refs left out"
    qid = ("question_id is the COCO annotation id in every row" if m.qid_is_ann == m.rows else
           f"question_id is the COCO annotation id in {m.qid_is_ann:,} of {m.rows:,} rows (not an id to rely on)")
    return f"{text}; {qid}"
