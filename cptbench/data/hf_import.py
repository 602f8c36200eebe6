"""Importing Hugging Face copies of RefCOCO / RefCOCO+ / RefCOCOg into the refer layout the loader
reads (``<root>/<dataset>/refs(<splitBy>).p`` + ``instances.json``, images under the card's image
folder), with their caveats checked and stated, never used silently.

Two column layouts are known (read from the datasets' cards on the hub; see docs/data.md):

* **jxu124** (jxu124/refcoco, jxu124/refcocoplus, jxu124/refcocog): one row per ref with the refer
  fields (ref_id, ann_id, image_id, split, sentences = [{raw, sent, sent_id, tokens}], sent_ids,
  category_id, file_name) plus raw_anns (JSON of the referred object's COCO annotation),
  raw_image_info (JSON of its COCO image record), raw_sentences, image_path, bbox, captions,
  global_image_id (, anns_id). Splits train / validation / test / testB (refcocog: train /
  validation / test). No images.
* **lmms-lab** (lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg): one row per ref: question_id, image
  (embedded {bytes, path}), question, answer (the referring expressions), segmentation (one
  flattened polygon), bbox ([x, y, w, h]), iscrowd, file_name. Splits val / test / testA / testB
  (RefCOCOg: val / test). No train split, no ref / annotation / sentence ids, no category.

Caveats (detected from the row counts against the task card's ``expected_counts``):

* jxu124 calls testA "test": renamed when the rows' own ``split`` field or the count says testA.
* lmms-lab "val" has more rows than the unc / umd val split (RefCOCO 8,811 = 3,811 + 5,000): the
  rows that also appear in one of the copy's other splits (its "test") are removed, and the
  correction is accepted only if exactly the published number of refs is left; otherwise that
  split is refused. lmms-lab "test" of RefCOCO / RefCOCO+ is no unc split: never imported.
* Both copies hold only the *referred* objects, not every COCO annotation of an image, so the
  ground-truth candidate setting would differ from the refer files'. ``coco_instances`` (COCO's
  ``instances_train2014.json``, or a refer ``instances.json`` of the same images) restores every
  annotation of each image (lmms-lab rows are matched to their annotation by image and box); without
  it the import is refused unless ``referred_only`` accepts the smaller candidate sets, which is
  then recorded as a caveat in the provenance (and so in every run record).

Any count that does not fit is refused with the counts, the split and the fix; nothing is written.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from cptbench.run.fingerprint import file_sha256
from cptbench.data.fetch import now_iso
from cptbench.data.images import verify_image
from cptbench.data.provenance import file_entries, provenance_record, read_provenance, write_provenance
from cptbench.core.errors import DataError

LAYOUT_COLUMNS = {
    "jxu124": {"ref_id", "ann_id", "image_id", "sentences"},
    "lmms-lab": {"question_id", "answer", "bbox", "file_name"},
}
_KNOWN_SPLITS = {"train", "val", "validation", "test", "testA", "testB"}
_IMAGE_ID = re.compile(r"COCO_train2014_(\d{12})")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")
_BATCH = 64


def _pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise DataError("reading Hugging Face parquet files needs pyarrow: `pip install pyarrow` (or cptbench[test]).") from None
    import pyarrow

    return pyarrow


# ------------------------------------------------------------------------------------ input
@dataclass
class InputFile:
    path: Path
    hf_split: str
    rows: int
    columns: list[str]

    def batches(self, columns: Sequence[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        pa = _pyarrow()
        cols = [c for c in columns if c in self.columns] if columns is not None else None
        if self.path.suffix == ".parquet":
            import pyarrow.parquet as pq

            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=_BATCH, columns=cols):
                yield batch.to_pylist()
        else:
            with pa.memory_map(str(self.path)) as src:
                for batch in _arrow_reader(pa, src):
                    if cols is not None:
                        batch = batch.select(cols)
                    yield batch.to_pylist()


def _arrow_reader(pa, src):
    try:
        return pa.ipc.open_stream(src)
    except pa.ArrowInvalid:
        src.seek(0)
        reader = pa.ipc.open_file(src)
        return (reader.get_batch(i) for i in range(reader.num_record_batches))


def _split_of(path: Path) -> str:
    m = re.match(r"^([A-Za-z][A-Za-z0-9]*)-\d{5}-of-\d{5}", path.name)
    if m:
        return m.group(1)
    if path.parent.name in _KNOWN_SPLITS:
        return path.parent.name
    return path.stem


def scan_inputs(paths: Sequence[str | Path]) -> list[InputFile]:
    """The parquet (or ``save_to_disk`` arrow) files under ``paths``, with their split and row count."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    found: list[Path] = []
    for p in map(Path, paths):
        p = p.expanduser()
        if p.is_dir():
            found += sorted(q for q in p.rglob("*") if q.suffix in (".parquet", ".arrow") and q.is_file()
                            and not any(part.startswith(".") for part in q.relative_to(p).parts))
        elif p.is_file():
            found.append(p)
        else:
            raise DataError(f"{p}: no such file or folder; pass parquet files or a Hugging Face dataset folder.")
    if not found:
        raise DataError(f"no .parquet or .arrow files under {', '.join(map(str, paths))}; pass the dataset's parquet "
                        f"files (e.g. a `huggingface-cli download --repo-type dataset` folder).")
    out = []
    for f in found:
        try:
            if f.suffix == ".parquet":
                meta = pq.ParquetFile(f)
                out.append(InputFile(f, _split_of(f), meta.metadata.num_rows, list(meta.schema_arrow.names)))
            else:
                with pa.memory_map(str(f)) as src:
                    reader = _arrow_reader(pa, src)
                    batches = list(reader)
                rows = sum(b.num_rows for b in batches)
                names = list(batches[0].schema.names) if batches else []
                out.append(InputFile(f, _split_of(f), rows, names))
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"{f}: not a readable parquet / arrow file ({type(exc).__name__}: {exc}).") from None
    return out


