"""Tiny copies of the published RefCOCO-family files, written from the refer fixture
(helpers/refer_fixture.py) so every count is known, in the exact shapes of the real files
(/work/shared/REAL_DATA.md; docs/data.md): file names, column names, Arrow types, nesting, box
conventions and split names.

* jxu124/refcoco*: ``data/<split>-00000-of-00001-<hash>.parquet``, one row per ref, xyxy ``bbox``,
  testA called ``test``; the older revision (``sentences`` a string, ``anns`` / ``image_info`` /
  ``texts``) and two ``test-*.parquet`` side by side.
* lmms-lab/RefCOCO*: one row per object, embedded JPEG, xywh float32 ``bbox``, one flat float32
  ``segmentation``, ``iscrowd`` int8, ``question_id`` the ``<n>`` of ``COCO_train2014_<12d>_<n>.jpg``;
  ``val`` = the unc (umd) val MERGED with the google val, RefCOCO ``test`` = the google test.
* a ``save_to_disk`` folder (``dataset_dict.json``, ``<split>/data-00000-of-00001.arrow``,
  ``dataset_info.json``, ``state.json``).
* per-expression copies: a Kangheng-style parquet (schema UNVERIFIED: two plausible variants), the
  Qwen-VL / InternVL ``<dataset>_<split>.jsonl`` and MDETR's ``finetune_<dataset>_<split>.json`` /
  ``final_refexp_val.json``.
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SENTENCE = pa.struct([("raw", pa.string()), ("sent", pa.string()), ("sent_id", pa.int64()), ("tokens", pa.list_(pa.string()))])
JXU124 = pa.schema([
    ("sent_ids", pa.list_(pa.int64())), ("file_name", pa.string()), ("ann_id", pa.int64()), ("ref_id", pa.int64()),
    ("image_id", pa.int64()), ("split", pa.string()), ("sentences", pa.list_(SENTENCE)), ("category_id", pa.int64()),
    ("raw_anns", pa.string()), ("raw_image_info", pa.string()), ("raw_sentences", pa.string()), ("image_path", pa.string()),
    ("bbox", pa.list_(pa.float64())), ("captions", pa.list_(pa.string())), ("global_image_id", pa.string()),
    ("anns_id", pa.string())])
#: jxu124/refcoco at revision 957ef85 (its card): sentences a string, anns / image_info / texts
JXU124_OLD = pa.schema([
    ("sent_ids", pa.list_(pa.int64())), ("file_name", pa.string()), ("ann_id", pa.int64()), ("ref_id", pa.int64()),
    ("image_id", pa.int64()), ("split", pa.string()), ("sentences", pa.string()), ("category_id", pa.int64()),
    ("texts", pa.list_(pa.string())), ("image_info", pa.string()), ("image_path", pa.string()), ("anns", pa.string()),
    ("bbox", pa.list_(pa.float64())), ("global_image_id", pa.string())])
IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
LMMS = pa.schema([("question_id", pa.string()), ("image", IMAGE), ("question", pa.string()), ("answer", pa.list_(pa.string())),
                  ("segmentation", pa.list_(pa.float32())), ("bbox", pa.list_(pa.float32())), ("iscrowd", pa.int8()),
                  ("file_name", pa.string())])
LMMS_PROMPT = "Please carefully observe the area circled in the image and come up with a caption for the area."
JXU124_SPLITS = {"unc": {"train": "train", "val": "validation", "testA": "test", "testB": "testB"},
                 "umd": {"train": "train", "val": "validation", "test": "test"}}


def toy_task(name: str = "toyref"):
    """A task card by name (the toy cards of tests/data/conftest.py)."""
    from cptbench.tasks.cards import get_task

    return get_task(name)


def examples(root: Path, dataset: str, split_by: str, split: str):
    """The loader's examples of a split, by (expression, boxes): what runs would see."""
    from cptbench.data.refer import ReferDataset

    ds = ReferDataset(root, dataset, split_by, root / "images" / "train2014")
    return {(e.expression, tuple(map(tuple, e.boxes.round(2)))): e for e in ds.load_split(split).examples}


def refer_data(src: Path, dataset: str, split_by: str = "unc"):
    """(refs, instances) of the refer fixture under ``src``."""
    refs = pickle.loads((src / dataset / f"refs({split_by}).p").read_bytes())
    inst = json.loads((src / dataset / "instances.json").read_text())
    return refs, inst


