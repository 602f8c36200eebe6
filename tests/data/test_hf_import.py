"""Importing Hugging Face copies: small parquet fixtures written in both known column layouts
(jxu124/refcoco*, lmms-lab/RefCOCO*) from the refer fixture, so every imported record can be
compared with the refer files it stands for."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cptbench.core.errors import DataError
from cptbench.data.hf_import import import_hf
from cptbench.data.hf_inputs import scan_inputs
from cptbench.data.refer import ReferDataset
from cptbench.data.provenance import SOURCE_FILE
from refer_fixture import write_refer_fixture

CARD = """\
name: toyref
version: 1
description: tiny refer-layout fixture with the published sizes of every split
source: refer
dataset: toyref
split_by: unc
train_split: train
eval_splits: [val, testA, testB]
default_model: none
image_dir: images/train2014
expected_counts:
  train: {sentences: 24, refs: 12, images: 6}
  val: {sentences: 12, refs: 6, images: 3}
  testA: {sentences: 8, refs: 4, images: 2}
  testB: {sentences: 8, refs: 4, images: 2}
"""


@pytest.fixture(autouse=True)
def card(tmp_path, monkeypatch):
    (tmp_path / "cards").mkdir()
    (tmp_path / "cards" / "toyref.yaml").write_text(CARD)
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "200")


@pytest.fixture
def src(tmp_path):
    return write_refer_fixture(tmp_path / "refer")


def task():
    from cptbench.tasks.cards import get_task

    return get_task("toyref")


def refer_files(root: Path):
    refs = pickle.loads((root / "toyref" / "refs(unc).p").read_bytes())
    inst = json.loads((root / "toyref" / "instances.json").read_text())
    return refs, inst


def write_jxu124(src: Path, out: Path, drop_val: int = 0) -> Path:
    """jxu124/refcoco's columns and split names (testA is called "test"); no images."""
    refs, inst = refer_files(src)
    anns = {a["id"]: a for a in inst["annotations"]}
    imgs = {i["id"]: i for i in inst["images"]}
    for split, hf in {"train": "train", "val": "validation", "testA": "test", "testB": "testB"}.items():
        rows = []
        for r in [r for r in refs if r["split"] == split]:
            a = anns[r["ann_id"]]
            x, y, w, h = a["bbox"]
            rows.append({"sent_ids": r["sent_ids"], "file_name": r["file_name"], "ann_id": r["ann_id"], "ref_id": r["ref_id"],
                         "image_id": r["image_id"], "split": r["split"], "sentences": r["sentences"],
                         "category_id": r["category_id"], "raw_anns": json.dumps(a), "raw_image_info": json.dumps(imgs[r["image_id"]]),
                         "raw_sentences": json.dumps(r["sentences"]), "image_path": f"coco/train2014/{imgs[r['image_id']]['file_name']}",
                         "bbox": [x, y, x + w, y + h], "captions": [s["sent"] for s in r["sentences"]],
                         "global_image_id": f"coco.{r['image_id']}", "anns_id": f"{r['ann_id']}"})
        if split == "val" and drop_val:
            rows = rows[:-drop_val]
        (out / "data").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows), out / "data" / f"{hf}-00000-of-00001-0a1b2c3d.parquet")
    return out


def write_lmms(src: Path, out: Path, foreign_val: int = 3, foreign_in_test: bool = True) -> Path:
    """lmms-lab/RefCOCO's columns and splits: val (mixed with rows of another split), test, testA,
    testB; images embedded; no train, no ids, no category."""
    refs, inst = refer_files(src)
    anns = {a["id"]: a for a in inst["annotations"]}
    images = src / "images" / "train2014"

    def row(r, tag):
        a = anns[r["ann_id"]]
        name = f"COCO_train2014_{r['image_id']:012d}.png"
        return {"question_id": f"{tag}_{r['ref_id']}", "image": {"bytes": (images / name).read_bytes(), "path": name},
                "question": "Please provide the bounding box coordinate of the region this sentence describes: <ref>",
                "answer": [s["raw"] for s in r["sentences"]], "segmentation": [float(v) for v in a["segmentation"][0]],
                "bbox": [float(v) for v in a["bbox"]], "iscrowd": 0, "file_name": r["file_name"]}

    schema = pa.schema([("question_id", pa.string()), ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
                        ("question", pa.string()), ("answer", pa.list_(pa.string())), ("segmentation", pa.list_(pa.float32())),
                        ("bbox", pa.list_(pa.float32())), ("iscrowd", pa.int8()), ("file_name", pa.string())])
    foreign = [row(r, "x") for r in refs if r["split"] == "train"][:foreign_val]
    val = [row(r, "val") for r in refs if r["split"] == "val"]
    mixed = val[:3] + foreign + val[3:]
    (out / "data").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(mixed[:5], schema=schema), out / "data" / "val-00000-of-00002.parquet")
    pq.write_table(pa.Table.from_pylist(mixed[5:], schema=schema), out / "data" / "val-00001-of-00002.parquet")
    test = foreign if foreign_in_test else [row(r, "y") for r in refs if r["split"] == "train"][foreign_val:foreign_val + 3]
    pq.write_table(pa.Table.from_pylist(test, schema=schema), out / "data" / "test-00000-of-00001.parquet")
    for split in ("testA", "testB"):
        rows = [row(r, split) for r in refs if r["split"] == split]
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), out / "data" / f"{split}-00000-of-00001.parquet")
    return out


