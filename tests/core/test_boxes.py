"""The one box convention and IoU: hand-computed overlaps, the release's inclusive-pixel quirk, pycocotools agreement, threshold rules."""

import numpy as np
import pytest

from cptbench.core.boxes import iou, iou_matrix, is_hit, xywh_to_xyxy, xyxy_to_xywh


def box(x, y, w, h):
    return xywh_to_xyxy([x, y, w, h])


@pytest.mark.parametrize("convention", ["inclusive", "continuous"])
def test_identical_boxes(convention):
    assert iou(box(10, 10, 20, 30), box(10, 10, 20, 30), convention) == pytest.approx(1.0)


@pytest.mark.parametrize("convention", ["inclusive", "continuous"])
def test_disjoint_boxes(convention):
    assert iou(box(0, 0, 10, 10), box(50, 50, 10, 10), convention) == 0.0


@pytest.mark.parametrize("convention", ["inclusive", "continuous"])
def test_touching_boxes_share_an_edge_only(convention):
    assert iou(box(0, 0, 10, 10), box(10, 0, 10, 10), convention) == 0.0


def test_contained_box_hand_computed():
    # 10x10 inside 20x20: inter 100, union 400
    for c in ("inclusive", "continuous"):
        assert iou(box(5, 5, 10, 10), box(0, 0, 20, 20), c) == pytest.approx(100 / 400)


def test_partial_overlap_hand_computed():
    # [0,10)x[0,10) vs [5,15)x[0,10): inter 5*10=50, union 150
    assert iou(box(0, 0, 10, 10), box(5, 0, 10, 10), "continuous") == pytest.approx(50 / 150)
    # the release: right = x+w-1; inter x from 5..9 inclusive = 5 px, same value here
    assert iou(box(0, 0, 10, 10), box(5, 0, 10, 10), "inclusive") == pytest.approx(50 / 150)


def test_inclusive_quirk_one_pixel_overlap_counts_zero():
    # refer's computeIoU: [0..9] and [9..18] overlap in one pixel column; ix1 < ix2 fails -> 0
    a, b = box(0, 0, 10, 10), box(9, 0, 10, 10)
    assert iou(a, b, "inclusive") == 0.0
    assert iou(a, b, "continuous") == pytest.approx(10 / 190)


def release_compute_iou(b1, b2):
    """The refer toolkit's formula on [x, y, w, h], transcribed as a reference for the test."""
    ix1, iy1 = max(b1[0], b2[0]), max(b1[1], b2[1])
    ix2, iy2 = min(b1[0] + b1[2] - 1, b2[0] + b2[2] - 1), min(b1[1] + b1[3] - 1, b2[1] + b2[3] - 1)
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if (ix1 < ix2 and iy1 < iy2) else 0
    return inter / (b1[2] * b1[3] + b2[2] * b2[3] - inter)


def test_inclusive_matches_release_formula_on_integer_boxes():
    rng = np.random.default_rng(0)
    for _ in range(500):
        b1 = [int(v) for v in rng.integers(0, 40, 2)] + [int(v) for v in rng.integers(1, 30, 2)]
        b2 = [int(v) for v in rng.integers(0, 40, 2)] + [int(v) for v in rng.integers(1, 30, 2)]
        assert iou(xywh_to_xyxy(b1), xywh_to_xyxy(b2), "inclusive") == pytest.approx(release_compute_iou(b1, b2))


@pytest.mark.parametrize("convention", ["inclusive", "continuous"])
def test_zero_area_boxes(convention):
    assert iou(box(5, 5, 0, 0), box(5, 5, 0, 0), convention) == 0.0
    assert iou(box(5, 5, 0, 10), box(0, 0, 20, 20), convention) == 0.0


def test_continuous_matches_pycocotools():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(1)
    a = np.column_stack([rng.uniform(0, 50, (40, 2)), rng.uniform(0.5, 40, (40, 2))])
    b = np.column_stack([rng.uniform(0, 50, (30, 2)), rng.uniform(0.5, 40, (30, 2))])
    ref = mask_utils.iou(a.tolist(), b.tolist(), [0] * len(b))
    ours = iou_matrix(xywh_to_xyxy(a), xywh_to_xyxy(b), "continuous")
    np.testing.assert_allclose(ours, ref, atol=1e-9)


def test_threshold_rules():
    assert not is_hit(0.5, 0.5, "gt") and is_hit(0.5, 0.5, "ge")
    assert is_hit(0.51, 0.5, "gt")
    with pytest.raises(ValueError):
        is_hit(0.5, 0.5, "gte")


def test_round_trip_conversion():
    b = np.array([[1.5, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(xyxy_to_xywh(xywh_to_xyxy(b)), b)
