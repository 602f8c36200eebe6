"""The refer-layout loader: examples and labels kept apart, splits by image, detections layouts, and messages that name the file and record."""

import json
from pathlib import Path
import pickle

import numpy as np
import pytest

from cptbench.core.errors import DataError
from cptbench.data.proposals import load_detections
from cptbench.data.refer import ReferDataset
from refer_fixture import write_refer_fixture


@pytest.fixture
def toy(tmp_path):
    root = write_refer_fixture(tmp_path / "data")
    return ReferDataset(root, "toyref", "unc", root / "images" / "train2014")


def test_round_trip_examples_and_labels(toy):
    val = toy.load_split("val")
    assert len(val.examples) == 3 * 2 * 2  # images x refs x sentences
    ex = val.examples[0]
    assert ex.example_id == f"{ex.ref_id}:{ex.sent_id}"
    assert ex.n_candidates == 3 and ex.boxes.shape == (3, 4)
    assert ex.image().shape == (32, 48, 3) and ex.image_size == (48, 32)
    assert not any(isinstance(v, Path) for v in vars(ex).values())  # no way into the data root
    assert ex.categories == ("cat", "dog", "cat")
    assert ex.expression.startswith("the thing number")
    # xywh -> xyxy at the boundary, label among the candidates
    label = val.labels[ex.example_id]
    assert np.any(np.all(np.isclose(ex.boxes, label.box), axis=1))
    assert label.box[2] - label.box[0] == 10.0
    assert ex.masks[0] and isinstance(ex.masks[0], list)
    # examples carry no ground truth
    assert not hasattr(ex, "label") and not hasattr(ex, "gt_box")


def test_splits_by_image(toy):
    imgs = {s: toy.load_split(s).image_ids for s in ("train", "val", "testA", "testB")}
    assert not (imgs["train"] & imgs["val"]) and not (imgs["train"] & imgs["testA"])


def test_unknown_split_lists_choices(toy):
    with pytest.raises(DataError, match="testA"):
        toy.load_split("test")


def test_missing_files_message_names_layout(tmp_path):
    with pytest.raises(DataError, match=r"refs\(unc\)\.p"):
        ReferDataset(tmp_path, "refcoco", "unc", tmp_path)


def test_bad_record_names_file_and_ref(tmp_path):
    root = write_refer_fixture(tmp_path / "d")
    p = root / "toyref" / "refs(unc).p"
    refs = pickle.loads(p.read_bytes())
    del refs[3]["ann_id"]
    p.write_bytes(pickle.dumps(refs))
    with pytest.raises(DataError) as err:
        ReferDataset(root, "toyref", "unc", root)
    assert "refs(unc).p" in str(err.value) and f"ref {refs[3]['ref_id']}" in str(err.value) and "ann_id" in str(err.value)


@pytest.mark.parametrize("layout", ["list", "dets", "reclip", "records-by-image"])
def test_detection_layouts(tmp_path, toy, layout):
    recs = [{"box": [1, 2, 10, 12], "image_id": 7, "category_name": "cat", "score": 0.9, "det_id": 5, "h5_id": 4},
            {"box": [20, 2, 10, 12], "image_id": 7}]
    data = {"list": recs, "dets": {"dets": recs},
            # ReCLIP's file as published: {image_id: [[x, y, w, h], ...]}, plain lists
            "reclip": {"7": [[1, 2, 10, 12], [20, 2, 10, 12]]},
            "records-by-image": {"7": [{k: v for k, v in r.items() if k != "image_id"} for r in recs]}}[layout]
    f = tmp_path / "dets.json"
    f.write_text(json.dumps(data))
    dets = load_detections(f)
    c = dets.for_image(7)
    np.testing.assert_allclose(c.boxes, [[1, 2, 11, 14], [20, 2, 30, 14]])
    assert c.categories == (("object", "object") if layout == "reclip" else ("cat", "object"))
    assert c.id_name == "detection" and len(c.ids) == 2
    assert dets.setting.startswith("det:dets.json:")
    with pytest.raises(DataError, match="no candidate box"):
        toy.load_split("val", dets)  # two of the three val images have no detection: refused
    val = toy.load_split("val", dets, skip_bad=True)  # kept, and scored as misses
    # image 7 is the first val image: it gets the two detections, the others none
    assert {e.image_id: e.n_candidates for e in val.examples} == {7: 2, 8: 0, 9: 0}
    assert all(e.candidate_key.startswith("det:") for e in val.examples)


def test_bad_detection_names_record(tmp_path):
    f = tmp_path / "dets.json"
    f.write_text(json.dumps([{"box": [1, 2, 3, 4], "image_id": 1}, {"box": [1, 2], "image_id": 1}]))
    with pytest.raises(DataError, match=r"dets\.json: detection 1"):
        load_detections(f)


def test_duplicate_ref_id_names_the_first_repeated_id(tmp_path):
    root = write_refer_fixture(tmp_path / "d")
    p = root / "toyref" / "refs(unc).p"
    refs = pickle.loads(p.read_bytes())
    refs += [dict(refs[7]), dict(refs[2])]  # ref 3 repeats before ref 8 does, in file order
    p.write_bytes(pickle.dumps(refs))
    with pytest.raises(DataError, match=rf"ref_id {refs[2]['ref_id']} appears more than once"):
        ReferDataset(root, "toyref", "unc", root / "images" / "train2014")
