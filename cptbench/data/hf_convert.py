"""Rows of a Hugging Face copy converted to refer records (refs, COCO image and annotation records),
the embedded images written as files, and the candidates completed from a COCO instances file.

Every row a user's file can get wrong (a field missing, of another type, a box that is not four
numbers, an image that does not decode) is refused naming the file, the row and the fix.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from cptbench.core.errors import DataError
from cptbench.data.images import verify_image
from cptbench.data.refer_index import as_box, box_distance, image_id_in, norm_text

#: how close (px) a copy's box must be to a COCO annotation's to be that annotation
MATCH_TOL = 0.05


def loads(value: Any, what: str, where: str) -> Any:
    """A JSON (or Python literal) string parsed; dicts and lists pass through."""
    if isinstance(value, (dict, list)):
        return value
    if value is None:
        raise DataError(f"{where}: {what} is empty (null); the row is damaged: download the file again.")
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise DataError(f"{where}: {what} is neither JSON nor a Python literal: {str(value)[:80]!r}") from None


def box_agrees(column: Any, xywh: Sequence[float]) -> bool:
    """Whether a row's ``bbox`` (four numbers) is the annotation's box as [x, y, w, h] or [x1, y1, x2, y2]."""
    col, ann = as_box(column), as_box(xywh)
    if col is None or ann is None:
        return False
    x, y, w, h = ann
    return min(box_distance(col, [x, y, w, h]), box_distance(col, [x, y, x + w, y + h])) <= 0.02


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


def _int(row: dict, key: str, where: str) -> int:
    try:
        return int(row[key])
    except (KeyError, TypeError, ValueError):
        raise DataError(f"{where}: {key} is {row.get(key)!r}, not an integer; the row is damaged: download the file "
                        f"again.") from None


def _sentences(value: Any, where: str) -> list[dict]:
    sentences = loads(value, "sentences", where)
    if not isinstance(sentences, list) or not sentences:
        raise DataError(f"{where}: sentences is {str(sentences)[:80]!r}, not a list of {{sent_id, sent, raw, tokens}}; "
                        f"the row is damaged: download the file again.")
    out = []
    for s in sentences:
        if not isinstance(s, dict) or "sent_id" not in s:
            raise DataError(f"{where}: a sentence is {str(s)[:80]!r}, not {{sent_id, sent, raw, tokens}}; the row is "
                            f"damaged: download the file again.")
        out.append({"sent_id": _int(s, "sent_id", where), "sent": str(s.get("sent") or ""), "raw": str(s.get("raw") or ""),
                    "tokens": [str(t) for t in s.get("tokens") or []]})
    return out


def convert_jxu124(row: dict, target: str, where: str, out: Converted) -> None:
    """One jxu124 row (a ref with its COCO annotation and image record as JSON) into ``out``."""
    ann = loads(row.get("raw_anns", row.get("anns")), "raw_anns", where)
    info = loads(row.get("raw_image_info", row.get("image_info")), "raw_image_info", where)
    if not isinstance(ann, dict) or not isinstance(info, dict):
        raise DataError(f"{where}: raw_anns / raw_image_info must hold the COCO annotation and image records (JSON objects).")
    ref_id, ann_id, image_id = _int(row, "ref_id", where), _int(row, "ann_id", where), _int(row, "image_id", where)
    if int(ann.get("id", ann_id)) != ann_id or int(ann.get("image_id", image_id)) != image_id:
        raise DataError(f"{where}: ref {ref_id}: raw_anns is annotation {ann.get('id')} of image {ann.get('image_id')}, "
                        f"but the row says annotation {ann_id} of image {image_id}.")
    if as_box(ann.get("bbox")) is None:
        raise DataError(f"{where}: ref {ref_id}: raw_anns' bbox is {ann.get('bbox')!r}, not four numbers; the row is damaged.")
    if not box_agrees(row.get("bbox"), ann["bbox"]):
        raise DataError(f"{where}: ref {ref_id}: bbox {row.get('bbox')} agrees with raw_anns' bbox {ann.get('bbox')} "
                        f"neither as [x, y, w, h] nor as [x1, y1, x2, y2]; the row is inconsistent.")
    sents = _sentences(row.get("sentences"), where)
    if "sent_ids" in row and [int(i) for i in row.get("sent_ids") or []] != [s["sent_id"] for s in sents]:
        raise DataError(f"{where}: ref {ref_id}: sent_ids {row.get('sent_ids')} are not the ids of its sentences "
                        f"{[s['sent_id'] for s in sents]}; the row is inconsistent: download the file again.")
    category = row.get("category_id") if row.get("category_id") is not None else ann.get("category_id")
    if category is None:
        raise DataError(f"{where}: ref {ref_id}: no category_id in the row or in raw_anns; the row is damaged.")
    out.refs.append({"ref_id": ref_id, "ann_id": ann_id, "image_id": image_id, "split": target,
                     "category_id": int(category), "sent_ids": [s["sent_id"] for s in sents], "sentences": sents,
                     "file_name": str(row.get("file_name") or "")})
    out.sentences += len(sents)
    out.anns[ann_id] = {k: ann[k] for k in ("id", "image_id", "category_id", "bbox", "segmentation", "area", "iscrowd") if k in ann}
    out.images.setdefault(image_id, {k: info[k] for k in ("id", "file_name", "width", "height", "coco_url", "flickr_url",
                                                          "license", "date_captured") if k in info})


def lmms_image_id(row: dict, where: str) -> int:
    """The COCO image id in an lmms-lab row's ``file_name``."""
    image_id = image_id_in(row.get("file_name"))
    if image_id is None:
        raise DataError(f"{where}: file_name {row.get('file_name')!r} is not a COCO train2014 image name "
                        f"(COCO_train2014_<12 digits>_<n>.jpg).")
    return image_id