def detect_layout(files: Sequence[InputFile]) -> str:
    layouts = set()
    for f in files:
        got = [name for name, cols in LAYOUT_COLUMNS.items() if cols <= set(f.columns)]
        if not got:
            raise DataError(f"{f.path}: columns {sorted(f.columns)} match no known layout (jxu124: "
                            f"{sorted(LAYOUT_COLUMNS['jxu124'])} ...; lmms-lab: {sorted(LAYOUT_COLUMNS['lmms-lab'])} ...).")
        layouts.add(got[0])
    if len(layouts) > 1:
        raise DataError(f"the input mixes layouts {sorted(layouts)}; import one Hugging Face dataset at a time.")
    return layouts.pop()


def hub_identity(paths: Sequence[str | Path]) -> tuple[str | None, str | None]:
    """(dataset id, revision) from a Hugging Face cache path (``datasets--OWNER--NAME/snapshots/REV``)
    or a ``--local-dir`` download's ``.cache/huggingface`` metadata, when there is one."""
    for p in map(lambda q: Path(q).expanduser().resolve(), paths):
        m = re.search(r"datasets--([^/]+?)--([^/]+)/snapshots/([0-9a-f]{40})", str(p))
        if m:
            return f"{m.group(1)}/{m.group(2)}", m.group(3)
        root = p if p.is_dir() else p.parent
        for base in (root, *root.parents[:2]):
            meta = base / ".cache" / "huggingface" / "download"
            if meta.is_dir():
                for f in sorted(meta.rglob("*.metadata")):
                    first = f.read_text(errors="replace").splitlines()[:1]
                    if first and re.fullmatch(r"[0-9a-f]{40}", first[0].strip()):
                        return None, first[0].strip()
    return None, None


# ------------------------------------------------------------------------------------- plan
@dataclass
class SplitDecision:
    hf_split: str
    rows: int
    target: str | None  # refer split, None when it is none of the task's
    status: str  # import | corrected | refused | skipped
    reason: str
    drop: set = field(default_factory=set, repr=False)  # row keys removed by a correction
    caveat: str = ""  # what was renamed or corrected (recorded in the provenance)

    @property
    def used(self) -> bool:
        return self.status in ("import", "corrected")


def _expected_refs(task, split: str) -> int | None:
    exp = task.expected_counts.get(split)
    return exp.refs if exp else None


def _lmms_key(row: dict) -> tuple:
    return (str(row.get("file_name")), tuple(round(float(v), 1) for v in row.get("bbox") or ()),
            tuple(str(a).strip().lower() for a in row.get("answer") or ()))


