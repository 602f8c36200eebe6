"""Importing copies of RefCOCO / RefCOCO+ / RefCOCOg into the refer layout the loader reads
(``<root>/<dataset>/refs(<splitBy>).p`` + ``instances.json``, images under the card's image folder),
with their caveats checked and stated, never used silently.

Reading the copy's files is :mod:`cptbench.data.hf_inputs` (parquet / arrow) and
:mod:`cptbench.data.expr_inputs` (the per-expression JSONL, MDETR and parquet copies); their columns
and types :mod:`cptbench.data.hf_schema`; which split becomes which :mod:`cptbench.data.hf_splits`;
rows into records :mod:`cptbench.data.hf_convert`; the refer annotations a copy is matched to
(``annotations``) :mod:`cptbench.data.refer_index`, :mod:`cptbench.data.lmms_refer` and
:mod:`cptbench.data.expr_import`. Here the copy is recognised and each path run:

* jxu124 / lmms-lab rows converted: both copies hold only the *referred* objects, not every COCO
  annotation of an image, so the ground-truth candidates would differ from the refer files'.
  ``coco_instances`` (COCO's ``instances_train2014.json``) or the ``annotations``' instances.json
  restores every annotation of each image; without either the import is refused unless
  ``referred_only`` accepts the smaller candidate sets (a caveat in the provenance and every record).
* lmms-lab with ``annotations``: every row matched to its ref (a merged val separated that way).
* per-expression copies: always matched to the ``annotations``.

Any count that does not fit is refused with the counts, the split and the fix; nothing is written.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

from cptbench.core.errors import DataError
from cptbench.core.hashing import file_sha256
from cptbench.data.expr_import import import_expressions
from cptbench.data.expr_inputs import ExprSource, expression_files, read_expr_parquet, read_mdetr, read_qwen_jsonl
from cptbench.data.hf_convert import Converted, coco_categories, complete_from_coco, convert_jxu124, convert_lmms
from cptbench.data.hf_inputs import hub_identity, scan_inputs, table_files
from cptbench.data.hf_schema import check_columns, detect_layout
from cptbench.data.hf_splits import expected, plan_import, refusal_message, whole_split
from cptbench.data.import_write import (ImportResult, check_output, images_summary, no_progress, split_totals,
                                        write_refer_files, write_row_images)
from cptbench.data.lmms_refer import describe_match, match_split
from cptbench.data.refer_index import ReferIndex, load_refer_index


def _needs_annotations(what: str, task) -> DataError:
    return DataError(f"{what} carries no ref ids: each expression is matched to its ref in the refer annotations. Pass "
                     f"--annotations DIR, the refer folder of {task.dataset} ({task.refs_file} + instances.json; "
                     f"`cptbench data download {task.name} --to DIR --no-images` fetches its archive, about 50 MB).")


def _rows_are_expressions(task, files) -> bool:
    """Whether an lmms-lab-like copy has one row per expression (every split's rows = the published
    expressions, none = the published refs), as a per-expression copy with those columns would."""
    rows: dict[str, int] = {}
    for f in files:
        rows[f.hf_split] = rows.get(f.hf_split, 0) + f.rows
    named = {("val" if s == "validation" else s): n for s, n in rows.items()}
    checked = [(n, expected(task, s, "sentences"), expected(task, s)) for s, n in named.items() if expected(task, s, "sentences")]
    return bool(checked) and all(n == sents and n != refs for n, sents, refs in checked)


def import_hf(task, inputs: Sequence[str | Path], root: str | Path, *, splits: Sequence[str] | None = None,
              coco_instances: str | Path | None = None, referred_only: bool = False,
              annotations: str | Path | None = None, hf_dataset: str | None = None, revision: str | None = None,
              force: bool = False, progress: Callable[[str, int, int | None], None] = no_progress) -> ImportResult:
    """Convert a copy (parquet / arrow files or a dataset folder; per-expression JSONL or MDETR JSON
    files) into ``<root>``'s refer layout as ``task``. Refuses (nothing written) when a split's count
    does not fit, when the output exists (unless ``force``), or when only the referred objects would
    be candidates (unless ``coco_instances`` / ``annotations`` complete them or ``referred_only``)."""
    root = Path(root).expanduser()
    source_text = ", ".join(map(str, inputs))
    if annotations is not None and (coco_instances is not None or referred_only):
        raise DataError("--annotations gives every annotation of each image already: drop --coco-instances / --referred-only.")
    exprs, tables = expression_files(inputs), table_files(inputs)
    if exprs and tables:
        raise DataError(f"{source_text}: mixes parquet / arrow files with per-expression files ({exprs[0].name}); import "
                        f"one copy at a time.")
    hub_id, hub_rev = hub_identity(inputs)
    if exprs:
        kinds = {"qwen-vl-jsonl" if p.suffix == ".jsonl" else "mdetr" for p in exprs}
        if len(kinds) > 1:
            raise DataError(f"{source_text}: mixes Qwen-VL JSONL and MDETR files; import one copy at a time.")
        kind = kinds.pop()
        if annotations is None:
            raise _needs_annotations("A Qwen-VL / InternVL JSONL copy" if kind == "qwen-vl-jsonl" else "An MDETR annotation file", task)
        source = ExprSource(kind, "xyxy" if kind == "qwen-vl-jsonl" else "xywh", [])
        for p in exprs:
            (read_qwen_jsonl if kind == "qwen-vl-jsonl" else read_mdetr)(p, task, source)
        index = load_refer_index(annotations, task.dataset, task.refs_file)
        return import_expressions(task, source, root, index, splits=splits, force=force, hf_dataset=hf_dataset,
                                  revision=revision, source_text=source_text)
    files = scan_inputs(inputs)
    layout = detect_layout(files)
    if layout == "per-expression" or (layout == "lmms-lab" and _rows_are_expressions(task, files)):
        source = ExprSource("per-expression parquet", "decide", [])
        by_split: dict[str, list] = {}
        for f in files:
            by_split.setdefault(f.hf_split, []).append(f)
        read_expr_parquet([f for name, group in by_split.items() for f in whole_split(name, group, layout)[0]], task, source)
        if annotations is None:
            raise _needs_annotations("A per-expression copy (one row per expression, e.g. Kangheng/refcoco)", task)
        index = load_refer_index(annotations, task.dataset, task.refs_file)
        return import_expressions(task, source, root, index, splits=splits, force=force, hf_dataset=hf_dataset or hub_id,
                                  revision=revision or hub_rev, source_text=source_text)
    for f in files:
        check_columns(f, layout)
    index = load_refer_index(annotations, task.dataset, task.refs_file) if annotations is not None else None
    decisions = plan_import(task, files, layout, splits, annotations=index is not None)
    if any(d.status == "refused" for d in decisions) or not any(d.used for d in decisions):
        raise DataError(refusal_message(task, decisions, source_text))
    if index is not None and layout == "jxu124":
        coco_instances = index.instances_path
    if coco_instances is None and index is None and not referred_only:
        raise DataError(f"{source_text}: the {layout} copy holds only the referred objects of each image, not all of its "
                        f"COCO annotations, so the ground-truth candidates would differ from the refer files' (fewer, "
                        f"mostly same-category objects). Pass --coco-instances instances_train2014.json (COCO's "
                        f"annotations_trainval2014.zip) or --annotations DIR (the refer folder) to restore them, or "
                        f"--referred-only to accept the smaller candidate sets (recorded as a caveat in every run record).")
    check_output(task, root, force, index.folder if index is not None else None)
    meta = {"dataset": hf_dataset or hub_id, "revision": revision or hub_rev, "layout": layout,
            "files": [{"path": str(f.path), "split": f.hf_split, "rows": f.rows, "size": f.path.stat().st_size,
                       "sha256": file_sha256(f.path)} for f in files]}
    if layout == "lmms-lab" and index is not None:
        return _import_lmms_refer(task, decisions, index, root, meta)
    return _convert(task, decisions, layout, root, meta, coco_instances, progress)


def _missing_splits(task, refs) -> list[str]:
    missing = [s for s in [task.train_split, *task.eval_splits] if not any(r["split"] == s for r in refs)]
    return [f"not in this copy: split(s) {', '.join(missing)}"
            + (f" (k-shot runs need {task.train_split})" if task.train_split in missing else "")] if missing else []


def _import_lmms_refer(task, decisions, index: ReferIndex, root: Path, meta: dict) -> ImportResult:
    """lmms-lab rows matched to the refer annotations: the refs kept are the annotations' own, the
    images come from the parquet."""
    refs, needed, caveats = [], {}, []
    for d in decisions:
        if not d.used:
            continue
        m = match_split(task, index, d)
        d.reason = describe_match(task, d, m, index)
        caveats.append(f"{d.hf_split}: {d.reason}")
        refs += m.refs
        for image_id, at in m.image_rows.items():
            needed.setdefault(image_id, at)
    caveats.insert(0, f"lmms-lab rows matched to the refer annotations (--annotations {index.folder}): refs, ids, "
                      f"sentences, categories and candidates are those files'; the images come from the parquet files")
    caveats += _missing_splits(task, refs)
    image_dir = root / task.image_dir
    images, written, kept = write_row_images(needed, "image", image_dir, index)
    anns = [a for i in images for a in index.anns_by_image.get(i, [])]
    source = {"kind": "huggingface", **meta, "annotations": index.source(),
              "splits": {d.hf_split: {"rows": d.rows, "as": d.target, "status": d.status, "reason": d.reason} for d in decisions}}
    record = images_summary(image_dir, len(images), written, kept, "embedded in the parquet files")
    paths = write_refer_files(task, root, refs, list(images.values()), anns, index.categories, source, caveats, record)
    n_refs, n_sents = split_totals(refs)
    return ImportResult(task.name, "lmms-lab", decisions, n_refs, n_sents, len(images), written, kept, caveats, paths)


def _convert(task, decisions, layout: str, root: Path, meta: dict, coco_instances, progress) -> ImportResult:
    """jxu124 / lmms-lab rows converted as they are (lmms-lab ids numbered in file order)."""
    image_dir = root / task.image_dir
    out = Converted()
    total = sum(d.rows for d in decisions if d.used)
    done = 0
    for d in decisions:
        if not d.used:
            continue
        for f in d.files:
            offset = 0
            for batch in f.batches():
                for i, row in enumerate(batch):
                    where = f"{f.path}: row {offset + i}"
                    if layout == "jxu124":
                        convert_jxu124(row, d.target, where, out)
                    else:
                        convert_lmms(row, d.target, where, out, image_dir)
                offset += len(batch)
                done += len(batch)
                progress("import", done, total)
    caveats = [d.caveat for d in decisions if d.used and d.caveat] + _missing_splits(task, out.refs)
    if layout == "lmms-lab":
        caveats.append("lmms-lab rows carry no ref, sentence or (without --coco-instances) annotation ids: these are "
                       "numbered in file order; each expression's 'sent' is its text lower-cased without punctuation; "
                       "boxes and polygons rounded to 0.01 px (stored as float32)")
    coco = complete_from_coco(Path(coco_instances).expanduser(), layout, out) if coco_instances is not None else None
    if coco is None:
        caveats.append(f"candidates: only the referred objects of each image ({len(out.anns):,} annotations for "
                       f"{len(out.images):,} images), not every COCO annotation (--referred-only)")
    categories = coco["categories"] if coco else (
        [{"id": 0, "name": "object", "supercategory": "object"}] if layout == "lmms-lab" else coco_categories())
    source = {"kind": "huggingface", **meta,
              "splits": {d.hf_split: {"rows": d.rows, "as": d.target, "status": d.status, "reason": d.reason} for d in decisions},
              "coco_instances": {k: coco[k] for k in ("path", "sha256")} if coco else None}
    record = images_summary(image_dir, len(out.images), out.images_written, out.images_kept,
                            "embedded in the parquet files") if layout == "lmms-lab" else None
    paths = write_refer_files(task, root, out.refs, list(out.images.values()), list(out.anns.values()), categories,
                              source, caveats, record)
    n_refs, n_sents = split_totals(out.refs)
    return ImportResult(task.name, layout, decisions, n_refs, n_sents, len(out.images), out.images_written,
                        out.images_kept, caveats, paths)