def add_google_split(src: Path, dataset: str, split_by: str = "unc") -> dict[str, list[dict]]:
    """Write ``refs(google).p`` beside the fixture's refs: the same refs partitioned by object, as the
    google split is (val: four refs of unc train and the first of unc val; test, RefCOCO only: the next
    three of unc train). The google refs by split."""
    refs, _ = refer_data(src, dataset, split_by)
    train = [r for r in refs if r["split"] == "train"]
    val = train[:4] + [r for r in refs if r["split"] == "val"][:1]
    test = train[4:7] if split_by == "unc" else []
    chosen = {r["ref_id"]: s for s, rs in (("val", val), ("test", test)) for r in rs}
    google = [dict(r, split=chosen.get(r["ref_id"], "train")) for r in refs]
    (src / dataset / "refs(google).p").write_bytes(pickle.dumps(google, protocol=2))
    return {"val": [r for r in google if r["split"] == "val"], "test": [r for r in google if r["split"] == "test"]}


def _jpeg(path: Path) -> bytes:
    buf = io.BytesIO()
    with Image.open(path) as im:
        im.convert("RGB").save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _coco_name(image_id: int) -> str:
    return f"COCO_train2014_{image_id:012d}.jpg"


def write_jxu124(src: Path, out: Path, dataset: str, split_by: str = "unc", *, old: bool = False, drop_val: int = 0,
                 test_copies: int = 1) -> Path:
    """jxu124's parquet files: ``data/<split>-00000-of-00001-<hash>.parquet``, testA called "test"; ``old``:
    the 957ef85 revision's columns; ``test_copies=2``: two "test" files side by side."""
    refs, inst = refer_data(src, dataset, split_by)
    anns = {a["id"]: a for a in inst["annotations"]}
    imgs = {i["id"]: i for i in inst["images"]}
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, hf in JXU124_SPLITS[split_by].items():
        rows = []
        for r in [r for r in refs if r["split"] == split]:
            a = anns[r["ann_id"]]
            x, y, w, h = a["bbox"]
            row = {"sent_ids": r["sent_ids"], "file_name": r["file_name"], "ann_id": r["ann_id"], "ref_id": r["ref_id"],
                   "image_id": r["image_id"], "split": r["split"], "category_id": r["category_id"],
                   "image_path": f"coco/train2014/{_coco_name(r['image_id'])}", "bbox": [x, y, x + w, y + h],
                   "global_image_id": f"coco.{r['image_id']}"}
            if old:
                row.update(sentences=json.dumps(r["sentences"]), texts=[s["sent"] for s in r["sentences"]],
                           image_info=json.dumps(imgs[r["image_id"]]), anns=json.dumps(a))
            else:
                row.update(sentences=r["sentences"], raw_anns=json.dumps(a), raw_image_info=json.dumps(imgs[r["image_id"]]),
                           raw_sentences=json.dumps(r["sentences"]), captions=[s["sent"] for s in r["sentences"]],
                           anns_id=str(r["ann_id"]))
            rows.append(row)
        if split == "val" and drop_val:
            rows = rows[:-drop_val]
        table = pa.Table.from_pylist(rows, schema=JXU124_OLD if old else JXU124)
        for copy in range(test_copies if hf == "test" else 1):
            pq.write_table(table, out / "data" / f"{hf}-00000-of-00001-{'0a1b2c3d4e5f6a7b' if copy == 0 else '82af0c1b600890ac'}.parquet")
    return out


def lmms_row(r: dict, ann: dict, images: Path, question_id: str = "suffix") -> dict:
    """One lmms-lab row for ref ``r``: its expressions, the object's box and polygon, the image as JPEG."""
    qid = str(r["ann_id"]) if question_id == "ann_id" else r["file_name"].rsplit("_", 1)[1].split(".")[0]
    png = images / f"COCO_train2014_{r['image_id']:012d}.png"
    return {"question_id": qid, "image": {"bytes": _jpeg(png), "path": _coco_name(r["image_id"])}, "question": LMMS_PROMPT,
            "answer": [s["raw"] for s in r["sentences"]], "segmentation": [float(v) for v in ann["segmentation"][0]],
            "bbox": [float(v) for v in ann["bbox"]], "iscrowd": int(ann["iscrowd"]), "file_name": r["file_name"]}


