"""Everything a user's copy can get wrong ends in one DataError naming the file, the record and the
fix, never a traceback: columns missing or of another Arrow type, damaged rows, images that do not
decode, truncated files, and boxes that are not four numbers (which used to match every annotation)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from cptbench.core.errors import DataError
from cptbench.data.hf_convert import Converted, complete_from_coco
from cptbench.data.hf_import import import_hf
from hf_shapes import JXU124, LMMS, toy_task, write_jxu124, write_lmms

pytestmark = pytest.mark.usefixtures("cards")
VAL = "validation-00000-of-00001-0a1b2c3d4e5f6a7b.parquet"


def rewrite(path, schema, edit):
    rows = pq.read_table(path).to_pylist()
    rows, schema = edit(rows, schema)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def jxu124_with(src, tmp_path, edit, name=VAL):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    rewrite(hf / "data" / name, JXU124, edit)
    return hf


def retype(column, tp, value):
    def edit(rows, schema):
        for r in rows:
            r[column] = value(r[column])
        return rows, schema.set(schema.get_field_index(column), pa.field(column, tp))
    return edit


def test_bbox_as_strings_is_refused_by_its_type(src, tmp_path):
    hf = jxu124_with(src, tmp_path, retype("bbox", pa.list_(pa.string()), lambda b: [str(v) for v in b]))
    with pytest.raises(DataError, match=rf"{VAL}: column 'bbox' is list<.*string>, but the jxu124 layout has list<float64> "
                                        r"\(\[x1, y1, x2, y2\] pixels\) there; the file is not the jxu124 copy as published"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)


def test_a_missing_column_is_named(src, tmp_path):
    hf = jxu124_with(src, tmp_path, lambda rows, schema: ([{k: v for k, v in r.items() if k != "sent_ids"} for r in rows],
                                                          schema.remove(schema.get_field_index("sent_ids"))))
    with pytest.raises(DataError, match=rf"{VAL}: the jxu124 layout needs column 'sent_ids' \(list<int64>\), which this "
                                        r"file lacks; it has: file_name \(string\), ann_id \(int64\)"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)


def test_ids_as_strings_are_refused(src, tmp_path):
    hf = jxu124_with(src, tmp_path, retype("ann_id", pa.string(), str))
    with pytest.raises(DataError, match=r"column 'ann_id' is string, but the jxu124 layout has int64 there"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)


@pytest.mark.parametrize("column, value, message", [
    ("sent_ids", [999], r"row 2: ref \d+: sent_ids \[999\] are not the ids of its sentences"),
    ("raw_anns", "{not json", r"row 2: raw_anns is neither JSON nor a Python literal"),
    ("raw_anns", None, r"row 2: raw_anns is empty \(null\)"),
    ("sentences", None, r"row 2: sentences is empty \(null\)"),
    ("sentences", [], r"row 2: sentences is '\[\]', not a list of \{sent_id, sent, raw, tokens\}"),
    ("bbox", [1.0, 2.0, 3.0], r"row 2: ref \d+: bbox \[1.0, 2.0, 3.0\] agrees with raw_anns' bbox .* neither as"),
    ("bbox", None, r"row 2: ref \d+: bbox None agrees with raw_anns' bbox"),
])
def test_damaged_jxu124_rows_are_named(src, tmp_path, column, value, message):
    def edit(rows, schema):
        rows[2][column] = value
        return rows, schema
    hf = jxu124_with(src, tmp_path, edit)
    with pytest.raises(DataError, match=rf"{VAL}: {message}"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)
    assert not (tmp_path / "out" / "refcoco").exists()


def lmms_with(src, tmp_path, edit, name="testA-00000-of-00001.parquet"):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    rewrite(hf / "data" / name, LMMS, edit)
    return hf


@pytest.mark.parametrize("field, value, message", [
    ("bbox", [1.0, 2.0, 3.0], r"row 1: bbox is \[1.0, 2.0, 3.0\], not \[x, y, w, h\]"),
    ("bbox", [], r"row 1: bbox is \[\], not \[x, y, w, h\]"),
    ("bbox", [1.0, 2.0, -3.0, 4.0], r"row 1: bbox is \[1.0, 2.0, -3.0, 4.0\], not \[x, y, w, h\] \(four numbers, w and h >= 0\)"),
    ("file_name", "image.jpg", r"row 1: file_name 'image.jpg' is not a COCO train2014 image name"),
    ("answer", [], r"row 1: answer holds no expression"),
    ("image", {"bytes": b"\xff\xd8\xff\xe0 truncated", "path": "x.jpg"}, r"row 0: the embedded image COCO_train2014_\d{12}.jpg does not decode"),
    ("image", {"bytes": None, "path": "x.jpg"}, r"row 0: the row embeds no image bytes"),
])
def test_damaged_lmms_rows_are_named(src, tmp_path, field, value, message):
    def edit(rows, schema):
        rows[1][field] = value
        if field == "image":  # rows 0 and 1 are the two refs of one image: its first row is the one read
            rows[0][field] = value
        return rows, schema
    hf = lmms_with(src, tmp_path, edit)
    with pytest.raises(DataError, match=rf"testA-00000-of-00001.parquet: {message}"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True, splits=["testA"])


def test_lmms_bbox_as_strings_is_refused_by_its_type(src, tmp_path):
    hf = lmms_with(src, tmp_path, retype("bbox", pa.list_(pa.string()), lambda b: [str(v) for v in b]))
    with pytest.raises(DataError, match=r"column 'bbox' is list<.*string>, but the lmms-lab layout has list<float32>"):
        import_hf(toy_task(), [hf], tmp_path / "out", annotations=src)


def test_a_truncated_parquet_file(src, tmp_path):
    hf = write_jxu124(src, tmp_path / "hf", "refcoco")
    p = hf / "data" / VAL
    p.write_bytes(p.read_bytes()[:200])
    with pytest.raises(DataError, match=rf"{VAL}: not a readable parquet / arrow file .*download it again"):
        import_hf(toy_task(), [hf], tmp_path / "out", referred_only=True)


def test_annotations_folder_that_is_not_one(src, tmp_path):
    hf = write_lmms(src, tmp_path / "lmms", "refcoco")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"--annotations .*empty: neither .*empty/refcoco nor .*empty holds refs\(unc\).p and "
                                        r"instances.json.*about 50 MB"):
        import_hf(toy_task(), [hf], tmp_path / "out", annotations=tmp_path / "empty")
    (tmp_path / "bad" / "refcoco").mkdir(parents=True)
    (tmp_path / "bad" / "refcoco" / "refs(unc).p").write_bytes((src / "refcoco" / "refs(unc).p").read_bytes())
    (tmp_path / "bad" / "refcoco" / "instances.json").write_text(json.dumps({"images": [{"name": 1}], "annotations": []}))
    with pytest.raises(DataError, match=r"instances.json: images\[0\] has no integer id"):
        import_hf(toy_task(), [hf], tmp_path / "out", annotations=tmp_path / "bad")


def test_an_empty_box_matches_no_annotation(tmp_path):
    """A box that is not four numbers used to match every annotation of its image, and a polygon its
    own prefix (vacuous zips)."""
    coco = tmp_path / "instances.json"
    ann = {"image_id": 7, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "iscrowd": 0}
    coco.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg", "width": 40, "height": 30},
                                           {"id": 8, "file_name": "y.jpg", "width": 40, "height": 30}],
                                "annotations": [{**ann, "id": 70, "segmentation": [[1, 2, 4, 2, 4, 6]]},
                                                {**ann, "id": 80, "image_id": 8, "segmentation": [[1, 2, 4, 2, 4, 6]]},
                                                {**ann, "id": 81, "image_id": 8, "segmentation": [[1, 2, 4, 2, 4, 6, 1, 6]]}],
                                "categories": [{"id": 1, "name": "cat"}]}))

    def converted(image_id, box, poly):
        out = Converted()
        out.images[image_id] = {"id": image_id, "file_name": "x.jpg", "width": 40, "height": 30}
        out.anns[1] = {"id": 1, "image_id": image_id, "category_id": 0, "bbox": box, "segmentation": [poly]}
        out.refs.append({"ref_id": 1, "ann_id": 1, "image_id": image_id, "split": "val", "category_id": 0, "sentences": []})
        return out

    with pytest.raises(DataError, match=r"ref 1 \(image 7, box \[\]\) matches 0 annotations there, not one"):
        complete_from_coco(coco, "lmms-lab", converted(7, [], [1.0, 2.0]))
    out = converted(8, [1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 4.0, 2.0, 4.0, 6.0, 1.0, 6.0])  # two identical boxes: the polygon decides
    complete_from_coco(coco, "lmms-lab", out)
    assert out.refs[0]["ann_id"] == 81  # annotation 80's polygon is only a prefix of this one


def test_cli_wrong_types_end_in_one_message(src, tmp_path):
    from cptbench.cli.main import cli

    hf = jxu124_with(src, tmp_path, retype("bbox", pa.list_(pa.string()), lambda b: [str(v) for v in b]))
    r = CliRunner().invoke(cli, ["data", "import", str(hf), "--as", "toyref", "--to", str(tmp_path / "out"), "--referred-only"])
    assert r.exit_code == 1 and "column 'bbox' is list<" in r.output and "Traceback" not in r.output
