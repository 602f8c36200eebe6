"""Importing jxu124's parquet copies (current and older revisions), ``save_to_disk`` folders and the
general rules of ``data import``, on fixtures in the exact shapes of the published files
(helpers/hf_shapes.py) written from the refer fixture, so that every imported record can be compared
with the refer files it stands for."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cptbench.core.errors import DataError
from cptbench.data.hf_import import import_hf
from cptbench.data.hf_inputs import scan_inputs
from cptbench.data.provenance import SOURCE_FILE
from hf_shapes import (JXU124, SENTENCE, examples, refer_data, toy_task, write_jxu124, write_lmms, write_save_to_disk)

pytestmark = pytest.mark.usefixtures("cards")


def provenance(root: Path, dataset: str = "refcoco") -> dict:
    return json.loads((root / dataset / SOURCE_FILE).read_text())


# ---------------------------------------------------------------------------------- jxu124
def test_jxu124_files_have_the_published_shapes(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    names = sorted(p.name for p in (hf / "data").iterdir())
    assert names == [f"{s}-00000-of-00001-0a1b2c3d4e5f6a7b.parquet" for s in ("test", "testB", "train", "validation")]
    schema = pq.read_schema(hf / "data" / names[0])
    assert schema.equals(JXU124) and schema.field("sentences").type.value_type == SENTENCE
    assert schema.field("bbox").type.value_type == pa.float64() and schema.field("sent_ids").type.value_type == pa.int64()
    row = pq.read_table(hf / "data" / names[0]).slice(0, 1).to_pylist()[0]
    ann = json.loads(row["raw_anns"])
    x, y, w, h = ann["bbox"]
    assert row["bbox"] == [x, y, x + w, y + h]  # xyxy in the column, xywh in raw_anns
    assert row["image_path"] == f"coco/train2014/COCO_train2014_{row['image_id']:012d}.jpg"


@pytest.mark.parametrize("old", [False, True], ids=["current", "revision-957ef85"])
def test_jxu124_round_trip_with_the_annotations_instances(src, tmp_path, old):
    rev = "9fba820" + "0" * 33  # laid out as in the Hugging Face cache: the id and revision are recorded
    hf = write_jxu124(src, tmp_path / "hub" / "datasets--jxu124--refcoco" / "snapshots" / rev, "refcoco", old=old)
    res = import_hf(toy_task(), [hf], tmp_path / "out", coco_instances=src / "refcoco" / "instances.json")
    assert res.layout == "jxu124"
    by = {d.hf_split: d for d in res.decisions}
    assert by["test"].target == "testA" and by["validation"].target == "val" and all(d.used for d in res.decisions)
    assert res.refs == {"train": 12, "val": 6, "testA": 4, "testB": 4}
    want_refs, want_inst = refer_data(src, "refcoco")
    got_refs, got_inst = refer_data(tmp_path / "out", "refcoco")
    assert sorted(got_refs, key=lambda r: r["ref_id"]) == sorted(want_refs, key=lambda r: r["ref_id"])
    assert sorted(a["id"] for a in got_inst["annotations"]) == sorted(a["id"] for a in want_inst["annotations"])
    (tmp_path / "out" / "images").symlink_to(src / "images")  # the loader gives the very same examples
    a, b = examples(src, "refcoco", "unc", "testA"), examples(tmp_path / "out", "refcoco", "unc", "testA")
    assert a.keys() == b.keys() and all(a[k].categories == b[k].categories for k in a)
    side = provenance(tmp_path / "out")
    assert side["method"] == "import" and side["source"]["layout"] == "jxu124" and side["source"]["coco_instances"]["sha256"]
    assert (side["source"]["dataset"], side["source"]["revision"]) == ("jxu124/refcoco", rev)
    assert len(side["source"]["files"]) == 4 and all(len(f["sha256"]) == 64 for f in side["source"]["files"])
    assert any("calls testA 'test'" in c for c in side["caveats"])


def test_jxu124_with_annotations_takes_their_candidates(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    res = import_hf(toy_task(), [hf], tmp_path / "out", annotations=src)
    _, inst = refer_data(tmp_path / "out", "refcoco")
    assert res.refs["val"] == 6 and len(inst["annotations"]) == 13 * 3  # every annotation of the 13 images
    with pytest.raises(DataError, match="would overwrite the refer annotations"):
        import_hf(toy_task(), [hf], src, annotations=src, force=True)


def test_two_test_files_side_by_side(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco", test_copies=2)  # as at jxu124/refcoco 991dfe9
    res = import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)
    assert res.refs["testA"] == 4  # read once, not 8 rows
    assert any("2 files side by side hold the same 4 rows: read test-00000-of-00001-82af0c1b600890ac.parquet" in c
               for c in res.caveats)
    rows = pq.read_table(hf / "data" / "test-00000-of-00001-82af0c1b600890ac.parquet").to_pylist()
    pq.write_table(pa.Table.from_pylist(rows[:-1], schema=JXU124), hf / "data" / "test-00000-of-00001-82af0c1b600890ac.parquet")
    with pytest.raises(DataError, match=r"2 files each claim to be the whole split.*\(3 rows\).*pass that file alone"):
        import_hf(toy_task(), [hf], tmp_path / "out2", referred_only=True)


def test_jxu124_candidates_caveat_refused_or_recorded(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    with pytest.raises(DataError, match="only the referred objects.*--coco-instances.*--annotations.*--referred-only"):
        import_hf(toy_task(), [hf], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    res = import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)
    _, inst = refer_data(tmp_path / "out", "refcoco")
    assert len(inst["annotations"]) == 2 * 13  # the two referred objects of each image, not its three
    assert {c["name"] for c in inst["categories"]} >= {"person", "dog"}  # COCO's category names by id
    assert any("candidates: only the referred objects" in c for c in res.caveats)
    with pytest.raises(DataError, match="already holds.*--force"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)


def test_count_that_does_not_fit_is_refused(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco", drop_val=1)
    with pytest.raises(DataError) as err:
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)
    msg = str(err.value)
    assert "validation (5 rows) -> val: refused: 5 rows, but toyref val has 6 refs" in msg
    assert "--splits train,testA,testB" in msg and "cptbench data download toyref" in msg
    assert not (tmp_path / "out").exists()
    res = import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True, splits=["testA", "testB"])
    assert res.refs == {"testA": 4, "testB": 4}


def test_refcocog_jxu124(srcg, tmp_path):
    hf = write_jxu124(srcg, tmp_path / "hf", "refcocog", "umd")
    res = import_hf(toy_task("toyrefg"), [hf], tmp_path / "out", annotations=srcg)
    assert res.refs == {"test": 4, "train": 12, "val": 6} and res.sentences == {"test": 8, "train": 24, "val": 12}


# ------------------------------------------------------------------------------ save_to_disk
def test_save_to_disk_splits_come_from_the_folders(src, tmp_path):
    folder = write_save_to_disk(src, tmp_path / "saved", "refcoco")
    assert {p.name for p in folder.iterdir()} == {"dataset_dict.json", "val", "test", "testA", "testB"}
    assert {p.name for p in (folder / "val").iterdir()} == {"data-00000-of-00001.arrow", "dataset_info.json", "state.json"}
    found = scan_inputs([folder])
    assert sorted((f.hf_split, f.rows) for f in found) == [("test", 3), ("testA", 4), ("testB", 4), ("val", 11)]
    res = import_hf(toy_task(), [folder], tmp_path / "out", annotations=src)
    assert res.refs == {"testA": 4, "testB": 4, "val": 6} and res.images_written == 7


def test_save_to_disk_stale_or_unlisted_files_are_refused(src, tmp_path):
    folder = write_save_to_disk(src, tmp_path / "saved", "refcoco")
    (folder / "val" / "data-00001-of-00002.arrow").write_bytes((folder / "val" / "data-00000-of-00001.arrow").read_bytes())
    with pytest.raises(DataError, match=r"data-00001-of-00002.arrow: not one of the files .*state.json lists"):
        scan_inputs([folder])
    (folder / "val" / "data-00001-of-00002.arrow").unlink()
    (folder / "dataset_dict.json").write_text(json.dumps({"splits": ["test", "testA", "testB"]}))
    with pytest.raises(DataError, match=r"its folder 'val' is not a split .*dataset_dict.json lists"):
        scan_inputs([folder])


def test_datasets_cache_arrow_names(src, tmp_path):
    folder = write_save_to_disk(src, tmp_path / "saved", "refcoco")
    cache = tmp_path / "cache" / "lmms-lab___ref_coco" / "default" / "0.0.0" / "e15256e"
    cache.mkdir(parents=True)
    for split in ("val", "testA"):
        (cache / f"ref_coco-{split}{'-00000-of-00001' if split == 'val' else ''}.arrow").write_bytes(
            (folder / split / "data-00000-of-00001.arrow").read_bytes())
    assert sorted((f.hf_split, f.rows) for f in scan_inputs([cache])) == [("testA", 4), ("val", 11)]


def test_a_missing_shard_is_refused(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    (hf / "data" / "val-00001-of-00002.parquet").unlink()
    with pytest.raises(DataError, match=r"split 'val': shard\(s\) 00001-of-00002 missing .*download the split again"):
        import_hf(toy_task(), [hf], tmp_path / "out", annotations=src)


def test_unknown_layout_names_the_columns(tmp_path):
    (tmp_path / "x").mkdir()
    pq.write_table(pa.Table.from_pylist([{"caption": "a", "img": 1}]), tmp_path / "x" / "train-00000-of-00001.parquet")
    with pytest.raises(DataError, match=r"columns caption \(string\), img \(int64\) match no known layout.*found text "
                                        r"from 'caption'; no column for the image .*, the box"):
        import_hf(toy_task(), [tmp_path / "x"], tmp_path / "out", referred_only=True)


def test_inputs_hashed_in_the_provenance(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    coco = src / "refcoco" / "instances.json"
    import_hf(toy_task(), [hf], tmp_path / "out", coco_instances=coco, splits=["testA", "testB"])
    side = provenance(tmp_path / "out")
    assert side["source"]["coco_instances"]["sha256"] == hashlib.sha256(coco.read_bytes()).hexdigest()
    assert all(f["sha256"] == hashlib.sha256(Path(f["path"]).read_bytes()).hexdigest() for f in side["source"]["files"])


def test_cli_import_then_check(src, tmp_path):
    from cptbench.cli.main import cli

    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(out), "--referred-only",
                                 "--hf-dataset", "jxu124/refcoco", "--revision", "9fba820"])
    assert r.exit_code == 0, r.output
    assert "testA: 4 refs, 8 sentences" in r.output and "caveat" in r.output and "next: cptbench data download toyref" in r.output
    r = CliRunner().invoke(cli, ["data", "check", "toyref", "--data-root", str(out)])
    assert "Hugging Face jxu124/refcoco @ 9fba820, jxu124 layout" in r.output, r.output
    assert "caveat: candidates: only the referred objects" in r.output
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(out), "--referred-only"])
    assert r.exit_code == 1 and "--force" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(out), "--annotations", str(src),
                                 "--referred-only"])
    assert r.exit_code == 2 and "--annotations already gives every annotation" in r.output
    r = CliRunner().invoke(cli, ["data", "import", "--help"])
    assert "--annotations" in r.output and "merged with" in r.output