def lmms_splits(src: Path, dataset: str, split_by: str = "unc", *, merged: bool = True, question_id: str = "suffix") -> dict[str, list[dict]]:
    """lmms-lab's splits as rows: val = the unc (umd) val + the google val (interleaved; ``merged=False``:
    clean, as RefCOCO+'s), RefCOCO's test = the google test, testA / testB (RefCOCOg: test) = unc (umd)."""
    refs, inst = refer_data(src, dataset, split_by)
    anns = {a["id"]: a for a in inst["annotations"]}
    images = src / "images" / "train2014"
    row = lambda r: lmms_row(r, anns[r["ann_id"]], images, question_id)  # noqa: E731
    google = add_google_split(src, dataset, split_by) if merged else {"val": [], "test": []}
    val = [row(r) for r in refs if r["split"] == "val"]
    extra = [row(r) for r in google["val"]]
    mixed = [x for pair in zip(val, extra) for x in pair] + val[len(extra):] + extra[len(val):]
    out = {"val": mixed}
    if split_by == "unc":
        if merged:
            out["test"] = [row(r) for r in google["test"]]
        out.update({s: [row(r) for r in refs if r["split"] == s] for s in ("testA", "testB")})
    else:
        out["test"] = [row(r) for r in refs if r["split"] == "test"]
    return out


def write_lmms(src: Path, out: Path, dataset: str, split_by: str = "unc", *, merged: bool = True,
               question_id: str = "suffix") -> Path:
    """lmms-lab's parquet files ``data/<split>-0000i-of-0000N.parquet`` (val in two shards)."""
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in lmms_splits(src, dataset, split_by, merged=merged, question_id=question_id).items():
        parts = [rows[:5], rows[5:]] if split == "val" else [rows]
        for i, part in enumerate(parts):
            pq.write_table(pa.Table.from_pylist(part, schema=LMMS), out / "data" / f"{split}-{i:05d}-of-{len(parts):05d}.parquet")
    return out


def write_save_to_disk(src: Path, out: Path, dataset: str, split_by: str = "unc", **kw) -> Path:
    """lmms-lab's splits as ``DatasetDict.save_to_disk`` writes them: ``dataset_dict.json``, and per split
    ``data-00000-of-00001.arrow`` (an Arrow stream), ``dataset_info.json``, ``state.json``."""
    splits = lmms_splits(src, dataset, split_by, **kw)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}))
    for split, rows in splits.items():
        d = out / split
        d.mkdir()
        table = pa.Table.from_pylist(rows, schema=LMMS)
        with pa.OSFile(str(d / "data-00000-of-00001.arrow"), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
            w.write_table(table)
        (d / "dataset_info.json").write_text(json.dumps({"builder_name": "parquet", "dataset_name": "ref_coco",
                                                         "features": {c: {"_type": "Value"} for c in LMMS.names},
                                                         "splits": {split: {"name": split, "num_examples": len(rows)}}}))
        (d / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}],
                                                  "_fingerprint": "0123456789abcdef", "_format_columns": None,
                                                  "_format_kwargs": {}, "_format_type": None, "_output_all_columns": False,
                                                  "_split": split}))
    return out


def expressions(src: Path, dataset: str, split_by: str = "unc"):
    """(split, ref, sentence, annotation, image record) for every expression of the fixture, in file order."""
    refs, inst = refer_data(src, dataset, split_by)
    anns = {a["id"]: a for a in inst["annotations"]}
    imgs = {i["id"]: i for i in inst["images"]}
    for r in refs:
        for s in r["sentences"]:
            yield r["split"], r, s, anns[r["ann_id"]], imgs[r["image_id"]]