def lmms_box(row: dict, where: str) -> list[float]:
    """An lmms-lab row's ``bbox`` ([x, y, w, h] pixels), refused unless four numbers with w, h >= 0."""
    box = as_box(row.get("bbox"))
    if box is None or box[2] < 0 or box[3] < 0:
        raise DataError(f"{where}: bbox is {row.get('bbox')!r}, not [x, y, w, h] (four numbers, w and h >= 0); the "
                        f"row is damaged: download the file again.")
    return box


def convert_lmms(row: dict, target: str, where: str, out: Converted, image_dir: Path) -> None:
    """One lmms-lab row (an object, its expressions and its embedded image) into ``out``; ids are
    numbered in file order."""
    image_id = lmms_image_id(row, where)
    file_name = f"COCO_train2014_{image_id:012d}.jpg"
    box = [round(v, 2) for v in lmms_box(row, where)]
    if image_id not in out.images:
        out.images[image_id] = {"id": image_id, "file_name": file_name,
                                **write_embedded(row.get("image"), image_dir / file_name, where, out)}
    ref_id = len(out.refs) + 1
    seg = [round(float(v), 2) for v in row.get("segmentation") or ()]
    first = out.sentences + 1
    texts = [str(a) for a in row.get("answer") or () if str(a).strip()]
    if not texts:
        raise DataError(f"{where}: answer holds no expression ({row.get('answer')!r}); the row is damaged.")
    sents = []
    for i, t in enumerate(texts):
        tokens = norm_text(t).split()
        sents.append({"sent_id": first + i, "sent": " ".join(tokens), "raw": t, "tokens": tokens})
    out.refs.append({"ref_id": ref_id, "ann_id": ref_id, "image_id": image_id, "split": target, "category_id": 0,
                     "sent_ids": [s["sent_id"] for s in sents], "sentences": sents, "file_name": file_name,
                     "question_id": str(row.get("question_id"))})
    out.sentences += len(sents)
    out.anns[ref_id] = {"id": ref_id, "image_id": image_id, "category_id": 0, "bbox": box, "segmentation": [seg] if seg else [],
                        "area": box[2] * box[3], "iscrowd": int(row.get("iscrowd") or 0)}


def embedded_bytes(image: Any) -> bytes | None:
    """The bytes of an embedded image ({bytes, path} struct or plain binary), else None."""
    data = image.get("bytes") if isinstance(image, dict) else image
    return bytes(data) if isinstance(data, (bytes, bytearray)) and data else None


def write_embedded(image: Any, dest: Path, where: str, out: Converted) -> dict:
    """Write an embedded image ({bytes, path}) as a file (kept if a valid one is there); its size."""
    from PIL import Image

    data = embedded_bytes(image)
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
        raise DataError(f"{where}: the row embeds no image bytes for {dest.name} and {dest} is not there; the file "
                        f"is damaged or was saved without images: download it again.")
    with Image.open(dest) as im:
        return {"width": im.size[0], "height": im.size[1]}


def _same_polygon(a: Any, b: Sequence[float]) -> bool:
    if not isinstance(a, list) or not a or not isinstance(a[0], list) or len(a[0]) != len(b) or not b:
        return False
    return all(abs(float(p) - float(q)) <= MATCH_TOL for p, q in zip(a[0], b))


def complete_from_coco(coco_path: Path, layout: str, out: Converted) -> dict[str, Any]:
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
    try:
        for a in coco["annotations"]:
            by_image.setdefault(int(a["image_id"]), []).append(a)
        images = {int(i["id"]): i for i in coco["images"]}
    except (TypeError, KeyError, ValueError):
        raise DataError(f"{coco_path}: an image or annotation record without an integer id / image_id; not a COCO "
                        f"instances file.") from None
    missing = sorted(set(out.images) - set(images))
    if missing:
        raise DataError(f"{coco_path}: lacks image(s) {missing[:5]} of the import ({len(missing)} in all); use COCO's "
                        f"instances_train2014.json (annotations_trainval2014.zip).")
    for ref in out.refs:
        mine = out.anns[ref["ann_id"]]
        close = [a for a in by_image.get(ref["image_id"], []) if box_distance(a.get("bbox"), mine["bbox"]) <= MATCH_TOL]
        if layout == "jxu124":
            close = [a for a in close if int(a["id"]) == ref["ann_id"]]
        elif len(close) > 1 and mine["segmentation"]:  # identical boxes: tell them apart by the polygon
            close = [a for a in close if _same_polygon(a.get("segmentation"), mine["segmentation"][0])] or close
        if len(close) != 1:
            raise DataError(f"{coco_path}: ref {ref['ref_id']} (image {ref['image_id']}, box {mine['bbox']}) matches "
                            f"{len(close)} annotations there, not one; it is not the COCO release these refs were made from.")
        ref["ann_id"] = int(close[0]["id"])
        if layout == "lmms-lab":  # jxu124 rows carry the refer category already
            ref["category_id"] = int(close[0]["category_id"])
    out.anns = {int(a["id"]): a for i in out.images for a in by_image.get(i, [])}
    for i in out.images:
        out.images[i] = {**images[i], **{k: v for k, v in out.images[i].items() if k in ("file_name", "width", "height") and v}}
    return {"categories": coco.get("categories") or [], "path": str(coco_path), "sha256": digest}


def coco_categories() -> list[dict]:
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
