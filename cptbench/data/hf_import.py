"""Importing Hugging Face copies of RefCOCO / RefCOCO+ / RefCOCOg into the refer layout the loader
reads (``<root>/<dataset>/refs(<splitBy>).p`` + ``instances.json``, images under the card's image
folder), with their caveats checked and stated, never used silently.

Reading the copy's files and layouts is :mod:`cptbench.data.hf_inputs`; which split becomes which,
and the split mix-ups of the known copies, :mod:`cptbench.data.hf_splits`. Here the rows are
converted and written:

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
from typing import Any, Callable, Sequence

from cptbench.core.errors import DataError
from cptbench.data.fetch import now_iso
from cptbench.data.hf_inputs import detect_layout, hub_identity, scan_inputs
from cptbench.data.hf_splits import SplitDecision, lmms_key, plan_import, refusal_message
from cptbench.data.images import verify_image
from cptbench.data.provenance import file_entries, provenance_record, read_provenance, write_provenance
from cptbench.core.hashing import file_sha256

_IMAGE_ID = re.compile(r"COCO_train2014_(\d{12})")
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


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
    """The refer records built so far from the rows (refs; image and annotation records by id) and the
    embedded images written or kept."""

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
    """What :func:`import_hf` did: each split's decision, the refs and sentences written per split, the
    images written or kept, the caveats recorded and the paths of the files."""

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
                    if layout == "lmms-lab" and lmms_key(row) in d.drop:
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
    from cptbench.core.files import write_atomic

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
