"""The per-expression copies (one record per expression, no ref ids): Qwen-VL / InternVL JSONL,
MDETR's finetune_<dataset>_<split>.json / final_refexp_val.json and Kangheng-style parquet (schema
unverified: found by name and type). Each expression is matched to a distinct sentence of the refer
annotations; a split is imported only when its count is exactly the published number of expressions."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cptbench.core.errors import DataError
from cptbench.data.hf_import import import_hf
from cptbench.data.provenance import SOURCE_FILE
from hf_shapes import LMMS, examples, refer_data, toy_task, write_kangheng, write_mdetr, write_qwen_jsonl

pytestmark = pytest.mark.usefixtures("cards")
EVAL = {"val": 6, "testA": 4, "testB": 4}
EVAL_SENTS = {"val": 12, "testA": 8, "testB": 8}


def same_as_refer(src, out, splits=("val", "testA", "testB")):
    want, _ = refer_data(src, "refcoco")
    got, _ = refer_data(out, "refcoco")
    assert sorted(got, key=lambda r: r["ref_id"]) == sorted((r for r in want if r["split"] in splits), key=lambda r: r["ref_id"])


# ----------------------------------------------------------------------------- Qwen-VL JSONL
def test_qwen_jsonl_files_have_the_published_shape(src, tmp_path):
    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    assert sorted(p.name for p in q.iterdir()) == ["refcoco_testA.jsonl", "refcoco_testB.jsonl", "refcoco_val.jsonl"]
    line = json.loads((q / "refcoco_val.jsonl").read_text().splitlines()[0])
    assert set(line) == {"image", "sent", "bbox", "width", "height"} and line["image"].endswith(".jpg")
    assert line["bbox"][2] > line["bbox"][0] and len((q / "refcoco_val.jsonl").read_text().splitlines()) == 12


def test_qwen_jsonl_import(src, tmp_path):
    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    (q / "refcoco+_val.jsonl").write_text((q / "refcoco_val.jsonl").read_text())  # another dataset's file: left out
    with pytest.raises(DataError, match="carries no ref ids.*--annotations DIR, the refer folder of refcoco"):
        import_hf(toy_task(), [q], tmp_path / "out")
    res = import_hf(toy_task(), [q], tmp_path / "out", annotations=src)
    assert res.layout == "qwen-vl-jsonl" and res.refs == EVAL and res.sentences == EVAL_SENTS
    assert res.images_written == 0
    skipped = next(d for d in res.decisions if d.hf_split == "refcoco+_val.jsonl")
    assert skipped.status == "skipped" and "import it with --as refcoco+" in skipped.reason
    same_as_refer(src, tmp_path / "out")
    side = json.loads((tmp_path / "out" / "refcoco" / SOURCE_FILE).read_text())
    assert side["source"]["kind"] == "expressions" and side["source"]["layout"] == "qwen-vl-jsonl"
    assert len(side["source"]["files"]) == 3 and side["source"]["annotations"]["instances"]["sha256"]


def test_qwen_count_that_does_not_fit_is_refused(src, tmp_path):
    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    lines = (q / "refcoco_testB.jsonl").read_text().splitlines()
    (q / "refcoco_testB.jsonl").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError) as err:
        import_hf(toy_task(), [q], tmp_path / "out", annotations=src)
    assert "testB (7 expressions) -> testB: refused: 7 expressions, but toyref testB has 8" in str(err.value)
    assert "--splits val,testA" in str(err.value) and not (tmp_path / "out").exists()
    res = import_hf(toy_task(), [q], tmp_path / "out", annotations=src, splits=["val", "testA"])
    assert res.refs == {"val": 6, "testA": 4}


def test_qwen_expressions_that_do_not_match_are_named(src, tmp_path):
    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    lines = [json.loads(x) for x in (q / "refcoco_val.jsonl").read_text().splitlines()]
    lines[3]["sent"] = "something else entirely"
    lines[5] = dict(lines[4])  # the same expression twice: one of the split's is then missing
    lines[7]["bbox"] = [lines[7]["bbox"][0], lines[7]["bbox"][1], 10.0, 12.0]  # an xywh box in an xyxy file
    (q / "refcoco_val.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    with pytest.raises(DataError) as err:
        import_hf(toy_task(), [q], tmp_path / "out", annotations=src, splits=["val"])
    msg = str(err.value)
    assert "refcoco_val.jsonl: line 4: ref(s) [" in msg and "have no expression reading 'something else entirely'" in msg
    assert "line 6: repeats the expression of" in msg and "refcoco_val.jsonl: line 5" in msg
    assert "line 8: no ref on image" in msg and "9 of the 12 expressions of val in refs(unc).p matched" in msg


def test_qwen_damaged_lines(src, tmp_path):
    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    text = (q / "refcoco_testA.jsonl").read_text().splitlines()
    (q / "refcoco_testA.jsonl").write_text("\n".join(text[:2] + ["{not json"] + text[3:]) + "\n")
    with pytest.raises(DataError, match=r"refcoco_testA.jsonl: line 3: not a JSON object"):
        import_hf(toy_task(), [q], tmp_path / "out", annotations=src)
    (q / "refcoco_testA.jsonl").write_text("\n".join(text[:2] + ['{"img": "x", "caption": "y"}'] + text[3:]) + "\n")
    with pytest.raises(DataError, match=r"line 3: a Qwen-VL evaluation line has image, sent, bbox, width, height; this one has \['caption', 'img'\]"):
        import_hf(toy_task(), [q], tmp_path / "out", annotations=src)
    (q / "refcoco_testA.jsonl").write_text("\n".join(text[:2] + ['{"image": "a.jpg", "sent": "y", "bbox": [1, 2]}'] + text[3:]) + "\n")
    with pytest.raises(DataError, match=r"line 3: image 'a.jpg' names no COCO_train2014_<12 digits> file, or bbox \[1, 2\]"):
        import_hf(toy_task(), [q], tmp_path / "out", annotations=src)


def test_qwen_image_size_checked(src, tmp_path):
    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    lines = [json.loads(x) for x in (q / "refcoco_testA.jsonl").read_text().splitlines()]
    lines[0]["width"] = 640
    (q / "refcoco_testA.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    with pytest.raises(DataError, match=r"line 1: the copy says image \d+ is 640x32, the annotations 48x32"):
        import_hf(toy_task(), [q], tmp_path / "out", annotations=src, splits=["testA"])


# ------------------------------------------------------------------------------------ MDETR
def test_mdetr_files_have_the_published_shape(src, tmp_path):
    m = write_mdetr(src, tmp_path / "mdetr", "refcoco")
    assert sorted(p.name for p in m.iterdir()) == ["final_refexp_val.json", "finetune_refcoco_testA.json",
                                                   "finetune_refcoco_testB.json", "finetune_refcoco_train.json",
                                                   "finetune_refcoco_val.json"]
    data = json.loads((m / "finetune_refcoco_val.json").read_text())
    assert len(data["images"]) == len(data["annotations"]) == 12  # one image record per expression
    assert set(data["images"][0]) == {"file_name", "height", "width", "id", "original_id", "caption", "dataset_name",
                                      "tokens_negative"}
    assert set(data["annotations"][0]) == {"area", "iscrowd", "image_id", "category_id", "id", "bbox", "original_id",
                                           "tokens_positive"}


def test_mdetr_import(src, tmp_path):
    m = write_mdetr(src, tmp_path / "mdetr", "refcoco")
    with pytest.raises(DataError, match=r"val \(24 expressions\) -> val: refused: 2 files hold val \(final_refexp_val.json, "
                                        r"finetune_refcoco_val.json\): pass one of them"):
        import_hf(toy_task(), [m], tmp_path / "out", annotations=src)
    res = import_hf(toy_task(), [m / f"finetune_refcoco_{s}.json" for s in ("val", "testA", "testB")], tmp_path / "out",
                    annotations=src)
    assert res.layout == "mdetr" and res.refs == EVAL and res.sentences == EVAL_SENTS
    same_as_refer(src, tmp_path / "out")
    res = import_hf(toy_task(), [m / "final_refexp_val.json"], tmp_path / "out2", annotations=src)
    assert res.refs == {"val": 6}
    other = next(d for d in res.decisions if d.target is None)
    assert other.rows == 5 and "dataset_name is not refcoco" in other.reason


def test_mdetr_annotation_id_must_be_the_refs(src, tmp_path):
    m = write_mdetr(src, tmp_path / "mdetr", "refcoco")
    data = json.loads((m / "finetune_refcoco_testA.json").read_text())
    data["annotations"][2]["original_id"] += 1  # the neighbouring (unreferred) annotation of the same image
    (m / "finetune_refcoco_testA.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"finetune_refcoco_testA.json: images\[2\]: annotation \d+ of image \d+ is no ref's "
                                        r"there, or its box is not"):
        import_hf(toy_task(), [m / "finetune_refcoco_testA.json"], tmp_path / "out", annotations=src)


# --------------------------------------------------------------------------- Kangheng parquet
@pytest.mark.parametrize("variant, fmt, roles", [
    ("lmms", "xywh", "image_name from 'file_name', text from 'answer', box from 'bbox', image from 'image'"),
    ("named", "xyxy", "image_id from 'image_id', text from 'expression', box from 'box', image from 'image'")])
def test_kangheng_parquet_columns_found_and_reported(src, tmp_path, variant, fmt, roles):
    k = write_kangheng(src, tmp_path / "kangheng", "refcoco", variant=variant)
    with pytest.raises(DataError, match="one row per expression, e.g. Kangheng/refcoco.*--annotations"):
        import_hf(toy_task(), [k], tmp_path / "out")
    res = import_hf(toy_task(), [k], tmp_path / "out", annotations=src)
    assert res.layout == "per-expression parquet" and res.refs == EVAL and res.sentences == EVAL_SENTS
    assert res.images_written == 7
    assert f"box read as [{fmt}] (decided from the rows: 28 of 28 sampled rows land on an annotation)" in res.caveats
    assert any(c.startswith(f"columns read: {roles}") and "not verified" in c for c in res.caveats)
    for split in EVAL:
        a, b = examples(src, "refcoco", "unc", split), examples(tmp_path / "out", "refcoco", "unc", split)
        assert a.keys() == b.keys()


def test_kangheng_boxes_that_land_nowhere_are_refused(src, tmp_path):
    k = write_kangheng(src, tmp_path / "kangheng", "refcoco", variant="lmms")
    for p in (k / "data").glob("*.parquet"):
        rows = pq.read_table(p).to_pylist()
        for r in rows:
            r["bbox"] = [v + 7.0 for v in r["bbox"]]
        pq.write_table(pa.Table.from_pylist(rows, schema=LMMS), p)
    with pytest.raises(DataError, match=r"land on no annotation of .*instances.json under any convention tried \(xyxy, xywh, "
                                        r"xyxy normalised, xywh normalised\)"):
        import_hf(toy_task(), [k], tmp_path / "out", annotations=src)


def test_cli_imports_a_per_expression_copy(src, tmp_path):
    from cptbench.cli.main import cli

    q = write_qwen_jsonl(src, tmp_path / "qwen", "refcoco")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["data", "import", str(q), "--as", "toyref", "--to", str(out)])
    assert r.exit_code == 1 and "--annotations DIR" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["data", "import", str(q), "--as", "toyref", "--to", str(out), "--annotations", str(src)])
    assert r.exit_code == 0, r.output
    assert "val: 6 refs, 12 sentences" in r.output and "next: cptbench data download toyref" in r.output
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(out)])
    assert "qwen-vl-jsonl (3 file(s)), matched to the refer annotations" in r.output, r.output
