"""The box policy as the CPT release behaves: boxes reaching past the image and zero-area boxes are
kept and counted by default, refused with --strict-data; NaN, negative and wholly outside boxes are
always refused (--skip-bad drops them). Hand-made cases, the loader, and the run identity."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner

from cptbench.core.errors import DataError
from cptbench.data.box_policy import bad_box_reason, classify_box, data_policy
from cptbench.data.refer import ReferDataset
from refer_fixture import write_refer_fixture, write_task_card

W, H = 48, 32  # the fixture's images


@pytest.mark.parametrize("box,kind,why", [
    ([4, 5, 10, 12], "ok", ""),
    ([-0.6, 0, 48.9, 32.4], "ok", ""),  # within a pixel of the border: COCO's float rounding
    ([30, 2, 58, 12], "outside", "reaches past the 48x32 image"),  # 40 px past the right border
    ([-40, -40, 60, 50], "outside", "reaches past the 48x32 image"),
    ([18, 0, 10, 0], "zero_area", "has zero width or height"),  # a zero-height COCO annotation
    ([0, 10, 0, 4], "zero_area", "has zero width or height"),  # zero width on the border
    ([-20, 10, 50, 0], "zero_area", "has zero width or height"),  # zero height, reaching past both sides
    ([-5, 10, 0, 4], "bad", "has zero width or height and lies wholly outside the 48x32 image"),
    ([60, 1, 5, 5], "bad", "lies wholly outside the 48x32 image"),
    ([48, 1, 5, 5], "bad", "lies wholly outside the 48x32 image"),  # starts at the right border: no pixel
    ([60, 1, 0, 5], "bad", "has zero width or height and lies wholly outside the 48x32 image"),
    ([1, 1, -3, 5], "bad", "has negative width or height"),
    ([1, float("nan"), 3, 5], "bad", "has a NaN or infinite value"),
    ([1, 1, float("inf"), 5], "bad", "has a NaN or infinite value"),
    ([1, 2, 3], "bad", "has 3 values, not 4 ([x, y, w, h])"),
    ("abcd", "bad", "is not four numbers"),
])
def test_box_kinds_hand_made(box, kind, why):
    assert classify_box(box, (W, H)) == (kind, why)
    refused_by_default = kind == "bad"
    assert (bad_box_reason(box, (W, H)) is not None) == refused_by_default
    assert (bad_box_reason(box, (W, H), strict=True) is not None) == (kind != "ok")


def test_unknown_image_size_skips_the_bounds_tests():
    assert classify_box([500, 500, 10, 10], (0, 0))[0] == "ok"
    assert classify_box([500, 500, 0, 10], (0, 0))[0] == "zero_area"


def test_data_policy_names_only_what_matters():
    assert data_policy(False, {"candidates_outside": 0}, {}) == ""
    assert data_policy(False, {"candidates_outside": 0}, {"targets_zero_area": 2}) == "release"
    assert data_policy(True, {}) == "strict"


# ------------------------------------------------------------------------------------ the loader
def _edit(root, fn):
    p = root / "toyref" / "instances.json"
    data = json.loads(p.read_text())
    fn(data)
    p.write_text(json.dumps(data))


def _ann(data, image_id, nth):
    return [a for a in data["annotations"] if a["image_id"] == image_id][nth]


@pytest.fixture
def odd(tmp_path):
    """The fixture with, on val image 7: a non-target candidate 40 px past the right border and a
    zero-height one; on val image 8 the target of its first ref reaches past the bottom."""
    root = write_refer_fixture(tmp_path / "d")

    def fn(data):
        _ann(data, 7, 2)["bbox"] = [30.0, 2.0, 58.0, 12.0]  # the third annotation: no ref points to it
        data["annotations"].append({"id": 999, "image_id": 7, "category_id": 1, "bbox": [5.0, 20.0, 12.0, 0.0],
                                    "area": 0.0, "iscrowd": 0, "segmentation": [[5.0, 20.0, 17.0, 20.0, 17.0, 20.0]]})
        _ann(data, 8, 0)["bbox"][3] = 40.0
    _edit(root, fn)
    return root


def test_default_keeps_counts_and_names_each_kept_box(odd):
    ds = ReferDataset(odd, "toyref", "unc", odd / "images" / "train2014")
    val = ds.load_split("val")
    assert val.skipped == {"expressions": 0, "candidates": 0}
    assert val.kept == {"candidates_outside": 2, "candidates_zero_area": 1, "targets_outside": 2, "targets_zero_area": 0}
    ex7 = next(e for e in val.examples if e.image_id == 7)
    assert ex7.n_candidates == 4  # nothing dropped; the raw boxes are what is scored
    np.testing.assert_allclose(ex7.boxes[2], [30, 2, 88, 14])
    np.testing.assert_allclose(ex7.boxes[3], [5, 20, 17, 20])
    lines = val.quality.kept["candidates_zero_area"]
    assert lines == [f"{ds.instances_path}: image 7: annotation 999 box [5.0, 20.0, 12.0, 0.0] has zero width or height"]
    assert any("image 7: annotation 21 box [30.0, 2.0, 58.0, 12.0] reaches past the 48x32 image" in x
               for x in val.quality.kept["candidates_outside"])
    assert all("target of ref" in x for x in val.quality.kept["targets_outside"])


def test_strict_data_refuses_them_and_skip_bad_drops_them(odd):
    ds = ReferDataset(odd, "toyref", "unc", odd / "images" / "train2014")
    with pytest.raises(DataError) as err:
        ds.load_split("val", strict=True)
    msg = str(err.value)
    assert "annotation 999 box [5.0, 20.0, 12.0, 0.0] has zero width or height" in msg or "3 degenerate candidate" in msg
    assert "--strict-data" in msg and "--skip-bad" in msg and "instances.json" in msg
    val = ds.load_split("val", strict=True, skip_bad=True)
    assert val.kept == {k: 0 for k in val.kept}
    assert val.skipped == {"expressions": 2, "candidates": 3}  # image 8's target: its 2 expressions
    assert next(e for e in val.examples if e.image_id == 7).n_candidates == 2
    # the k-shot pool leaves kept targets out under either policy: the same draws with and without it
    pool = ds.pairs("val")
    assert pool == ds.pairs("val", strict=True, skip_bad=True) and len(pool) == len(val.examples) == 10


def test_a_k_shot_draw_counts_only_its_own_kept_targets(odd):
    ds = ReferDataset(odd, "toyref", "unc", odd / "images" / "train2014")
    refs = ds.refs_of("val")
    other = next(r for r in refs if r["image_id"] == 9)
    data = ds.load_split("val", ref_filter=[(other["ref_id"], other["sentences"][0]["sent_id"])])
    assert data.kept == {k: 0 for k in data.kept}


# ------------------------------------------------------------------------ runs: records, identity
@pytest.fixture
def world(odd, tmp_path, monkeypatch):
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    return odd


def _run(root, res, *extra, k="0"):
    from cptbench.cli.main import cli

    return CliRunner().invoke(cli, ["run", "-m", "oracle", "-k", k, "--seeds", "0", "-t", "toyref", "--data-root",
                                    str(root), "--results", str(res), "--no-leaderboard", "--split", "val", *extra])


def test_runs_record_what_was_kept_and_the_policy_enters_the_identity(world, tmp_path):
    r = _run(world, tmp_path / "res")
    assert r.exit_code == 0, r.output
    assert "2 candidate boxes past the image kept" in r.output and "1 zero-area candidate kept" in r.output
    rec = json.loads((tmp_path / "res" / "runs.jsonl").read_text().splitlines()[0])
    assert rec["data_policy"] == "release"
    assert rec["n_kept"] == {"candidates_outside": 2, "candidates_zero_area": 1, "targets_outside": 2}
    r = _run(world, tmp_path / "res", "--strict-data")
    assert r.exit_code == 1 and "--strict-data" in r.output and "Traceback" not in r.output
    r = _run(world, tmp_path / "res", "--strict-data", "--skip-bad")
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "res" / "runs.jsonl").read_text().splitlines()]
    assert [x["data_policy"] for x in recs] == ["release", "strict"] and recs[0]["run_id"] != recs[1]["run_id"]
    assert recs[1]["n_kept"] == {} and recs[1]["n_skipped"] == {"expressions": 2, "candidates": 3}


def test_data_without_such_boxes_keeps_its_run_ids(tmp_path, monkeypatch):
    """The default on clean data: no data_policy in the identity, the very id runs had before."""
    from cptbench.run.plan import RunSpec

    root = write_refer_fixture(tmp_path / "clean")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    assert _run(root, tmp_path / "res", k="1").exit_code == 0
    rec = json.loads((tmp_path / "res" / "runs.jsonl").read_text().splitlines()[0])
    assert rec["data_policy"] == "" and rec["n_kept"] == {}
    from cptbench.core.boxes import MetricSpec
    from cptbench.core.hashing import digest_of

    spec = RunSpec("toyref", 1, "val", "oracle", "{}", "none", "m", "d", "gt", 0, 0, None, MetricSpec())
    before = {k: v for k, v in spec.identity().items()}
    assert "data_policy" not in before and spec.run_id == digest_of(before)
    assert replace(spec, data_policy="release").run_id != spec.run_id != replace(spec, data_policy="strict").run_id


def test_a_box_kept_in_a_k_shot_draw_marks_the_runs(tmp_path, monkeypatch):
    """A kept box among the k-shot training examples' candidates changes what is fitted: the runs say
    so, although the eval split holds no such box (its k = 0 run keeps its old id)."""
    root = write_refer_fixture(tmp_path / "d")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))

    def fn(data):
        for a in data["annotations"]:
            if a["image_id"] <= 6 and a["id"] % 3 == 0:  # each train image's non-target candidate
                a["bbox"][2] = 60.0  # reaches past the right border
    _edit(root, fn)
    from cptbench.cli.main import cli

    r = CliRunner().invoke(cli, ["run", "-m", "category-prior", "-k", "0,1", "--seeds", "0", "-t", "toyref", "--data-root",
                                 str(root), "--results", str(tmp_path / "res"), "--no-leaderboard", "--split", "val"])
    assert r.exit_code == 0, r.output
    recs = {x["shots"]: x for x in map(json.loads, (tmp_path / "res" / "runs.jsonl").read_text().splitlines())}
    assert recs[0]["data_policy"] == "" and recs[1]["data_policy"] == "release"
    assert recs[1]["n_kept"] == {}  # the eval split's own counts: nothing kept there


def test_zero_area_target_is_a_miss_not_a_crash(world, tmp_path):
    """An expression whose target has zero area is kept and can only be missed (IoU 0 with anything)."""
    _edit(world, lambda data: _ann(data, 9, 0)["bbox"].__setitem__(3, 0.0))
    r = _run(world, tmp_path / "res")
    assert r.exit_code == 0, r.output
    rec = json.loads((tmp_path / "res" / "runs.jsonl").read_text().splitlines()[0])
    assert rec["n_kept"]["targets_zero_area"] == 2 and rec["n"] == 12
    assert math.isclose(rec["accuracy"], 100.0 * 10 / 12)


def test_strict_and_default_runs_are_separate_leaderboard_rows():
    from cptbench.report.aggregate import aggregate
    from record_fixture import make_record

    # the default policy is one setting whether a seed's k-shot draw held kept boxes ("release") or not ("")
    recs = [make_record(run_id=f"a{s}", seed=s, accuracy=50.0 + s, data_policy=p, shots=1)
            for s, p in ((0, ""), (1, "release"))]
    recs += [make_record(run_id=f"b{s}", seed=s, accuracy=10.0, data_policy="strict", shots=1) for s in (0, 1)]
    rows = aggregate(recs)
    assert sorted((r.strict_data, r.n_seeds) for r in rows) == [(False, 2), (True, 2)]
    assert [r.label.endswith("[strict-data]") for r in sorted(rows, key=lambda r: r.strict_data)] == [False, True]


def test_study_files_and_the_api_take_the_strict_data_policy(tmp_path):
    from cptbench.run.sweep import load_study, study_request

    f = tmp_path / "study.yaml"
    f.write_text("tasks: [synthref]\nmethods: [random]\nstrict_data: true\n")
    assert study_request(load_study(str(f))).strict_data is True
    assert study_request(load_study(str(f)), strict_data=None).strict_data is True
    import inspect

    from cptbench.api import evaluate

    assert inspect.signature(evaluate).parameters["strict_data"].default is False


def test_data_audit_and_sweep_take_strict_data(world, tmp_path):
    from cptbench.cli.main import cli

    r = CliRunner().invoke(cli, ["data", "audit", "toyref", "--data-root", str(world), "--heuristic", "largest-box"])
    assert "Traceback" not in r.output and "shortcut audit" in r.output, r.output
    r = CliRunner().invoke(cli, ["data", "audit", "toyref", "--data-root", str(world), "--strict-data"])
    assert r.exit_code == 1 and "--strict-data" in r.output and "zero width or height" in r.output, r.output
    r = CliRunner().invoke(cli, ["sweep", "-t", "toyref", "-m", "oracle", "-k", "0", "--seeds", "0", "--data-root",
                                 str(world), "--results", str(tmp_path / "res"), "--no-leaderboard", "--strict-data"])
    assert r.exit_code == 1 and "--strict-data" in r.output and "Traceback" not in r.output, r.output
