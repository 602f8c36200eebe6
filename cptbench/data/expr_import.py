"""Per-expression copies (Qwen-VL / InternVL JSONL, MDETR, Kangheng-style parquet: read by
:mod:`cptbench.data.expr_inputs`) imported as splits of a task. They carry no ref ids, so every
expression is matched to a ref of the user's refer annotations (``--annotations``) by image and box
(and annotation id when the copy gives one) and to one of its sentences by text; a split is
imported only when every expression matches a distinct sentence of that split and the count is
exactly the published number of expressions. The data root written is the refer layout (the
annotations' own refs of those splits, the annotations of their images), with the copy's embedded
images written as files when it has them.
"""

from __future__ import annotations

from pathlib import Path

from cptbench.core.errors import DataError
from cptbench.core.hashing import file_sha256
from cptbench.data.expr_inputs import ExprRecord, ExprSource
from cptbench.data.hf_splits import SplitDecision, expected, refusal_message
from cptbench.data.import_write import (ImportResult, check_output, images_summary, split_totals, write_refer_files,
                                        write_row_images)
from cptbench.data.refer_index import BOX_TOL, ReferIndex, box_distance, xyxy_to_xywh

_SAMPLE = 200


def to_xywh(box: list[float], fmt: str, size: tuple[float, float] | None) -> list[float] | None:
    """A copy's box as [x, y, w, h] pixels under convention ``fmt`` (``xyxy`` / ``xywh``, with
    `` normalised`` for [0, 1] coordinates scaled by the image ``size``)."""
    if fmt.endswith("normalised"):
        if not size or max(box) > 1.5:
            return None
        w, h = size
        box = [box[0] * w, box[1] * h, box[2] * w, box[3] * h]
    return xyxy_to_xywh(box) if fmt.startswith("xyxy") else list(box)


def _size(index: ReferIndex, image_id: int) -> tuple[float, float] | None:
    im = index.images.get(image_id) or {}
    return (float(im["width"]), float(im["height"])) if im.get("width") and im.get("height") else None


def decide_box_format(source: ExprSource, index: ReferIndex) -> tuple[str, str]:
    """The box convention of the copy: the declared one, or (schema UNVERIFIED) the one under which
    most of a sample of records lands on an annotation of its image; with the evidence."""
    if source.box_format != "decide":
        return source.box_format, ""
    sample = [r for recs in source.records.values() for r in recs][:_SAMPLE]
    scores = {}
    for fmt in ("xyxy", "xywh", "xyxy normalised", "xywh normalised"):
        scores[fmt] = sum(1 for r in sample if (b := to_xywh(r.box, fmt, _size(index, r.image_id))) and index.anns_at(r.image_id, b))
    best = max(scores, key=scores.get)
    if not sample or scores[best] == 0:
        shown = "; ".join(f"{r.where}: image {r.image_id}, box {r.box} ({index.nearest_box(r.image_id, r.box)})" for r in sample[:3])
        raise DataError(f"the boxes of this copy land on no annotation of {index.instances_path} under any convention tried "
                        f"({', '.join(scores)}): {shown}. The copy is not of the release the annotations are.")
    return best, f"box read as [{best}] (decided from the rows: {scores[best]} of {len(sample)} sampled rows land on an annotation)"


def _match(rec: ExprRecord, fmt: str, index: ReferIndex) -> tuple[list[tuple[dict, dict]], str]:
    """The (ref, sentence) pairs an expression can be, and why none when there are none."""
    if rec.image_id not in index.images:
        return [], f"image {rec.image_id} is not in {index.instances_path.name}"
    size = _size(index, rec.image_id)
    if rec.size and size and tuple(map(float, rec.size)) != size:
        return [], f"the copy says image {rec.image_id} is {rec.size[0]}x{rec.size[1]}, the annotations {int(size[0])}x{int(size[1])}"
    box = to_xywh(rec.box, fmt, size)
    if box is None:
        return [], f"box {rec.box} is not [{fmt}]"
    if rec.ann_id is not None:
        ann = index.anns.get(rec.ann_id)
        refs = [r for r in index.by_ann.get(rec.ann_id, []) if r["image_id"] == rec.image_id]
        if not refs or ann is None or box_distance(ann["bbox"], box) > BOX_TOL:
            return [], (f"annotation {rec.ann_id} of image {rec.image_id} is no ref's there, or its box is not {box} "
                        f"({index.nearest_box(rec.image_id, box)})")
    else:
        refs = index.refs_at(rec.image_id, box)
        if not refs:
            return [], f"no ref on image {rec.image_id} has box {[round(v, 2) for v in box]} ({index.nearest_box(rec.image_id, box)})"
    pairs = [(r, s) for r in refs for s in index.sentences_reading(r, rec.text)]
    if not pairs:
        return [], f"ref(s) {[r['ref_id'] for r in refs]} at that box have no expression reading {rec.text!r}"
    return pairs, ""