def examples(root: Path, split: str):
    ds = ReferDataset(root, "toyref", "unc", root / "images" / "train2014")
    return ds, {(e.expression, tuple(map(tuple, e.boxes.round(2)))): e for e in ds.load_split(split).examples}


# ---------------------------------------------------------------------------------- jxu124
def test_jxu124_round_trip_with_coco_instances(src, tmp_path):
    rev = "9fba820" + "0" * 33  # laid out as in the Hugging Face cache: the id and revision are recorded
    hf = write_jxu124(src, tmp_path / "hub" / "datasets--jxu124--refcoco" / "snapshots" / rev)
    res = import_hf(task(), [hf], tmp_path / "out", coco_instances=src / "toyref" / "instances.json")
    assert res.layout == "jxu124"
    by = {d.hf_split: d for d in res.decisions}
    assert by["test"].target == "testA" and by["validation"].target == "val" and all(d.used for d in res.decisions)
    assert res.refs == {"train": 12, "val": 6, "testA": 4, "testB": 4}
    want_refs, want_inst = refer_files(src)
    got_refs, got_inst = refer_files(tmp_path / "out")
    assert sorted(got_refs, key=lambda r: r["ref_id"]) == sorted(want_refs, key=lambda r: r["ref_id"])
    assert sorted(a["id"] for a in got_inst["annotations"]) == sorted(a["id"] for a in want_inst["annotations"])
    # the loader gives the very same examples: candidates, boxes, expressions
    (tmp_path / "out" / "images").symlink_to(src / "images")
    _, a = examples(src, "testA")
    _, b = examples(tmp_path / "out", "testA")
    assert a.keys() == b.keys() and all(a[k].categories == b[k].categories for k in a)
    side = json.loads((tmp_path / "out" / "toyref" / SOURCE_FILE).read_text())
    assert side["method"] == "import" and side["source"]["layout"] == "jxu124" and side["source"]["coco_instances"]["sha256"]
    assert (side["source"]["dataset"], side["source"]["revision"]) == ("jxu124/refcoco", rev)
    assert len(side["source"]["files"]) == 4 and all(len(f["sha256"]) == 64 for f in side["source"]["files"])
    assert any("calls testA 'test'" in c for c in side["caveats"])
    assert not any("only the referred objects" in c for c in side["caveats"])