def _target(task, layout: str, hf_split: str, files: Sequence[InputFile]) -> tuple[str | None, str]:
    splits = [task.train_split, *task.eval_splits]
    if hf_split in splits:
        return hf_split, ""
    if hf_split == "validation" and "val" in splits:
        return "val", ""
    if hf_split == "test" and layout == "jxu124" and "testA" in splits:
        values = {r.get("split") for f in files for b in f.batches(["split"]) for r in b} - {None}
        if values and values <= set(splits):
            if values == {"testA"}:
                return "testA", "jxu124 calls testA 'test' (its rows say split 'testA'): imported as testA"
            return None, f"its rows' split field says {sorted(values)}"
        return "testA", "jxu124 calls testA 'test': imported as testA"
    return None, ""


def plan_import(task, files: Sequence[InputFile], layout: str, splits: Sequence[str] | None = None) -> list[SplitDecision]:
    """What each Hugging Face split becomes; counts are checked against the task card."""
    by_split: dict[str, list[InputFile]] = {}
    for f in files:
        by_split.setdefault(f.hf_split, []).append(f)
    decisions = []
    for hf_split, group in sorted(by_split.items()):
        rows = sum(f.rows for f in group)
        target, note = _target(task, layout, hf_split, group)
        if target is None:
            why = note or f"not a split of {task.name} (splitBy {task.split_by}: {', '.join([task.train_split, *task.eval_splits])})"
            decisions.append(SplitDecision(hf_split, rows, None, "skipped", why))
            continue
        if splits is not None and target not in splits:
            decisions.append(SplitDecision(hf_split, rows, target, "skipped", f"not asked for (--splits {','.join(splits)})"))
            continue
        want = _expected_refs(task, target)
        if want is None:
            decisions.append(SplitDecision(hf_split, rows, target, "import",
                                           (note + "; " if note else "") + f"{task.name}'s card gives no ref count to check",
                                           caveat=note))
        elif rows == want:
            decisions.append(SplitDecision(hf_split, rows, target, "import",
                                           (note + "; " if note else "") + f"{rows:,} rows = the published {want:,} refs",
                                           caveat=note))
        else:
            decisions.append(SplitDecision(hf_split, rows, target, "refused",
                                           f"{rows:,} rows, but {task.name} {target} has {want:,} refs"))
    _correct_lmms_val(task, layout, decisions, by_split)
    seen: dict[str, str] = {}
    for d in decisions:
        if d.used and d.target in seen:
            d.status, d.reason = "refused", f"a second source of {d.target} (also {seen[d.target]})"
        elif d.used:
            seen[d.target] = d.hf_split
    return decisions


def _correct_lmms_val(task, layout: str, decisions: list[SplitDecision], by_split: dict[str, list[InputFile]]) -> None:
    """lmms-lab val mixes in rows of another split: drop the rows also found in the copy's other
    splits, and accept only if exactly the published number is left."""
    if layout != "lmms-lab":
        return
    for d in decisions:
        want = _expected_refs(task, d.target) if d.target else None
        if d.status != "refused" or want is None or d.rows <= want:
            continue
        others = [o for o in decisions if o is not d and o.status == "skipped" and o.target is None]
        keys = {_lmms_key(r) for o in others for f in by_split[o.hf_split]
                for b in f.batches(["file_name", "bbox", "answer"]) for r in b}
        mine = [_lmms_key(r) for f in by_split[d.hf_split] for b in f.batches(["file_name", "bbox", "answer"]) for r in b]
        drop = {k for k in mine if k in keys}
        left = sum(1 for k in mine if k not in drop)
        names = ", ".join(repr(o.hf_split) for o in others) or "none"
        if others and left == want:
            d.status, d.drop = "corrected", drop
            d.reason = (f"{d.rows:,} rows = {want:,} {d.target} refs + {d.rows - want:,} rows of split(s) {names}: "
                        f"those were removed, the published {want:,} refs are left")
            d.caveat = f"{d.hf_split} corrected: {d.reason}"
        else:
            d.reason += (f"; removing the rows also in the copy's other split(s) ({names}) leaves {left:,}, not {want:,}: "
                         f"which rows are {task.name} {d.target} cannot be told")