def match_split(task, split: str, records: list[ExprRecord], fmt: str, index: ReferIndex, label: str) -> list[dict]:
    """Match every expression of a split to a distinct sentence of that split's refs; the refs, or a
    :class:`DataError` with the counts and the first records that did not match."""
    used: dict[int, str] = {}
    unmatched, strays, repeats = [], [], []
    for rec in records:
        pairs, why = _match(rec, fmt, index)
        if not pairs:
            unmatched.append(f"{rec.where}: {why}")
            continue
        free = [(r, s) for r, s in pairs if int(s["sent_id"]) not in used]
        if not free:
            repeats.append(f"{rec.where}: repeats the expression of {used[int(pairs[0][1]['sent_id'])]}")
            continue
        ref, sent = free[0]
        used[int(sent["sent_id"])] = rec.where
        if ref["split"] != split:
            strays.append(f"{rec.where}: is ref {ref['ref_id']} of {task.split_by} {ref['split']}, not {split}")
    refs = index.split_refs(split)
    published = {int(s["sent_id"]) for r in refs for s in r["sentences"]}
    want = expected(task, split, "sentences")
    covered = len(published & set(used))
    if unmatched or strays or repeats or covered != len(published) or (want is not None and len(records) != want):
        shown = (unmatched[:4] + strays[:3] + repeats[:3])
        raise DataError(
            f"{label} -> {task.name} {split}: refused. {len(records):,} expressions (published: "
            f"{want if want is not None else '?'}); {covered:,} of the {len(published):,} expressions of {split} in "
            f"{index.refs_path.name} matched; {len(unmatched):,} match no ref, {len(strays):,} are of another split, "
            f"{len(repeats):,} repeat one" + (":\n  " + "\n  ".join(shown) if shown else ".") +
            f"\nThe copy is not the {task.name} {split} the annotations hold; check that --annotations is the "
            f"{task.dataset} refer folder, or import only the splits that fit (--splits).")
    return refs


def import_expressions(task, source: ExprSource, root: Path, index: ReferIndex, *, splits=None, force: bool = False,
                       hf_dataset: str | None = None, revision: str | None = None, source_text: str = "") -> ImportResult:
    """Import a per-expression copy's splits (see the module doc); nothing is written unless every
    split asked for checks out."""
    order = [task.train_split, *task.eval_splits]
    decisions = [SplitDecision(name, n, None, "skipped", why) for name, (n, why) in source.left_out.items()]
    for split, records in sorted(source.records.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 99):
        d = SplitDecision(split, len(records), split if split in order else None, "import", "")
        want = expected(task, split, "sentences")
        files = source.origins.get(split, [])
        if d.target is None:
            d.status, d.reason = "skipped", f"not a split of {task.name}"
        elif splits is not None and split not in splits:
            d.status, d.reason = "skipped", f"not asked for (--splits {','.join(splits)})"
        elif len(files) > 1 and source.kind != "per-expression parquet":
            d.status, d.reason = "refused", f"{len(files)} files hold {split} ({', '.join(files)}): pass one of them"
        elif want is not None and len(records) != want:
            d.status, d.reason = "refused", f"{len(records):,} expressions, but {task.name} {split} has {want:,}"
        else:
            d.reason = f"{len(records):,} expressions" + (f" = the published {want:,}" if want is not None else "")
        decisions.append(d)
    if any(d.status == "refused" for d in decisions) or not any(d.used for d in decisions):
        raise DataError(refusal_message(task, decisions, source_text, unit="expressions"))
    check_output(task, root, force, index.folder)
    fmt, fmt_note = decide_box_format(source, index)
    refs = []
    for d in decisions:
        if d.used:
            refs += match_split(task, d.target, source.records[d.target], fmt, index, d.hf_split)
            d.reason = (f"{d.rows:,} expressions = the published {expected(task, d.target, 'sentences') or d.rows:,}, each "
                        f"matched to a distinct sentence of {index.refs_path.name} {d.target}")
    image_ids = sorted({r["image_id"] for r in refs})
    image_dir = root / task.image_dir
    written = kept = 0
    images = {i: index.images[i] for i in image_ids}
    if source.image_column:
        needed = {}
        for d in decisions:
            for rec in source.records.get(d.target, []) if d.used else []:
                needed.setdefault(rec.image_id, rec.image_at)
        got, written, kept = write_row_images({i: needed[i] for i in image_ids if i in needed}, source.image_column, image_dir, index)
        images.update(got)
    anns = [a for i in image_ids for a in index.anns_by_image.get(i, [])]
    caveats = [f"{source.kind}: each expression matched to the refer annotations (--annotations {index.folder}); refs, "
               f"ids, categories and candidates are those files'"]
    caveats += [c for c in (fmt_note,) if c]
    if source.roles:
        caveats.append("columns read: " + ", ".join(f"{k} from {v!r}" for k, v in source.roles.items()) +
                       " (the schema of this copy is not verified: found by name and type)")
    missing = [s for s in order if not any(r["split"] == s for r in refs)]
    if missing:
        caveats.append(f"not in this import: split(s) {', '.join(missing)}"
                       + (f" (k-shot runs need {task.train_split})" if task.train_split in missing else ""))
    kind = "huggingface" if source.kind.endswith("parquet") else "expressions"
    src = {"kind": kind, "dataset": hf_dataset, "revision": revision, "layout": source.kind,
           "note": f"{source.kind} ({len(source.files)} file(s)), matched to the refer annotations at {index.folder}",
           "files": [{"path": str(p), "size": p.stat().st_size, "sha256": file_sha256(p)} for p in source.files],
           "splits": {d.hf_split: {"rows": d.rows, "as": d.target, "status": d.status, "reason": d.reason} for d in decisions},
           "annotations": index.source()}
    record = images_summary(image_dir, len(image_ids), written, kept, "embedded in the parquet files") if source.image_column else None
    paths = write_refer_files(task, root, refs, list(images.values()), anns, index.categories, src, caveats, record)
    n_refs, n_sents = split_totals(refs)
    return ImportResult(task.name, source.kind, decisions, n_refs, n_sents, len(image_ids), written, kept, caveats, paths)
