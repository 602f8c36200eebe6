"""Fixtures in the exact shapes of the published files (/work/shared/REAL_DATA.md), small.

* :func:`py2_pickle`: a Python 2 ``cPickle.dump(obj, f, 2)`` byte stream written by hand: protocol 2,
  text as Python 2 ``str`` (``SHORT_BINSTRING`` / ``BINSTRING``, UTF-8 bytes; :class:`Unicode` marks a
  Python 2 ``unicode``), identifier-like strings memoised once and then referenced (``BINGET``, as
  interned dict keys are), ``BINPUT`` after every container and string, lists and dicts filled with
  ``APPENDS`` / ``SETITEMS`` in batches of 1000.
* :func:`write_refer_shapes`: a refer-layout data root as ``refcoco.zip`` unpacks (``refcoco/refs(unc).p``
  a Python 2 pickle of plain dicts / lists / strings, ``refcoco/instances.json`` COCO style with
  ``info``, ``licenses``, full image records, polygons, a crowd annotation with an uncompressed RLE
  and a zero-height box), JPEG images in the refer toolkit's folder
  (``images/mscoco/images/train2014``), and detections as MAttNet and ReCLIP publish them, with
  boxes that reach 40 px past the image border.
"""

from __future__ import annotations

import io
import json
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image


class Unicode(str):
    """Text pickled as a Python 2 ``unicode`` (``BINUNICODE``) instead of a ``str``."""


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Py2Pickler:
    def __init__(self):
        self.out = io.BytesIO()
        self.memo: dict = {}

    def put(self, key) -> None:
        idx = len(self.memo)
        self.memo[key] = idx
        self.out.write(b"q" + bytes([idx]) if idx < 256 else b"r" + struct.pack("<I", idx))

    def get(self, idx: int) -> None:
        self.out.write(b"h" + bytes([idx]) if idx < 256 else b"j" + struct.pack("<I", idx))

    def dump(self, obj) -> None:
        w = self.out.write
        if obj is None:
            w(b"N")
        elif obj is True:
            w(b"\x88")
        elif obj is False:
            w(b"\x89")
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                w(b"K" + bytes([obj]))
            elif 0 <= obj < 65536:
                w(b"M" + struct.pack("<H", obj))
            elif -(2 ** 31) <= obj < 2 ** 31:
                w(b"J" + struct.pack("<i", obj))
            else:  # a Python 2 long
                n = (obj.bit_length() + 8) // 8
                w(b"\x8a" + bytes([n]) + obj.to_bytes(n, "little", signed=True))
        elif isinstance(obj, float):
            w(b"G" + struct.pack(">d", obj))
        elif isinstance(obj, str):
            key = ("s", type(obj) is Unicode, str(obj))
            if _IDENT.match(obj) and key in self.memo:  # interned in Python 2: pickled once
                self.get(self.memo[key])
                return
            data = str(obj).encode("utf-8")
            if isinstance(obj, Unicode):
                w(b"X" + struct.pack("<I", len(data)) + data)
            elif len(data) < 256:
                w(b"U" + bytes([len(data)]) + data)
            else:
                w(b"T" + struct.pack("<I", len(data)) + data)
            self.put(key if _IDENT.match(obj) else ("id", id(obj), len(self.memo)))
        elif isinstance(obj, list):
            w(b"]")
            self.put(("id", id(obj)))
            for i in range(0, len(obj), 1000):
                w(b"(")
                for v in obj[i:i + 1000]:
                    self.dump(v)
                w(b"e")
        elif isinstance(obj, dict):
            w(b"}")
            self.put(("id", id(obj)))
            items = list(obj.items())
            for i in range(0, len(items), 1000):
                w(b"(")
                for k, v in items[i:i + 1000]:
                    self.dump(k)
                    self.dump(v)
                w(b"u")
        elif isinstance(obj, tuple):
            w(b"(")
            for v in obj:
                self.dump(v)
            w(b"t")
            self.put(("id", id(obj)))
        else:
            raise TypeError(f"not plain data: {type(obj).__name__}")


def py2_pickle(obj) -> bytes:
    """``obj`` (plain dicts, lists, tuples, str, int, float, bool, None) as Python 2's cPickle
    protocol 2 writes it."""
    p = _Py2Pickler()
    p.out.write(b"\x80\x02")
    p.dump(obj)
    p.out.write(b".")
    return p.out.getvalue()


