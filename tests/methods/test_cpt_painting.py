"""CPT painting: palettes, grouping, box rounding, exact blends, segmentations, the painted cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from cptbench.cpt import painting
from cptbench.cpt.painting import (
    NAMED_PALETTES, Painter, blend_color, box_masks, candidate_groups, decode_segmentation, n_groups, paint,
    parse_palette,
)
from cptbench.data.images import file_image
from cptbench.data.examples import Example

A = 127 / 255


def noise_image(h=20, w=30, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def expected_blend(orig, rgb, alpha=A):
    # (1 - a) * orig + a * rgb, written out per channel in plain Python
    return [int(round((1 - alpha) * float(o) + alpha * c)) for o, c in zip(orig, rgb)]


# ------------------------------------------------------------------------------------------ palettes
def test_named_palettes():
    red = parse_palette("red")
    assert red.words == ("red",) and red.rgb == ((240, 0, 30),)
    p5 = parse_palette("release5")
    assert p5.words == ("blue", "red", "yellow", "purple", "green")
    assert p5.rgb == ((0, 10, 255), (240, 0, 30), (255, 255, 25), (155, 50, 210), (0, 255, 0))
    assert set(NAMED_PALETTES) == {"red", "release5"}


def test_custom_palette_and_errors():
    p = parse_palette("red:240,0,30; blue:0,10,255")
    assert p.words == ("red", "blue") and p.rgb == ((240, 0, 30), (0, 10, 255)) and p.name == "custom"
    assert p.spec == "red:240,0,30;blue:0,10,255"
    for bad, hint in [("rainbow", "release5"), ("red:1,2", "r,g,b"), ("red:1,2,300", "0..255"),
                      ("none:1,2,3", "none"), ("a:1,2,3;a:3,4,5", "twice"), ("", "name")]:
        with pytest.raises(ValueError, match=hint):
            parse_palette(bad)


def test_grouping_rule():
    assert candidate_groups(8, 5) == [range(0, 5), range(5, 8)]
    assert candidate_groups(3, 1) == [range(0, 1), range(1, 2), range(2, 3)]
    assert candidate_groups(0, 5) == []
    assert [n_groups(n, 5) for n in (0, 1, 5, 6, 10, 11)] == [0, 1, 1, 2, 2, 3]


# ------------------------------------------------------------------------------------------- boxes
def _covered(mask):
    """(columns, rows) a box mask covers, as sorted lists."""
    rows, cols = np.nonzero(mask)
    return sorted(set(cols.tolist())), sorted(set(rows.tolist()))


# Hand-computed from the release's draw_rectangles: COCO [x, y, w, h] -> x2 = x + w - 1, a block of
# int(x2) - int(x1) columns pasted at int(x1) (and rows likewise). Our boxes are xyxy with x2 = x + w.
RELEASE_CASES = [
    # (x, y, w, h), image (H, W), expected columns, expected rows
    ((10.0, 2.0, 4.0, 3.0), (8, 20), [10, 11, 12], [2, 3]),  # integer box: w - 1 columns, h - 1 rows
    ((2.5, 1.0, 2.7, 2.0), (6, 8), [2, 3], [1]),  # x2 = 4.2 -> int(4.2) = 4 (exclusive), y2 = 2.0 -> 2
    ((2.9, 0.4, 1.2, 1.6), (6, 8), [2], [0]),  # x: int(2.9) = 2 .. int(4.1 - 1) = 3; y: 0 .. int(1.0) = 1
    ((0.0, 0.0, 1.0, 1.0), (4, 4), [], []),  # one-pixel box: the release paints nothing
    ((3.0, 1.0, 2.0, 2.0), (4, 6), [3], [1]),  # two-pixel box: one column, one row
    ((-3.7, -1.0, 9.0, 3.0), (6, 8), [0, 1, 2, 3], [0]),  # int(-3.7) = -3 (toward zero), x2 = 4.3 -> 4; clipped
    ((5.5, 3.5, 10.0, 10.0), (6, 8), [5, 6, 7], [3, 4, 5]),  # beyond the right/bottom edge: clipped
    ((7.999, 0.0, 0.002, 6.0), (6, 8), [], []),  # sliver: int(7.999) = 7 = int(7.001): no column, no pixel
]


@pytest.mark.parametrize("xywh,size,cols,rows", RELEASE_CASES)
def test_release_box_pixels_hand_computed(xywh, size, cols, rows):
    x, y, w, h = xywh
    m = box_masks([[x, y, x + w, y + h]], *size)[0]
    assert m.shape == size
    assert _covered(m) == (cols, rows)
    # the same pixels as a direct transcription of the release's arithmetic
    x1i, y1i = int(x), int(y)
    x2i, y2i = int(x + w - 1), int(y + h - 1)
    ref = np.zeros(size, bool)
    ref[max(y1i, 0):max(y2i, 0), max(x1i, 0):max(x2i, 0)] = True
    assert np.array_equal(m, ref)


def test_cover_box_pixels_is_every_touched_pixel():
    # x1 = 2.5 -> first column 2; x2 = 5.2 -> last column ceil(5.2) - 1 = 5; y 1.0 .. 3.0 -> rows 1, 2
    m = box_masks([[2.5, 1.0, 5.2, 3.0]], 6, 8, rule="cover")[0]
    assert _covered(m) == ([2, 3, 4, 5], [1, 2])
    # clipped to the image; integer zero-width box covers nothing
    m = box_masks([[-3.0, -1.0, 100.0, 2.0], [4.0, 0.0, 4.0, 6.0]], 6, 8, rule="cover")
    assert m[0].sum() == 2 * 8 and m[1].sum() == 0
    # the same integer box: cover paints w x h pixels, release (w - 1) x (h - 1)
    box = [[10.0, 2.0, 14.0, 5.0]]
    assert box_masks(box, 8, 20, rule="cover").sum() == 4 * 3 and box_masks(box, 8, 20).sum() == 3 * 2
    assert painting.box_spans(box, 8, 20).tolist() == [[10, 2, 13, 4]]
    with pytest.raises(ValueError, match="box_pixels"):
        box_masks(box, 8, 20, rule="touch")


def test_paint_box_exact_blend_and_untouched_outside():
    img = noise_image()
    box = [3.0, 4.0, 11.0, 9.0]
    out = paint(img, box_masks([box], 20, 30), [(240, 0, 30)], A)
    inside = np.zeros((20, 30), bool)
    inside[4:8, 3:10] = True  # release rule: rows 4 .. 7, columns 3 .. 9
    assert np.array_equal(out[~inside], img[~inside])
    for y, x in zip(*np.nonzero(inside)):
        assert list(out[y, x]) == expected_blend(img[y, x], (240, 0, 30))
    assert out.dtype == np.uint8 and img is not out


def test_paint_overlap_last_wins_once_and_alpha():
    img = noise_image(seed=1)
    masks = box_masks([[0, 0, 10, 10], [5, 5, 15, 15]], 20, 30)
    out = paint(img, masks, [(0, 10, 255), (240, 0, 30)], 0.3)
    assert list(out[7, 7]) == expected_blend(img[7, 7], (240, 0, 30), 0.3)  # overlap: second colour, once
    assert list(out[2, 2]) == expected_blend(img[2, 2], (0, 10, 255), 0.3)
    assert np.array_equal(blend_color(img[2, 2], (0, 10, 255), 0.3), out[2, 2])
    assert np.array_equal(paint(img, np.zeros((0, 20, 30), bool), [], A), img)


# ---------------------------------------------------------------------------------- segmentations
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools' NumPy-2 notice in the reference
def test_polygon_mask_painting():
    img = noise_image(seed=2)
    poly = [[2.0, 2.0, 12.0, 2.0, 12.0, 10.0, 2.0, 10.0]]
    m = decode_segmentation(poly, 20, 30)
    ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, 20, 30))).astype(bool)
    assert np.array_equal(m, ref) and m.sum() > 0
    out = paint(img, m[None], [(240, 0, 30)], A)
    assert np.array_equal(out[~m], img[~m])
    assert np.array_equal(out[m], blend_color(img[m], (240, 0, 30)))
    # degenerate polygons are no mask (fall back to the box)
    assert decode_segmentation([[1.0, 2.0, 3.0, 4.0]], 20, 30) is None
    assert decode_segmentation(None, 20, 30) is None and decode_segmentation([], 20, 30) is None


def test_rle_masks_compressed_and_uncompressed():
    truth = np.zeros((20, 30), dtype=bool)
    truth[3:9, 5:20] = True
    truth[12:15, 1:4] = True
    compressed = mask_utils.encode(np.asfortranarray(truth.astype(np.uint8)))
    as_json = {"size": compressed["size"], "counts": compressed["counts"].decode("ascii")}
    # uncompressed: run lengths in column-major order, starting with a run of zeros
    flat = truth.T.reshape(-1).astype(np.int8)
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    uncompressed = {"size": [20, 30], "counts": counts}
    for seg in (compressed, as_json, uncompressed):
        assert np.array_equal(decode_segmentation(seg, 20, 30), truth)
    img = noise_image(seed=3)
    out = paint(img, decode_segmentation(as_json, 20, 30)[None], [(0, 255, 0)], A)
    assert np.array_equal(out[~truth], img[~truth])
    assert np.array_equal(out[truth], blend_color(img[truth], (0, 255, 0)))
    with pytest.raises(ValueError, match="does not match"):
        decode_segmentation(as_json, 21, 30)


# --------------------------------------------------------------------------------------- painter
def _example(tmp_path: Path, img: np.ndarray, boxes, masks=(), key="gt:1", eid="1:1") -> Example:
    path = tmp_path / "img.png"
    if not path.exists():
        Image.fromarray(img).save(path)
    return Example(example_id=eid, ref_id=1, sent_id=int(eid.split(":")[1]), image_id=1, image_handle=file_image(path),
                   image_size=(img.shape[1], img.shape[0]), expression="x", boxes=np.asarray(boxes, float),
                   categories=("a",) * len(boxes), masks=tuple(masks), candidate_key=key)


def test_painter_groups_fallbacks_and_cache(tmp_path):
    img = noise_image(seed=4)
    boxes = [[0, 0, 5, 5], [6, 0, 11, 5], [12, 0, 17, 5]]
    poly = [[6.0, 0.0, 10.0, 0.0, 10.0, 4.0]]
    ex = _example(tmp_path, img, boxes, masks=(None, poly, []))
    calls = []
    painter = Painter(parse_palette("red:240,0,30;blue:0,10,255"), A, "mask", lambda a: calls.append(a) or len(calls),
                      box_pixels="cover")
    assert painter.groups(ex) == [range(0, 2), range(2, 3)]
    g0 = painter.painted(ex, 0)
    # candidate 0 has no mask: its box is painted red; candidate 1: its triangle in blue
    assert np.array_equal(g0[0:5, 0:5], blend_color(img[0:5, 0:5], (240, 0, 30)))
    tri = decode_segmentation(poly, 20, 30)
    assert np.array_equal(g0[tri], blend_color(img[tri], (0, 10, 255)))
    painted = np.zeros((20, 30), bool)
    painted[0:5, 0:5] = True
    painted |= tri
    assert np.array_equal(g0[~painted], img[~painted])
    g1 = painter.painted(ex, 1)  # candidate 2: empty polygon list -> box, first colour
    assert np.array_equal(g1[0:5, 12:17], blend_color(img[0:5, 12:17], (240, 0, 30)))
    assert painter.fallback_count(ex) == 2  # per example: candidates painted as their box

    # prepared copies are shared by every expression of the same image and candidate set
    other_expr = _example(tmp_path, img, boxes, masks=(None, poly, []), eid="1:2")
    assert painter.prepared(ex, 0) == painter.prepared(other_expr, 0) == 1
    assert painter.prepared(ex, 1) == 2 and len(calls) == 2
    assert painter.prepared_cache.hits == 1
    other_set = _example(tmp_path, img, boxes, masks=(None, poly, []), key="det:1")
    assert painter.prepared(other_set, 0) == 3
    with pytest.raises(IndexError):
        painter.painted(ex, 2)


def test_painter_block_mode_ignores_masks_and_lru_bound(tmp_path, monkeypatch):
    img = noise_image(seed=5)
    ex = _example(tmp_path, img, [[0, 0, 4, 4], [5, 5, 9, 9]], masks=([[0.0, 0.0, 2.0, 0.0, 2.0, 2.0]], None))
    import cptbench.data.images as images_mod

    loads = []
    real = images_mod.decode_rgb
    monkeypatch.setattr(images_mod, "decode_rgb", lambda p: loads.append(p) or real(p))
    painter = Painter(parse_palette("red"), A, "block", lambda a: a, cache_size=1)
    out = painter.prepared(ex, 0)
    # the release's rule (the default): box 0 .. 4 covers pixels 0 .. 2
    assert np.array_equal(out[0:3, 0:3], blend_color(img[0:3, 0:3], (240, 0, 30)))
    assert np.array_equal(out[3, :], img[3, :]) and np.array_equal(out[:, 3], img[:, 3])
    painter.prepared(ex, 1)
    painter.prepared(ex, 0)  # evicted by the bound of 1: painted again, image read once
    assert painter.images_painted == 3 and len(painter.prepared_cache) == 1 and len(loads) == 1


def test_painter_refuses_size_mismatch(tmp_path):
    img = noise_image()
    ex = _example(tmp_path, img, [[0, 0, 4, 4]])
    bad = Example(**{**{f: getattr(ex, f) for f in ex.__dataclass_fields__}, "image_size": (31, 20)})
    with pytest.raises(ValueError, match="line up"):
        Painter(parse_palette("red"), A, "block", lambda a: a).painted(bad, 0)


def test_painter_box_rule_is_an_option_and_part_of_the_cache_key(tmp_path):
    img = noise_image(seed=6)
    ex = _example(tmp_path, img, [[2.0, 3.0, 8.0, 7.0]])
    release = Painter(parse_palette("red"), A, "block", lambda a: a).painted(ex, 0)
    cover = Painter(parse_palette("red"), A, "block", lambda a: a, box_pixels="cover").painted(ex, 0)
    changed = lambda out: np.any(out != img, axis=2)  # noqa: E731
    assert np.array_equal(changed(release), box_masks([[2.0, 3.0, 8.0, 7.0]], 20, 30)[0])
    assert changed(release).sum() == 5 * 3 and changed(cover).sum() == 6 * 4
    p = Painter(parse_palette("red"), A, "block", lambda a: a, box_pixels="cover")
    assert p._key(ex, 0) != Painter(parse_palette("red"), A, "block", lambda a: a)._key(ex, 0)
    with pytest.raises(ValueError, match="box_pixels"):
        Painter(parse_palette("red"), A, "block", lambda a: a, box_pixels="all")


def test_painter_box_key_follows_the_array_not_its_address(tmp_path):
    """The digest cache is keyed by the box array object: a new array with other values (even one
    that reuses a freed array's id) gets its own digest."""
    p = Painter(parse_palette("red"), A, "block", lambda a: a)
    for i in range(50):
        boxes = np.array([[1.0, 2.0, 3.0 + i, 4.0]])
        assert p.boxes_key(boxes) == painting.boxes_digest(boxes)
        del boxes  # the next array may take this id
    same = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert p.boxes_key(same) == p.boxes_key(same.copy())