def refusal_message(task, decisions: Sequence[SplitDecision], source: str) -> str:
    lines = "\n  ".join(f"{d.hf_split} ({d.rows:,} rows) -> {d.target or '-'}: {d.status}: {d.reason}" for d in decisions)
    order = [task.train_split, *task.eval_splits]
    good = sorted((d.target for d in decisions if d.used), key=order.index)
    fix = (f"Import the splits that check out with --splits {','.join(good)}, " if good else "") + \
          f"or get the refer files instead: `cptbench data download {task.name} --to DIR`."
    return f"{source}: refused to import as {task.name}:\n  {lines}\n{fix}"


# ------------------------------------------------------------------------------- conversion
def _loads(value: Any, what: str, where: str) -> Any:
    if value is None or isinstance(value, (dict, list)):
        return value
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise DataError(f"{where}: {what} is neither JSON nor a Python literal: {str(value)[:80]!r}") from None


def _box_agrees(column: Any, xywh: Sequence[float]) -> bool:
    if not column or len(column) != 4:
        return True
    x, y, w, h = map(float, xywh)
    col = [float(v) for v in column]
    return any(all(abs(a - b) <= 0.02 for a, b in zip(col, want)) for want in ([x, y, w, h], [x, y, x + w, y + h]))


@dataclass
class Converted:
    refs: list[dict] = field(default_factory=list)
    images: dict[int, dict] = field(default_factory=dict)
    anns: dict[int, dict] = field(default_factory=dict)
    images_written: int = 0
    images_kept: int = 0
    sentences: int = 0  # in refs so far (lmms-lab rows number theirs from it)


def _convert_jxu124(row: dict, target: str, where: str, out: Converted) -> None:
    ann = _loads(row.get("raw_anns", row.get("anns")), "raw_anns", where)
    info = _loads(row.get("raw_image_info", row.get("image_info")), "raw_image_info", where)
    if not isinstance(ann, dict) or not isinstance(info, dict):
        raise DataError(f"{where}: raw_anns / raw_image_info must hold the COCO annotation and image records (JSON objects).")
    ref_id, ann_id, image_id = int(row["ref_id"]), int(row["ann_id"]), int(row["image_id"])
    if int(ann.get("id", ann_id)) != ann_id or int(ann.get("image_id", image_id)) != image_id:
        raise DataError(f"{where}: ref {ref_id}: raw_anns is annotation {ann.get('id')} of image {ann.get('image_id')}, "
                        f"but the row says annotation {ann_id} of image {image_id}.")
    if not _box_agrees(row.get("bbox"), ann.get("bbox") or ()):
        raise DataError(f"{where}: ref {ref_id}: bbox {row.get('bbox')} agrees with raw_anns' bbox {ann.get('bbox')} "
                        f"neither as [x, y, w, h] nor as [x1, y1, x2, y2]; the row is inconsistent.")
    sentences = _loads(row.get("sentences"), "sentences", where)
    sents = [{"sent_id": int(s["sent_id"]), "sent": str(s.get("sent") or ""), "raw": str(s.get("raw") or ""),
              "tokens": list(s.get("tokens") or [])} for s in sentences]
    out.refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": target,
                     "category_id": int(row.get("category_id") or ann.get("category_id") or 0),
                     "sent_ids": [s["sent_id"] for s in sents], "sentences": sents,
                     "file_name": str(row.get("file_name") or "")})
    out.sentences += len(sents)
    out.anns[ann_id] = {k: ann[k] for k in ("id", "image_id", "category_id", "bbox", "segmentation", "area", "iscrowd") if k in ann}
    out.images.setdefault(image_id, {k: info[k] for k in ("id", "file_name", "width", "height", "coco_url", "flickr_url",
                                                          "license", "date_captured") if k in info})


def _convert_lmms(row: dict, target: str, where: str, out: Converted, image_dir: Path) -> None:
    m = _IMAGE_ID.search(str(row.get("file_name") or ""))
    if not m:
        raise DataError(f"{where}: file_name {row.get('file_name')!r} is not a COCO train2014 image name.")
    image_id = int(m.group(1))
    file_name = f"COCO_train2014_{image_id:012d}.jpg"
    if image_id not in out.images:
        out.images[image_id] = {"id": image_id, "file_name": file_name, **_write_embedded(row.get("image"), image_dir / file_name,
                                                                                            where, out)}
    ref_id = len(out.refs) + 1
    box = [round(float(v), 2) for v in row.get("bbox") or ()]
    seg = [round(float(v), 2) for v in row.get("segmentation") or ()]
    first = out.sentences + 1
    texts = [str(a) for a in row.get("answer") or () if str(a).strip()]
    sents = []
    for i, t in enumerate(texts):
        tokens = _WORD.findall(t.lower())
        sents.append({"sent_id": first + i, "sent": " ".join(tokens), "raw": t, "tokens": tokens})
    out.refs.append({"ref_id": ref_id, "ann_id": ref_id, "image_id": image_id, "split": target, "category_id": 0,
                     "sent_ids": [s["sent_id"] for s in sents], "sentences": sents, "file_name": file_name,
                     "question_id": str(row.get("question_id"))})
    out.sentences += len(sents)
    out.anns[ref_id] = {"id": ref_id, "image_id": image_id, "category_id": 0, "bbox": box, "segmentation": [seg] if seg else [],
                        "area": box[2] * box[3] if len(box) == 4 else 0.0, "iscrowd": int(row.get("iscrowd") or 0)}