# ------------------------------------------------------------------------------------ the data
#: (image id, W, H, split) of the fixture's images; 550395 and 200365 are the COCO images with the
#: zero-height annotations 2206849 and 918
IMAGES = [(9, 64, 48, "train"), (25, 64, 48, "train"), (30, 64, 48, "train"), (34, 64, 48, "train"),
          (550395, 64, 48, "val"), (200365, 64, 48, "val"), (49, 64, 48, "val"), (61, 56, 40, "testA"),
          (71, 64, 48, "testA"), (77, 64, 48, "testB"), (81, 64, 48, "testB")]
CATEGORIES = [{"supercategory": "person", "id": 1, "name": "person"},
              {"supercategory": "animal", "id": 18, "name": "dog"},
              {"supercategory": "vehicle", "id": 3, "name": "car"}]


@dataclass
class Shapes:
    """What :func:`write_refer_shapes` wrote and the facts the tests check against."""

    root: Path
    dataset_dir: Path
    image_dir: Path
    refs: list
    instances: dict
    zero_height_anns: list[int] = field(default_factory=list)
    crowd_ann: int = 0
    mattnet: Path | None = None
    reclip: Path | None = None


def _rle_counts(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts of a boolean (H, W) mask (column-major, starting with zeros)."""
    flat = mask.flatten(order="F").astype(np.uint8)
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return counts


def write_refer_shapes(root: Path, dataset: str = "refcoco", split_by: str = "unc", seed: int = 0,
                       images_list=IMAGES) -> Shapes:
    """A refer-layout data root in the published shapes (module docstring); returns what it holds.
    ``images_list``: (image id, W, H, split) of each image (default :data:`IMAGES`)."""
    rng = np.random.default_rng(seed)
    ds_dir = root / dataset
    img_dir = root / "images" / "mscoco" / "images" / "train2014"
    ds_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns, refs = [], [], []
    ann_id, ref_id, sent_id = 100, 0, 1000
    zero, crowd = [], 0
    for image_id, w, h, split in images_list:
        name = f"COCO_train2014_{image_id:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / name, quality=90)
        images.append({"license": 3, "file_name": name, "coco_url": f"http://images.cocodataset.org/train2014/{name}",
                       "height": h, "width": w, "date_captured": "2013-11-14 16:28:13",
                       "flickr_url": f"http://farm4.staticflickr.com/1/{image_id}_x.jpg", "id": image_id})
        mine = []
        for j in range(3):
            ann_id += 1
            x, y = round(2.0 + 20 * j + rng.uniform(0, 2), 2), round(rng.uniform(1, 10), 2)
            bw, bh = round(min(16.0, w - x - 1), 2), round(rng.uniform(14, h - y - 1), 2)
            poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
            anns.append({"segmentation": [[round(v, 2) for v in poly]], "area": round(bw * bh, 2), "iscrowd": 0,
                         "image_id": image_id, "bbox": [x, y, bw, bh], "category_id": CATEGORIES[j]["id"], "id": ann_id})
            mine.append(ann_id)
        if image_id in (550395, 200365):  # the real zero-height annotations: every annotation is a candidate
            zid = 2206849 if image_id == 550395 else 918
            anns.append({"segmentation": [[30.0, 40.0, 45.5, 40.0, 45.5, 40.0, 30.0, 40.0]], "area": 0.0, "iscrowd": 0,
                         "image_id": image_id, "bbox": [30.0, 40.0, 15.5, 0.0], "category_id": 3, "id": zid})
            zero.append(zid)
        if image_id == 71:  # a crowd annotation: an uncompressed RLE
            ann_id += 1
            crowd = ann_id
            m = np.zeros((h, w), bool)
            m[30:44, 5:60] = True
            anns.append({"segmentation": {"counts": _rle_counts(m), "size": [h, w]}, "area": float(m.sum()),
                         "iscrowd": 1, "image_id": image_id, "bbox": [5.0, 30.0, 55.0, 14.0], "category_id": 1,
                         "id": crowd})
        for target in (mine[0], mine[2]):
            ref_id += 1
            sents = []
            for k, raw in enumerate(["The man on the LEFT.", "guy in red, left side" if target % 2 else "Café chair, right"]):
                sent_id += 1
                tokens = re.findall(r"[a-zé]+", raw.lower())
                sents.append({"tokens": tokens, "raw": raw, "sent_id": sent_id, "sent": " ".join(tokens)})
            refs.append({"sent_ids": [s["sent_id"] for s in sents], "file_name": f"COCO_train2014_{image_id:012d}_{target}.jpg",
                         "ann_id": target, "ref_id": ref_id, "image_id": image_id, "split": split, "sentences": sents,
                         "category_id": next(a["category_id"] for a in anns if a["id"] == target)})
    instances = {"info": {"description": "This is stable 1.0 version of the 2014 MS COCO dataset.", "version": "1.0",
                          "year": 2014, "contributor": "Microsoft COCO group", "date_created": "2015-01-27 09:11:52.357475"},
                 "images": images, "licenses": [{"url": "http://creativecommons.org/licenses/by-nc-sa/2.0/", "id": 3,
                                                 "name": "Attribution-NonCommercial-ShareAlike License"}],
                 "type": "instances", "annotations": anns, "categories": CATEGORIES}
    (ds_dir / "instances.json").write_text(json.dumps(instances))
    (ds_dir / f"refs({split_by}).p").write_bytes(py2_pickle(refs))
    shapes = Shapes(root, ds_dir, img_dir, refs, instances, zero, crowd)
    shapes.mattnet, shapes.reclip = write_detections(shapes, root)
    return shapes


def detections(shapes: Shapes) -> list[dict]:
    """MAttNet-style records for every image: each annotation's box jittered (some far enough to
    miss), plus two boxes reaching 40 px past the border, over the first annotation (past the left)
    and the last (past the right): clipped to the image they would hit, scored raw they miss."""
    rng = np.random.default_rng(7)
    sizes = {i["id"]: (i["width"], i["height"]) for i in shapes.instances["images"]}
    out, det_id = [], 0
    for a in shapes.instances["annotations"]:
        if a["bbox"][2] <= 0 or a["bbox"][3] <= 0 or a.get("iscrowd"):
            continue
        x, y, w, h = a["bbox"]
        det_id += 1
        jitter = rng.uniform(-3, 3, 4)
        if a["id"] % 2:  # on odd annotation ids the detector misses: its box slides off by 60 %
            jitter[0] += 0.6 * w
        out.append({"box": [round(float(v), 2) for v in (x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3])],
                    "image_id": a["image_id"], "category_name": "person", "score": round(float(rng.uniform(0.3, 1)), 4),
                    "det_id": det_id, "h5_id": det_id - 1})
    for image_id, (W, H) in sizes.items():
        mine = [a["bbox"] for a in shapes.instances["annotations"] if a["image_id"] == image_id
                and a["bbox"][2] > 0 and a["bbox"][3] > 0 and not a.get("iscrowd")]
        (x0, y0, w0, h0), (x1, y1, w1, h1) = mine[0], mine[-1]
        for extra in ([-40.0, y0, x0 + w0 + 40.0, h0], [x1, y1, W - x1 + 40.0, h1]):
            det_id += 1
            out.append({"box": extra, "image_id": image_id, "category_name": "person", "score": 0.5,
                        "det_id": det_id, "h5_id": det_id - 1})
    return out


def write_detections(shapes: Shapes, folder: Path) -> tuple[Path, Path]:
    """MAttNet's ``res101_coco_minus_refer_notime_dets.json`` (a list of records) and ReCLIP's
    ``{image_id: [[x, y, w, h], ...]}`` of plain lists, from :func:`detections`."""
    recs = detections(shapes)
    mattnet = folder / "res101_coco_minus_refer_notime_dets.json"
    mattnet.write_text(json.dumps(recs))
    reclip: dict[str, list] = {}
    for r in recs:
        reclip.setdefault(str(r["image_id"]), []).append(list(r["box"]))
    path = folder / "reclip_dets.json"
    path.write_text(json.dumps(reclip))
    return mattnet, path


CARD = """\
name: {name}
version: 1
description: the published refer shapes, small (tests)
source: refer
dataset: {dataset}
split_by: {split_by}
train_split: train
eval_splits: [val, testA, testB]
default_model: none
image_dir: images/train2014
expected_counts:
  val: {{sentences: 12, refs: 6, images: 3}}
"""


def write_shapes_card(folder: Path, name: str = "realref", dataset: str = "refcoco", split_by: str = "unc") -> Path:
    """A task card over :func:`write_refer_shapes`' data (images found in the refer toolkit layout)."""
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.yaml"
    p.write_text(CARD.format(name=name, dataset=dataset, split_by=split_by))
    return p
