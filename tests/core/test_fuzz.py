"""Property-based fuzzing (hypothesis) of the loaders, the IoU, the scorer and the aggregation.

The loaders must either load or refuse with a cptbench error (never another exception); the IoU,
the scorer and the statistics must keep their invariants on any input.
"""

from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cptbench.report.aggregate import MIN_SEEDS_FOR_INTERVAL, aggregate, seed_stats
from cptbench.core.boxes import iou_matrix, is_hit, xywh_to_xyxy
from cptbench.core.errors import DataError
from cptbench.data.proposals import load_detections
from cptbench.data.box_policy import KINDS, bad_box_reason, classify_box, classify_boxes
from cptbench.data.safe_pickle import load_plain_pickle
from cptbench.core.errors import CptbenchError
from cptbench.data.examples import Example, Label
from cptbench.data.images import file_image
from cptbench.run.scoring import score_example, summarize
from cptbench.tasks.spec import MetricSpec
from record_fixture import make_record

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
any_float = st.floats(allow_nan=True, allow_infinity=True)
xywh = st.tuples(finite, finite, st.floats(0, 500), st.floats(0, 500))
json_scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | any_float | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
                           max_leaves=20)


# ------------------------------------------------------------------------------------------- IoU
@FUZZ
@given(st.lists(xywh, min_size=1, max_size=6), st.lists(xywh, min_size=1, max_size=6),
       st.sampled_from(["inclusive", "continuous"]))
def test_iou_is_bounded_symmetric_and_one_on_itself(a, b, convention):
    A, B = xywh_to_xyxy(np.array(a)), xywh_to_xyxy(np.array(b))
    m = iou_matrix(A, B, convention)
    assert m.shape == (len(a), len(b)) and np.all(np.isfinite(m))
    assert np.all(m >= 0) and np.all(m <= 1 + 1e-12)
    np.testing.assert_allclose(m, iou_matrix(B, A, convention).T, atol=1e-12)
    self_iou = np.diag(iou_matrix(A, A, convention))
    wide = (np.array(a)[:, 2] > 1) & (np.array(a)[:, 3] > 1)  # inclusive rule: overlaps of <= 1 px count 0
    np.testing.assert_allclose(self_iou[wide], 1.0)


@FUZZ
@given(st.floats(0, 1), st.floats(0.01, 0.99))
def test_threshold_rules(v, t):
    assert bool(is_hit(v, t, "gt")) == (v > t) and bool(is_hit(v, t, "ge")) == (v >= t)


# ---------------------------------------------------------------------------------------- scorer
def _example(n, tmp="/nonexistent.png"):
    boxes = np.array([[10.0 * i, 0, 10.0 * i + 8, 8] for i in range(n)]).reshape(-1, 4)
    return Example(f"1:{n}", 1, n, 1, file_image(tmp), (100, 20), "x", boxes, ("o",) * n)


@FUZZ
@given(st.integers(0, 6), st.lists(any_float, max_size=8) | json_values)
@example(1, False)  # a bare scalar is not "one score per candidate"
@example(2, [[1.0, 2.0]])
def test_scorer_never_crashes_and_flags_invalid(n, scores):
    ex = _example(n)
    label = Label(ex.example_id, np.array([0.0, 0, 8, 8]))
    out = score_example(ex, label, scores, MetricSpec())
    assert out.status in ("ok", "invalid", "no_candidates")
    if out.status == "ok":
        s = np.asarray(scores, dtype=np.float64)
        assert s.shape == (n,)  # one score per candidate, nothing else is accepted
        assert 0 <= out.pred_index < n and s[out.pred_index] == np.nanmax(s)
    else:
        assert out.pred_index == -1 and not out.correct
    row = out.to_json(None)
    json.dumps(row, allow_nan=False)  # predictions rows are strict JSON
    assert summarize([row]).n == 1


# ----------------------------------------------------------------------------------- aggregation
@FUZZ
@given(st.lists(st.floats(0, 100), min_size=1, max_size=6))
def test_seed_stats_match_numpy_and_the_interval_holds_the_mean(acc):
    s = seed_stats(acc)
    assert s.n == len(acc)
    assert math.isclose(s.mean, float(np.mean(acc)), abs_tol=1e-9)
    assert math.isclose(s.std, float(np.std(acc, ddof=0)), abs_tol=1e-9)
    if s.mean > 0:
        assert math.isclose(s.rsd, s.std / s.mean, rel_tol=1e-9, abs_tol=1e-12)
    if len(acc) >= MIN_SEEDS_FOR_INTERVAL and s.std > 0:
        assert s.ci95_low <= s.mean + 1e-9 <= s.ci95_high + 2e-9
        assert 0.0 <= s.ci95_low and s.ci95_high <= 100.0  # clipped to the accuracy range
    else:  # too few seeds for an interval, or every seed equal: none (the cell says n, or "all seeds equal")
        assert math.isnan(s.ci95_low) and math.isnan(s.ci95_high)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["val", "testA"]), st.integers(0, 3), st.floats(0, 100)), min_size=1,
                max_size=10, unique_by=lambda t: (t[0], t[1])), st.randoms())