def write_kangheng(src: Path, out: Path, dataset: str, split_by: str = "unc", *, variant: str = "lmms") -> Path:
    """A per-expression parquet (Kangheng/refcoco; schema UNVERIFIED) of the eval splits, one row per
    expression, images embedded. ``variant="lmms"``: lmms-lab's columns with one expression in ``answer``
    and an xywh ``bbox``; ``"named"``: ``image_id`` int64, ``expression``, ``box`` xyxy float64."""
    images = src / "images" / "train2014"
    by_split: dict[str, list] = {}
    for split, r, s, a, im in expressions(src, dataset, split_by):
        if split == "train":
            continue
        png = images / f"COCO_train2014_{r['image_id']:012d}.png"
        img = {"bytes": _jpeg(png), "path": _coco_name(r["image_id"])}
        x, y, w, h = a["bbox"]
        if variant == "lmms":
            row = {"question_id": str(s["sent_id"]), "image": img, "question": LMMS_PROMPT, "answer": [s["raw"]],
                   "segmentation": [float(v) for v in a["segmentation"][0]], "bbox": [x, y, w, h], "iscrowd": 0,
                   "file_name": r["file_name"]}
        else:
            row = {"image": img, "image_id": r["image_id"], "expression": s["sent"], "box": [x, y, x + w, y + h]}
        by_split.setdefault(split, []).append(row)
    schema = LMMS if variant == "lmms" else pa.schema([("image", IMAGE), ("image_id", pa.int64()), ("expression", pa.string()),
                                                      ("box", pa.list_(pa.float64()))])
    (out / "data").mkdir(parents=True, exist_ok=True)
    for split, rows in by_split.items():
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "data" / f"{split}-00000-of-00001.parquet")
    return out


def write_qwen_jsonl(src: Path, out: Path, dataset: str, split_by: str = "unc") -> Path:
    """The Qwen-VL / InternVL evaluation files ``<dataset>_<split>.jsonl`` of the eval splits: one object
    per expression, ``image`` path, ``sent``, ``bbox`` [x1, y1, x2, y2], ``width``, ``height``."""
    out.mkdir(parents=True, exist_ok=True)
    lines: dict[str, list[str]] = {}
    for split, r, s, a, im in expressions(src, dataset, split_by):
        if split == "train":
            continue
        x, y, w, h = a["bbox"]
        lines.setdefault(split, []).append(json.dumps({"image": f"train2014/{_coco_name(r['image_id'])}", "sent": s["sent"],
                                                       "bbox": [x, y, x + w, y + h], "width": im["width"], "height": im["height"]}))
    for split, ls in lines.items():
        (out / f"{dataset}_{split}.jsonl").write_text("\n".join(ls) + "\n")
    return out


def _mdetr_records(items, dataset: str, start: int = 0):
    images, anns = [], []
    for n, (split, r, s, a, im) in enumerate(items, start):
        first = s["sent"].split()[0] if s["sent"] else ""
        images.append({"file_name": _coco_name(r["image_id"]), "height": im["height"], "width": im["width"], "id": n,
                       "original_id": r["image_id"], "caption": s["sent"], "dataset_name": dataset, "tokens_negative": [[0, len(first)]]})
        anns.append({"area": a["area"], "iscrowd": a["iscrowd"], "image_id": n, "category_id": r["category_id"], "id": n,
                     "bbox": a["bbox"], "original_id": r["ann_id"], "tokens_positive": [[0, len(first)]]})
    return images, anns


def write_mdetr(src: Path, out: Path, dataset: str, split_by: str = "unc", *, other_dataset: str = "refcoco+") -> Path:
    """MDETR's annotation files: ``finetune_<dataset>_<split>.json`` per split and ``final_refexp_val.json``
    (this dataset's val and, as the real one, other datasets' val: here records named ``other_dataset``)."""
    out.mkdir(parents=True, exist_ok=True)
    items = list(expressions(src, dataset, split_by))
    _, inst = refer_data(src, dataset, split_by)
    head = {"info": {"description": "refexp"}, "licenses": [], "categories": inst["categories"]}
    for split in dict.fromkeys(x[0] for x in items):
        images, anns = _mdetr_records([x for x in items if x[0] == split], dataset)
        (out / f"finetune_{dataset}_{split}.json").write_text(json.dumps({**head, "images": images, "annotations": anns}))
    val = [x for x in items if x[0] == "val"]
    images, anns = _mdetr_records(val, dataset)
    o_images, o_anns = _mdetr_records([x for x in items if x[0] == "train"][:5], other_dataset, start=len(images))
    (out / "final_refexp_val.json").write_text(json.dumps({**head, "images": images + o_images, "annotations": anns + o_anns}))
    return out
