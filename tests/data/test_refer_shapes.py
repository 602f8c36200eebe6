"""The loaders on fixtures in the published shapes (``helpers/refer_shapes.py``): a Python 2 protocol-2
refs pickle, COCO instances with a crowd RLE and zero-height boxes, MAttNet's and ReCLIP's detection
files with boxes 40 px past the border; and the oracle on those detections against a recall computed
here, independently, on the raw boxes."""

from __future__ import annotations

import json
import pickle
import pickletools

import numpy as np
import pytest
from click.testing import CliRunner

from cptbench.data.proposals import load_detections
from cptbench.data.safe_pickle import load_plain_pickle
from refer_shapes import py2_pickle, write_refer_shapes, write_shapes_card


@pytest.fixture
def shapes(tmp_path, monkeypatch):
    s = write_refer_shapes(tmp_path / "refer")
    write_shapes_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "250")
    return s


def _open(shapes):
    from cptbench.data.source import open_dataset
    from cptbench.tasks.cards import get_task

    task = get_task("realref")
    return task, open_dataset(task, shapes.root)


# ----------------------------------------------------------------------------------- refs pickle
def test_the_refs_file_is_a_python2_protocol2_pickle_and_loads_as_written(shapes):
    raw = (shapes.dataset_dir / "refs(unc).p").read_bytes()
    ops = [op.name for op, _, _ in pickletools.genops(raw)]
    assert raw[:2] == b"\x80\x02" and ops[0] == "PROTO"
    assert {"SHORT_BINSTRING", "BINGET", "BINPUT", "APPENDS", "SETITEMS", "EMPTY_DICT", "EMPTY_LIST"} <= set(ops)
    assert not {"BINUNICODE", "SHORT_BINUNICODE", "GLOBAL", "STACK_GLOBAL", "REDUCE"} & set(ops)  # Python 2 str only
    refs = load_plain_pickle(shapes.dataset_dir / "refs(unc).p")
    assert refs == shapes.refs  # keys, ints and text, non-ASCII included ("Café"), as written
    assert any("Café chair, right" == s["raw"] for r in refs for s in r["sentences"])
    assert all(r["file_name"].rsplit("_", 1)[1] == f"{r['ann_id']}.jpg" for r in refs)  # the _<n> suffix
    # the standard library reads the stream the same way: the writer is a faithful Python 2 pickle
    assert pickle.loads(raw, encoding="utf-8") == shapes.refs


def test_non_utf8_python2_text_falls_back_to_latin1(tmp_path):
    p = tmp_path / "refs(unc).p"
    p.write_bytes(py2_pickle([{"raw": "x"}]).replace(b"U\x01x", b"U\x01\xe9"))
    assert load_plain_pickle(p) == [{"raw": "é"}]


# ---------------------------------------------------------------------------------- the loader
def test_the_loader_reads_the_published_shapes(shapes):
    from cptbench.cpt.painting import DEFAULT_ALPHA, Painter, parse_palette

    task, ds = _open(shapes)
    assert "refer toolkit" in ds.image_layout and ds.images_dir == shapes.image_dir
    assert ds.splits() == ["testA", "testB", "train", "val"]
    val = ds.load_split("val")
    assert len(val.examples) == 12 and val.skipped == {"expressions": 0, "candidates": 0}
    # both real zero-height annotations are candidates of their val image: kept, counted, named
    assert val.kept["candidates_zero_area"] == 2
    assert any("image 550395: annotation 2206849 box [30.0, 40.0, 15.5, 0.0]" in x for x in val.quality.kept["candidates_zero_area"])
    assert any("image 200365: annotation 918" in x for x in val.quality.kept["candidates_zero_area"])
    ex = next(e for e in val.examples if e.image_id == 550395)
    assert ex.n_candidates == 4 and ex.image().shape == (48, 64, 3)
    assert ex.expression == "the man on the left"  # the tokenised, lower-cased `sent`
    # the crowd annotation (an uncompressed RLE) is a candidate and paints as its mask
    test_a = ds.load_split("testA")
    crowd = next(e for e in test_a.examples if e.image_id == 71)
    i = len(crowd.masks) - 1
    assert isinstance(crowd.masks[i], dict) and isinstance(crowd.masks[i]["counts"], list)
    painter = Painter(parse_palette("red"), DEFAULT_ALPHA, "mask", lambda a: a)
    region = painter.region_masks(crowd, [i], 48, 64)[0]
    expected = np.zeros((48, 64), bool)
    expected[30:44, 5:60] = True
    assert np.array_equal(region, expected)