def _write_embedded(image: Any, dest: Path, where: str, out: Converted) -> dict:
    """Write an embedded image ({bytes, path}) as a file (kept if a valid one is there); its size."""
    from PIL import Image

    data = image.get("bytes") if isinstance(image, dict) else image if isinstance(image, (bytes, bytearray)) else None
    if dest.is_file() and verify_image(dest, None) is None:
        out.images_kept += 1
    elif data:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        problem = verify_image(tmp, None)
        if problem:
            tmp.unlink()
            raise DataError(f"{where}: the embedded image {dest.name} does not decode ({problem.split(': ', 1)[-1]}); "
                            f"the parquet file is damaged: download it again.")
        os.replace(tmp, dest)
        out.images_written += 1
    else:
        return {"width": 0, "height": 0}
    with Image.open(dest) as im:
        return {"width": im.size[0], "height": im.size[1]}


def _complete_from_coco(coco_path: Path, layout: str, out: Converted) -> dict[str, Any]:
    """Every COCO annotation of the imported images (and their records and categories) from a COCO
    instances file; lmms-lab rows get their real annotation id and category by matching the box."""
    try:
        raw = Path(coco_path).read_bytes()  # read once: parsed and hashed from the same bytes
        coco = json.loads(raw)
    except (OSError, ValueError) as exc:
        raise DataError(f"{coco_path}: cannot read COCO instances ({exc}).") from None
    digest = hashlib.sha256(raw).hexdigest()
    del raw
    if not isinstance(coco, dict) or not {"images", "annotations"} <= set(coco):
        raise DataError(f"{coco_path}: not a COCO instances file (no 'images' / 'annotations').")
    by_image: dict[int, list[dict]] = {}
    for a in coco["annotations"]:
        by_image.setdefault(int(a["image_id"]), []).append(a)
    images = {int(i["id"]): i for i in coco["images"]}
    missing = sorted(set(out.images) - set(images))
    if missing:
        raise DataError(f"{coco_path}: lacks image(s) {missing[:5]} of the import ({len(missing)} in all); use COCO's "
                        f"instances_train2014.json (annotations_trainval2014.zip).")
    for ref in out.refs:
        mine = out.anns[ref["ann_id"]]
        close = [a for a in by_image.get(ref["image_id"], [])
                 if all(abs(float(p) - float(q)) <= 0.05 for p, q in zip(a["bbox"], mine["bbox"]))]
        if layout == "jxu124":
            close = [a for a in close if int(a["id"]) == ref["ann_id"]]
        elif len(close) > 1 and mine["segmentation"]:  # identical boxes: tell them apart by the polygon
            poly = mine["segmentation"][0]
            close = [a for a in close if isinstance(a.get("segmentation"), list) and a["segmentation"]
                     and all(abs(float(p) - float(q)) <= 0.05 for p, q in zip(a["segmentation"][0], poly))] or close
        if len(close) != 1:
            raise DataError(f"{coco_path}: ref {ref['ref_id']} (image {ref['image_id']}, box {mine['bbox']}) matches "
                            f"{len(close)} annotations there, not one; it is not the COCO release these refs were made from.")
        ref["ann_id"] = int(close[0]["id"])
        if layout == "lmms-lab":  # jxu124 rows carry the refer category already
            ref["category_id"] = int(close[0]["category_id"])
    out.anns = {int(a["id"]): a for i in out.images for a in by_image.get(i, [])}
    for i in out.images:
        out.images[i] = {**images[i], **{k: v for k, v in out.images[i].items() if k in ("width", "height") and v}}
    return {"categories": coco.get("categories") or [], "path": str(coco_path), "sha256": digest}