def test_jxu124_candidates_caveat_refused_or_recorded(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf")
    with pytest.raises(DataError, match="only the referred objects.*--coco-instances.*--referred-only"):
        import_hf(task(), [hf], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    res = import_hf(task(), [hf], tmp_path / "out", referred_only=True)
    _, inst = refer_files(tmp_path / "out")
    assert len(inst["annotations"]) == 2 * 13  # the two referred objects of each image, not its three
    assert {c["name"] for c in inst["categories"]} >= {"person", "dog"}  # COCO's category names by id
    assert any("candidates: only the referred objects" in c for c in res.caveats)
    with pytest.raises(DataError, match="already holds.*--force"):
        import_hf(task(), [hf], tmp_path / "out", referred_only=True)


def test_count_that_does_not_fit_is_refused(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", drop_val=1)
    with pytest.raises(DataError) as err:
        import_hf(task(), [hf], tmp_path / "out", referred_only=True)
    msg = str(err.value)
    assert "validation (5 rows) -> val: refused: 5 rows, but toyref val has 6 refs" in msg
    assert "--splits train,testA,testB" in msg and "cptbench data download toyref" in msg
    assert not (tmp_path / "out").exists()
    res = import_hf(task(), [hf], tmp_path / "out", referred_only=True, splits=["testA", "testB"])
    assert res.refs == {"testA": 4, "testB": 4}


# -------------------------------------------------------------------------------- lmms-lab
def test_lmms_val_is_corrected_and_images_written(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms")
    assert {f.hf_split for f in scan_inputs([hf])} == {"val", "test", "testA", "testB"}
    res = import_hf(task(), [hf], tmp_path / "out", coco_instances=src / "toyref" / "instances.json")
    by = {d.hf_split: d for d in res.decisions}
    assert by["val"].status == "corrected" and "9 rows = 6 val refs + 3 rows of split(s) 'test'" in by["val"].reason
    assert by["test"].status == "skipped" and by["test"].target is None
    assert by["testA"].status == by["testB"].status == "import"
    assert res.refs == {"val": 6, "testA": 4, "testB": 4} and res.sentences["val"] == 12
    assert res.images_written == 7
    for p in (tmp_path / "out" / "images" / "train2014").iterdir():
        from cptbench.data.images import verify_image

        assert verify_image(p, None) is None
    # matched to their COCO annotations by box: the same targets, categories and candidates as the refer files
    _, a = examples(src, "val")
    ds, b = examples(tmp_path / "out", "val")
    assert a.keys() == b.keys() and all(a[k].categories == b[k].categories for k in a)
    assert sorted(r["ann_id"] for r in ds.refs) == sorted(r["ann_id"] for r in refer_files(src)[0] if r["split"] != "train")
    side = json.loads((tmp_path / "out" / "toyref" / SOURCE_FILE).read_text())
    caveats = " | ".join(side["caveats"])
    assert "val corrected" in caveats and "not in this copy: split(s) train (k-shot runs need train)" in caveats
    assert side["images"]["source"] == "embedded in the parquet files" and side["images"]["fetched"] == 7


def test_lmms_val_refused_when_the_correction_does_not_fit(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", foreign_in_test=False)
    meta = hf / ".cache" / "huggingface" / "download" / "data"  # a `--local-dir` download's bookkeeping
    meta.mkdir(parents=True)
    (meta / "testA-00000-of-00001.parquet.metadata").write_text("e15256ece129a21d62e216f95f98ba2e808f96a0\netag\n1.0\n")
    with pytest.raises(DataError) as err:
        import_hf(task(), [hf], tmp_path / "out", referred_only=True)
    msg = str(err.value)
    assert "val (9 rows) -> val: refused: 9 rows, but toyref val has 6 refs" in msg and "leaves 9, not 6" in msg
    assert "--splits testA,testB" in msg
    res = import_hf(task(), [hf], tmp_path / "out", referred_only=True, splits=["testA", "testB"])
    assert res.refs == {"testA": 4, "testB": 4}
    _, inst = refer_files(tmp_path / "out")
    assert {c["name"] for c in inst["categories"]} == {"object"}
    side = json.loads((tmp_path / "out" / "toyref" / SOURCE_FILE).read_text())
    assert side["source"]["revision"] == "e15256ece129a21d62e216f95f98ba2e808f96a0"
    assert side["source"]["splits"]["val"]["status"] == "skipped"  # not asked for: recorded, never imported


def test_unknown_layout_names_the_columns(tmp_path):
    (tmp_path / "x").mkdir()
    pq.write_table(pa.Table.from_pylist([{"caption": "a", "img": 1}]), tmp_path / "x" / "train-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"columns \['caption', 'img'\] match no known layout"):
        import_hf(task(), [tmp_path / "x"], tmp_path / "out", referred_only=True)


def test_cli_import_then_check_reports_caveats(src, tmp_path):
    from cptbench.cli.main import cli

    hf = write_lmms(src, tmp_path / "lmms")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(out), "--referred-only",
                                 "--hf-dataset", "lmms-lab/RefCOCO", "--revision", "e15256e"])
    assert r.exit_code == 0, r.output
    assert "corrected" in r.output and "skipped" in r.output and "caveat" in r.output
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(out)])
    assert "Hugging Face lmms-lab/RefCOCO @ e15256e, lmms-lab layout" in r.output, r.output
    assert "caveat: candidates: only the referred objects" in r.output
    assert r.exit_code == 1 and "0 (expected 12)" in r.output  # no train split in this copy: check says so
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(out), "--referred-only"])
    assert r.exit_code == 1 and "--force" in r.output


def test_lmms_sentence_ids_are_numbered_in_file_order_and_inputs_hashed(src, tmp_path):
    import hashlib

    hf = write_lmms(src, tmp_path / "lmms")
    coco = src / "toyref" / "instances.json"
    import_hf(task(), [hf], tmp_path / "out", coco_instances=coco, splits=["testA", "testB"])
    refs, _ = refer_files(tmp_path / "out")
    ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert ids == list(range(1, len(ids) + 1)) and all(r["sent_ids"] == [s["sent_id"] for s in r["sentences"]] for r in refs)
    side = json.loads((tmp_path / "out" / "toyref" / SOURCE_FILE).read_text())
    assert side["source"]["coco_instances"]["sha256"] == hashlib.sha256(coco.read_bytes()).hexdigest()
    assert all(f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() for f in side["source"]["files"])