@pytest.mark.parametrize("which", ["mattnet", "reclip"])
def test_both_published_detection_files_load(shapes, which):
    dets = load_detections(getattr(shapes, which))
    recs = json.loads(shapes.mattnet.read_text())
    assert set(dets.by_image) == {r["image_id"] for r in recs}
    for image_id, cand in dets.by_image.items():
        mine = [r for r in recs if r["image_id"] == image_id]
        xywh = np.array([r["box"] for r in mine], float)
        np.testing.assert_allclose(cand.boxes, np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
        if which == "mattnet":
            assert cand.ids == tuple(r["det_id"] for r in mine) and cand.categories == ("person",) * len(mine)
    _, ds = _open(shapes)
    val = ds.load_split("val", dets)
    assert val.kept["candidates_outside"] >= 6  # two per val image reach 40 px past the border: kept
    assert val.skipped == {"expressions": 0, "candidates": 0}


# ------------------------------------------------------------------------ done-when: the oracle
def _release_iou(a, b):
    """The release's IoU on [x, y, w, h] (Oscar/oscar/utils/iou.py), written out."""
    ax2, ay2, bx2, by2 = a[0] + a[2] - 1, a[1] + a[3] - 1, b[0] + b[2] - 1, b[1] + b[3] - 1
    ix1, iy1, ix2, iy2 = max(a[0], b[0]), max(a[1], b[1]), min(ax2, bx2), min(ay2, by2)
    if ix1 < ix2 and iy1 < iy2:
        inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1)
    else:
        inter = 0.0
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _recall(shapes, split, clip=False):
    refs = pickle.loads((shapes.dataset_dir / "refs(unc).p").read_bytes(), encoding="utf-8")
    anns = {a["id"]: a for a in shapes.instances["annotations"]}
    sizes = {i["id"]: (i["width"], i["height"]) for i in shapes.instances["images"]}
    dets = json.loads(shapes.mattnet.read_text())
    hits = n = 0
    for ref in refs:
        if ref["split"] != split:
            continue
        boxes = [d["box"] for d in dets if d["image_id"] == ref["image_id"]]
        if clip:
            W, H = sizes[ref["image_id"]]
            boxes = [[max(x, 0), max(y, 0), min(x + w, W) - max(x, 0), min(y + h, H) - max(y, 0)] for x, y, w, h in boxes]
        best = max(_release_iou(b, anns[ref["ann_id"]]["bbox"]) for b in boxes)
        for _ in ref["sentences"]:
            n += 1
            hits += best > 0.5
    return 100.0 * hits / n


def test_oracle_on_detections_past_the_border_equals_the_recall_on_raw_boxes(shapes, tmp_path):
    from cptbench.cli.main import cli

    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-t", "realref", "-m", "oracle", "-k", "0", "--data-root", str(shapes.root),
                                 "--proposals", str(shapes.mattnet), "--results", str(res), "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    assert "candidate boxes past the image kept" in r.output
    recs = {x["split"]: x for x in map(json.loads, (res / "runs.jsonl").read_text().splitlines())}
    assert set(recs) == {"val", "testA", "testB"}
    differs = False
    for split, rec in recs.items():
        raw, clipped = _recall(shapes, split), _recall(shapes, split, clip=True)
        assert rec["accuracy"] == pytest.approx(raw, abs=1e-9), (split, rec["accuracy"], raw, clipped)
        assert rec["data_policy"] == "release" and rec["n_kept"]["candidates_outside"] >= 4
        differs |= raw != clipped
    assert differs  # scoring clipped boxes would have given another number: the test can tell


def test_data_check_lists_the_real_traps(shapes):
    from cptbench.cli.main import cli

    r = CliRunner().invoke(cli, ["data", "check", "realref", "--data-root", str(shapes.root), "--proposals",
                                 str(shapes.reclip), "-k", "1", "--seeds", "0"])
    assert r.exit_code == 0, r.output
    assert "annotation 2206849 box [30.0, 40.0, 15.5, 0.0] has zero width or height" in r.output
    assert "image 200365: annotation 918" in r.output
    assert "reaches past the 64x48 image" in r.output and "val: proposal recall" in r.output
    r = CliRunner().invoke(cli, ["data", "check", "realref", "--data-root", str(shapes.root), "-k", "1", "--seeds", "0",
                                 "--strict-data"])
    assert r.exit_code == 1 and "annotation 2206849" in r.output and "runs refuse them" in r.output