# ---------------------------------------------------------------------------------- import
@dataclass
class ImportResult:
    task: str
    layout: str
    decisions: list[SplitDecision]
    refs: dict[str, int]
    sentences: dict[str, int]
    images: int
    images_written: int
    images_kept: int
    caveats: list[str]
    paths: dict[str, Path]


def import_hf(task, inputs: Sequence[str | Path], root: str | Path, *, splits: Sequence[str] | None = None,
              coco_instances: str | Path | None = None, referred_only: bool = False, hf_dataset: str | None = None,
              revision: str | None = None, force: bool = False,
              progress: Callable[[str, int, int | None], None] = lambda label, done, total: None) -> ImportResult:
    """Convert a Hugging Face copy (parquet / arrow files or a dataset folder) into ``<root>``'s refer
    layout as ``task``. Refuses (nothing written) when a split's count does not fit, when the output
    exists (unless ``force``), or when only the referred objects would be candidates (unless
    ``coco_instances`` completes them or ``referred_only`` accepts it)."""
    root = Path(root).expanduser()
    files = scan_inputs(inputs)
    layout = detect_layout(files)
    source_text = ", ".join(map(str, inputs))
    decisions = plan_import(task, files, layout, splits)
    if any(d.status == "refused" for d in decisions) or not any(d.used for d in decisions):
        raise DataError(refusal_message(task, decisions, source_text))
    if coco_instances is None and not referred_only:
        raise DataError(f"{source_text}: the {layout} copy holds only the referred objects of each image, not all of its "
                        f"COCO annotations, so the ground-truth candidates would differ from the refer files' (fewer, "
                        f"mostly same-category objects). Pass --coco-instances instances_train2014.json (COCO's "
                        f"annotations_trainval2014.zip) to restore them, or --referred-only to accept the smaller "
                        f"candidate sets (recorded as a caveat in every run record).")
    ds_dir = root / task.dataset
    refs_path, inst_path = ds_dir / task.refs_file, ds_dir / "instances.json"
    if not force and (refs_path.exists() or inst_path.exists()):
        raise DataError(f"{ds_dir}: already holds {task.refs_file} / instances.json; pass --force to replace them "
                        f"(or import into another folder).")
    image_dir = root / task.image_dir
    out = Converted()
    total = sum(d.rows for d in decisions if d.used)
    done = 0
    by_split = {}
    for f in files:
        by_split.setdefault(f.hf_split, []).append(f)
    for d in decisions:
        if not d.used:
            continue
        for f in by_split[d.hf_split]:
            offset = 0
            for batch in f.batches():
                for i, row in enumerate(batch):
                    where = f"{f.path}: row {offset + i}"
                    if layout == "lmms-lab" and _lmms_key(row) in d.drop:
                        continue
                    if layout == "jxu124":
                        _convert_jxu124(row, d.target, where, out)
                    else:
                        _convert_lmms(row, d.target, where, out, image_dir)
                offset += len(batch)
                done += len(batch)
                progress("import", done, total)
    caveats = [d.caveat for d in decisions if d.used and d.caveat]
    missing_splits = [s for s in [task.train_split, *task.eval_splits] if not any(r["split"] == s for r in out.refs)]
    if missing_splits:
        caveats.append(f"not in this copy: split(s) {', '.join(missing_splits)}"
                       + (f" (k-shot runs need {task.train_split})" if task.train_split in missing_splits else ""))
    if layout == "lmms-lab":
        caveats.append("lmms-lab rows carry no ref, sentence or (without --coco-instances) annotation ids: these are "
                       "numbered in file order; each expression's 'sent' is its text lower-cased without punctuation; "
                       "boxes and polygons rounded to 0.01 px (stored as float32)")
    coco = None
    if coco_instances is not None:
        coco = _complete_from_coco(Path(coco_instances).expanduser(), layout, out)
    else:
        caveats.append(f"candidates: only the referred objects of each image ({len(out.anns):,} annotations for "
                       f"{len(out.images):,} images), not every COCO annotation (--referred-only)")
    categories = coco["categories"] if coco else (
        [{"id": 0, "name": "object", "supercategory": "object"}] if layout == "lmms-lab" else _coco_categories())
    from cptbench.results.store import write_atomic

    ds_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(refs_path, pickle.dumps(out.refs, protocol=2))
    write_atomic(inst_path, json.dumps({"images": [out.images[i] for i in sorted(out.images)],
                                        "annotations": [out.anns[a] for a in sorted(out.anns)],
                                        "categories": categories}).encode())
    detected_id, detected_rev = hub_identity(inputs)
    source = {"kind": "huggingface", "dataset": hf_dataset or detected_id, "revision": revision or detected_rev,
              "layout": layout,
              "files": [{"path": str(f.path), "split": f.hf_split, "rows": f.rows, "size": f.path.stat().st_size,
                         "sha256": file_sha256(f.path)} for f in files],
              "splits": {d.hf_split: {"rows": d.rows, "as": d.target, "status": d.status, "reason": d.reason} for d in decisions},
              "coco_instances": {k: coco[k] for k in ("path", "sha256")} if coco else None}
    record = provenance_record(task, "import", source, file_entries(ds_dir, [task.refs_file, "instances.json"]), caveats)
    if layout == "lmms-lab":
        record["images"] = {"dir": str(image_dir), "source": "embedded in the parquet files", "needed": len(out.images),
                            "fetched": out.images_written, "skipped": out.images_kept, "failed": 0, "updated_at": now_iso()}
    old = read_provenance(ds_dir)
    if old and old.get("images") and "images" not in record:
        record["images"] = old["images"]
    write_provenance(ds_dir, record)
    count = lambda key: {s: sum(key(r) for r in out.refs if r["split"] == s) for s in dict.fromkeys(r["split"] for r in out.refs)}  # noqa: E731
    return ImportResult(task.name, layout, decisions, count(lambda r: 1), count(lambda r: len(r["sentences"])),
                        len(out.images), out.images_written, out.images_kept, caveats,
                        {"refs": refs_path, "instances": inst_path, "images": image_dir})