def test_aggregation_is_order_free_and_counts_every_record(rows, rnd):
    recs = [make_record(run_id=f"{sp}{seed}", split=sp, seed=seed, shots=1, accuracy=acc) for sp, seed, acc in rows]
    shuffled = list(recs)
    rnd.shuffle(shuffled)
    a, b = aggregate(recs), aggregate(shuffled)
    assert [(r.split, r.acc_mean, r.n_seeds) for r in a] == [(r.split, r.acc_mean, r.n_seeds) for r in b]
    assert sum(r.n_seeds for r in a) == len(recs)


# --------------------------------------------------------------------------------------- loaders
@FUZZ
@given(json_values)
def test_detections_loader_loads_or_refuses(tmp_path, data):
    f = tmp_path / "dets.json"
    f.write_text(json.dumps(data))
    try:
        dets = load_detections(f)
    except DataError:
        return
    for cand in dets.by_image.values():
        assert cand.boxes.shape[1] == 4 and len(cand.categories) == cand.boxes.shape[0]


@FUZZ
@given(st.binary(max_size=200))
def test_plain_pickle_reader_refuses_garbage(tmp_path, blob):
    f = tmp_path / "refs(unc).p"
    f.write_bytes(blob)
    try:
        load_plain_pickle(f)
    except DataError:
        pass


@FUZZ
@given(json_values)
def test_plain_pickle_round_trips_plain_data(tmp_path, data):
    f = tmp_path / "refs(unc).p"
    f.write_bytes(pickle.dumps(data, protocol=2))
    back = load_plain_pickle(f)
    assert json.dumps(back, sort_keys=True, default=str) == json.dumps(data, sort_keys=True, default=str)


@FUZZ
@given(json_values)
def test_refer_loader_loads_or_refuses_any_refs_structure(tmp_path, data):
    from cptbench.data.refer import ReferDataset
    from refer_fixture import write_refer_fixture

    root = tmp_path / "d"
    if not root.exists():
        write_refer_fixture(root, splits={"train": 1, "val": 1})
    refs = pickle.loads((root / "toyref" / "refs(unc).p").read_bytes())
    mutated = refs[:1] + [data] if isinstance(data, dict) else data
    (root / "toyref" / "refs(unc).p").write_bytes(pickle.dumps(mutated, protocol=2))
    try:
        ds = ReferDataset(root, "toyref", "unc", root / "images" / "train2014")
        for split in ds.splits():
            ds.load_split(split, skip_bad=True)
    except CptbenchError:
        pass
    finally:
        (root / "toyref" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))


@FUZZ
@given(st.lists(any_float | st.text(max_size=3) | st.none(), max_size=6), st.tuples(st.integers(0, 200), st.integers(0, 200)))
def test_bad_box_reason_accepts_only_real_boxes(box, size):
    strict = bad_box_reason(box, size, strict=True)
    if strict is None:  # --strict-data: a positive, finite box inside the image
        x, y, w, h = (float(v) for v in box)
        assert all(math.isfinite(v) for v in (x, y, w, h)) and w > 0 and h > 0
    if bad_box_reason(box, size) is None:  # the default also keeps zero-area boxes and boxes past the border
        x, y, w, h = (float(v) for v in box)
        assert all(math.isfinite(v) for v in (x, y, w, h)) and w >= 0 and h >= 0
        inside = x >= -1 and y >= -1 and x + w <= size[0] + 1 and y + h <= size[1] + 1  # to within a pixel
        if size != (0, 0) and w > 0 and h > 0 and not inside:  # ... that still cover part of the image
            assert min(x + w, size[0]) > max(x, 0) and min(y + h, size[1]) > max(y, 0)
    else:
        assert strict is not None  # what the default refuses, --strict-data refuses too


@FUZZ
@given(st.lists(st.tuples(any_float, any_float, any_float, any_float), min_size=1, max_size=8),
       st.tuples(st.integers(0, 200), st.integers(0, 200)))
def test_vectorised_box_check_agrees_with_the_worded_one(boxes, size):
    arr = np.array(boxes, dtype=np.float64)
    kinds = [KINDS[c] for c in classify_boxes(arr, size)]
    worded = [classify_box(b, size) for b in boxes]
    assert kinds == [k for k, _ in worded]
    assert all((why == "") == (k == "ok") for k, why in worded)
