"""lmms-lab's copies: one row per object with the image embedded, whose "val" is the unc (umd) val
merged with the google val (RefCOCO 8,811 = 3,811 + 5,000; RefCOCOg 7,573 = 2,573 + 5,000). The
rows alone cannot tell the two apart: without the refer annotations that split is refused with its
real cause, with them every row is matched to its ref and exactly the published refs are kept."""

from __future__ import annotations

import json
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cptbench.core.errors import DataError
from cptbench.data.hf_import import import_hf
from cptbench.data.images import verify_image
from cptbench.data.provenance import SOURCE_FILE
from hf_shapes import LMMS, examples, lmms_splits, refer_data, toy_task, write_lmms

pytestmark = pytest.mark.usefixtures("cards")


def test_lmms_files_have_the_published_shapes(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    assert sorted(p.name for p in (hf / "data").iterdir()) == [
        "test-00000-of-00001.parquet", "testA-00000-of-00001.parquet", "testB-00000-of-00001.parquet",
        "val-00000-of-00002.parquet", "val-00001-of-00002.parquet"]
    schema = pq.read_schema(hf / "data" / "testA-00000-of-00001.parquet")
    assert schema.equals(LMMS) and schema.field("bbox").type.value_type == pa.float32()
    assert schema.field("iscrowd").type == pa.int8() and schema.field("question_id").type == pa.string()
    row = pq.read_table(hf / "data" / "testA-00000-of-00001.parquet").slice(0, 1).to_pylist()[0]
    assert row["image"]["bytes"][:2] == b"\xff\xd8" and row["file_name"].endswith(f"_{row['question_id']}.jpg")
    rows = sum(pq.read_metadata(hf / "data" / f"val-0000{i}-of-00002.parquet").num_rows for i in (0, 1))
    assert rows == 6 + 5  # the unc val refs and the google val refs (one of them also in unc val)


def test_merged_val_refused_without_annotations_with_its_real_cause(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    with pytest.raises(DataError) as err:
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)
    msg = str(err.value)
    assert ("val (11 rows) -> val: refused: 11 rows, but toyref val has 6 refs: lmms-lab's val is the unc val merged with "
            "the google val (5 more rows), and the rows alone cannot tell which is which") in msg
    assert "pass --annotations DIR, the refer folder of refcoco (refs(unc).p + instances.json" in msg
    assert "--no-images" in msg and "--splits testA,testB" in msg
    assert "test (3 rows) -> -: skipped: lmms-lab's RefCOCO 'test' is the google split's test" in msg
    assert not (tmp_path / "out").exists()


def test_clean_splits_without_annotations(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    res = import_hf(toy_task(), [hf], tmp_path / "out", coco_instances=src / "refcoco" / "instances.json",
                    splits=["testA", "testB"])
    assert res.refs == {"testA": 4, "testB": 4} and res.sentences == {"testA": 8, "testB": 8} and res.images_written == 4
    for p in (tmp_path / "out" / "images" / "train2014").iterdir():
        assert verify_image(p, None) is None
    a, b = examples(src, "refcoco", "unc", "testA"), examples(tmp_path / "out", "refcoco", "unc", "testA")
    assert {(k[0].lower().rstrip("."), k[1]) for k in a} == {(k[0].lower().rstrip("."), k[1]) for k in b}
    refs, _ = refer_data(tmp_path / "out", "refcoco")
    ids = [s["sent_id"] for r in refs for s in r["sentences"]]
    assert ids == list(range(1, len(ids) + 1))  # numbered in file order: lmms-lab has no ids
    side = json.loads((tmp_path / "out" / "refcoco" / SOURCE_FILE).read_text())
    assert side["source"]["splits"]["val"]["status"] == "skipped"  # not asked for: recorded, never imported


@pytest.mark.parametrize("question_id", ["suffix", "ann_id"])
def test_merged_val_separated_with_the_annotations(src, tmp_path, question_id):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco", question_id=question_id)
    res = import_hf(toy_task(), [hf], tmp_path / "out", annotations=src)
    by = {d.hf_split: d for d in res.decisions}
    assert by["val"].status == "separated" and by["test"].status == "skipped"
    assert res.refs == {"testA": 4, "testB": 4, "val": 6} and res.sentences == {"testA": 8, "testB": 8, "val": 12}
    assert "11 rows matched to refs of refs(unc).p (11 by file_name); 6 unc val refs kept" in by["val"].reason
    assert "left out: 4 of unc train, google val" in by["val"].reason and "1 repeated rows of kept refs" in by["val"].reason
    assert "in no google val either" not in by["val"].reason
    if question_id == "ann_id":
        assert "question_id is the COCO annotation id in every row" in by["val"].reason
    else:
        assert "question_id is the COCO annotation id in" in by["val"].reason and "(not an id to rely on)" in by["val"].reason
    want, _ = refer_data(src, "refcoco")
    got, inst = refer_data(tmp_path / "out", "refcoco")
    assert sorted(got, key=lambda r: r["ref_id"]) == sorted((r for r in want if r["split"] != "train"), key=lambda r: r["ref_id"])
    assert len(inst["annotations"]) == 7 * 3 and {i["file_name"][-4:] for i in inst["images"]} == {".jpg"}
    assert res.images_written == 7  # the images of val, testA and testB, from the parquet
    for split in ("val", "testA", "testB"):  # what runs see is what the refer files give (images from the parquet)
        a, b = examples(src, "refcoco", "unc", split), examples(tmp_path / "out", "refcoco", "unc", split)
        assert a.keys() == b.keys() and all(a[k].categories == b[k].categories for k in a)
    side = json.loads((tmp_path / "out" / "refcoco" / SOURCE_FILE).read_text())
    assert side["source"]["annotations"]["refs"]["sha256"] and side["images"]["fetched"] == 7
    assert any(c.startswith("val: 11 rows matched") for c in side["caveats"])


def test_matched_by_box_when_the_file_name_is_not_the_refers(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    for p in (hf / "data").glob("testA-*.parquet"):
        rows = pq.read_table(p).to_pylist()
        for r in rows:
            r["file_name"] = r["file_name"].rsplit("_", 1)[0] + "_999999.jpg"
        pq.write_table(pa.Table.from_pylist(rows, schema=LMMS), p)
    res = import_hf(toy_task(), [hf], tmp_path / "out", annotations=src, splits=["testA"])
    by = {d.hf_split: d for d in res.decisions}
    assert res.refs == {"testA": 4} and "(4 by image and box)" in by["testA"].reason


def test_rows_that_match_no_ref_are_named(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    p = hf / "data" / "testB-00000-of-00001.parquet"
    rows = pq.read_table(p).to_pylist()
    rows[1]["bbox"] = [0.0, 0.0, 3.0, 3.0]
    rows[1]["file_name"] = rows[1]["file_name"].rsplit("_", 1)[0] + "_999999.jpg"
    rows[2]["answer"] = ["a sentence nobody wrote"]
    pq.write_table(pa.Table.from_pylist(rows, schema=LMMS), p)
    with pytest.raises(DataError) as err:
        import_hf(toy_task(), [hf], tmp_path / "out", annotations=src)
    msg = str(err.value)
    assert "testB -> toyref testB: refused. 4 rows: 2 are unc testB refs (published: 4;" in msg
    assert "testB-00000-of-00001.parquet: row 1" in msg and "has box [0.0, 0.0, 3.0, 3.0] (nearest annotation" in msg
    assert "row 2" in msg and "its answer 'a sentence nobody wrote' is not one of that ref's expressions" in msg
    assert not (tmp_path / "out").exists()


def test_a_clean_split_holding_another_splits_ref_is_refused(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    splits = lmms_splits(src, "refcoco")
    rows = splits["testA"][:-1] + splits["testB"][:1]  # 4 rows as published, one of them a testB ref
    pq.write_table(pa.Table.from_pylist(rows, schema=LMMS), hf / "data" / "testA-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"row 3: ref \d+ is in unc testB, not testA"):
        import_hf(toy_task(), [hf], tmp_path / "out", annotations=src, splits=["testA"])


def test_clean_val_as_refcoco_plus(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco", merged=False)  # RefCOCO+'s val: clean, no test split
    res = import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)
    assert res.refs == {"testA": 4, "testB": 4, "val": 6} and all(d.status == "import" for d in res.decisions)


def test_refcocog_merged_val_and_umd_test(srcg, tmp_path):
    hf = write_lmms(srcg, tmp_path / "lmms", "refcocog", "umd")
    with pytest.raises(DataError, match="lmms-lab's val is the umd val merged with the google val"):
        import_hf(toy_task("toyrefg"), [hf], tmp_path / "out", referred_only=True)
    res = import_hf(toy_task("toyrefg"), [hf], tmp_path / "out", annotations=srcg)
    assert res.refs == {"test": 4, "val": 6} and res.sentences == {"test": 8, "val": 12}
    val = next(d for d in res.decisions if d.hf_split == "val")
    assert "6 umd val refs kept" in val.reason and "left out: 4 of umd train, google val" in val.reason


def test_google_only_refs_in_a_merged_val_are_left_out(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    google = pickle.loads((src / "refcoco" / "refs(google).p").read_bytes())
    refs = pickle.loads((src / "refcoco" / "refs(unc).p").read_bytes())
    gone = next(r for r in google if r["split"] == "val" and r["ref_id"] not in {x["ref_id"] for x in refs if x["split"] == "val"})
    (src / "refcoco" / "refs(unc).p").write_bytes(pickle.dumps([r for r in refs if r["ref_id"] != gone["ref_id"]], protocol=2))
    res = import_hf(toy_task(), [hf], tmp_path / "out", annotations=src, splits=["val"])
    val = next(d for d in res.decisions if d.hf_split == "val")
    assert res.refs == {"val": 6} and "1 of google val only" in val.reason and "either" not in val.reason


def test_left_out_rows_in_no_google_val_are_flagged(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    google = pickle.loads((src / "refcoco" / "refs(google).p").read_bytes())
    moved = next(r for r in google if r["split"] == "val" and r["ref_id"] in {x["ref_id"] for x in google[:12]})
    moved["split"] = "train"  # a left-out row whose ref the google split does not put in val
    (src / "refcoco" / "refs(google).p").write_bytes(pickle.dumps(google, protocol=2))
    res = import_hf(toy_task(), [hf], tmp_path / "out", annotations=src, splits=["val"])
    val = next(d for d in res.decisions if d.hf_split == "val")
    assert "(1 of them in no google val either: not the merge lmms-lab's val is known to be)" in val.reason


def test_cli_separates_the_merged_val(src, tmp_path):
    from cptbench.cli.main import cli

    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(tmp_path / "out"), "--referred-only"])
    assert r.exit_code == 1 and "the rows alone cannot tell which is which" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(tmp_path / "out"),
                                 "--annotations", str(src / "refcoco")])
    assert r.exit_code == 0, r.output
    assert "separated" in r.output and "val: 6 refs, 12 sentences" in r.output and "7 written to" in r.output
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(tmp_path / "out")])
    assert "0 (expected 12)" in r.output and r.exit_code == 1  # no train split in this copy: check says so