def _coco_categories() -> list[dict]:
    """The 80 COCO object categories (id, name, supercategory), for copies that give only ids."""
    table = (
        "person:person:1 bicycle:vehicle:2 car:vehicle:3 motorcycle:vehicle:4 airplane:vehicle:5 bus:vehicle:6 "
        "train:vehicle:7 truck:vehicle:8 boat:vehicle:9 traffic_light:outdoor:10 fire_hydrant:outdoor:11 "
        "stop_sign:outdoor:13 parking_meter:outdoor:14 bench:outdoor:15 bird:animal:16 cat:animal:17 dog:animal:18 "
        "horse:animal:19 sheep:animal:20 cow:animal:21 elephant:animal:22 bear:animal:23 zebra:animal:24 "
        "giraffe:animal:25 backpack:accessory:27 umbrella:accessory:28 handbag:accessory:31 tie:accessory:32 "
        "suitcase:accessory:33 frisbee:sports:34 skis:sports:35 snowboard:sports:36 sports_ball:sports:37 "
        "kite:sports:38 baseball_bat:sports:39 baseball_glove:sports:40 skateboard:sports:41 surfboard:sports:42 "
        "tennis_racket:sports:43 bottle:kitchen:44 wine_glass:kitchen:46 cup:kitchen:47 fork:kitchen:48 "
        "knife:kitchen:49 spoon:kitchen:50 bowl:kitchen:51 banana:food:52 apple:food:53 sandwich:food:54 "
        "orange:food:55 broccoli:food:56 carrot:food:57 hot_dog:food:58 pizza:food:59 donut:food:60 cake:food:61 "
        "chair:furniture:62 couch:furniture:63 potted_plant:furniture:64 bed:furniture:65 dining_table:furniture:67 "
        "toilet:furniture:70 tv:electronic:72 laptop:electronic:73 mouse:electronic:74 remote:electronic:75 "
        "keyboard:electronic:76 cell_phone:electronic:77 microwave:appliance:78 oven:appliance:79 "
        "toaster:appliance:80 sink:appliance:81 refrigerator:appliance:82 book:indoor:84 clock:indoor:85 "
        "vase:indoor:86 scissors:indoor:87 teddy_bear:indoor:88 hair_drier:indoor:89 toothbrush:indoor:90"
    )
    out = []
    for item in table.split():
        name, sup, cid = item.split(":")
        out.append({"id": int(cid), "name": name.replace("_", " "), "supercategory": sup})
    return out
