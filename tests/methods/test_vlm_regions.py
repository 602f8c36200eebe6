"""What the generative prompting methods draw, checked pixel by pixel: CPT's colours exactly as
``cpt-blk`` paints them, and Set-of-Mark numbers where and how they should be."""

from __future__ import annotations

import numpy as np
import pytest

from cptbench.cpt import painting as cpt
from cptbench_baselines.vlm_regions import (GLYPHS, MARK_COLOURS, PALETTES, auto_scale, blend_rgb, box_spans,
                                            candidate_groups, draw_marks, label_origin, label_size, paint_colours,
                                            parse_palette, text_colour)


def scene(h=40, w=50, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


BOXES = np.array([[2.0, 3.0, 20.0, 15.0], [10.0, 8.0, 30.5, 30.0], [40.0, 30.0, 60.0, 45.0],  # overlap; past the border
                  [5.0, 30.0, 5.0, 38.0], [25.7, 1.2, 33.9, 6.8]])  # zero width; fractional


@pytest.mark.parametrize("name", ["red", "release5"])
def test_colours_are_cpt_blk_colours(name):
    """Same palette, same groups, same box pixels, same blend, same overlap rule as CPT's painter."""
    mine, theirs = PALETTES[name], cpt.NAMED_PALETTES[name]
    assert (mine.words, mine.rgb) == (theirs.words, theirs.rgb)
    assert candidate_groups(12, len(mine)) == cpt.candidate_groups(12, len(theirs))
    img = scene()
    for group in candidate_groups(len(BOXES), len(mine)):
        boxes = BOXES[group.start:group.stop]
        want = cpt.paint(img, cpt.box_masks(boxes, *img.shape[:2], rule="release"), theirs.rgb[:len(boxes)])
        got = paint_colours(img, boxes, mine.rgb[:len(boxes)])
        assert np.array_equal(got, want)
    assert np.array_equal(box_spans(BOXES, 40, 50), cpt.box_spans(BOXES, 40, 50, "release"))


def test_colours_land_on_the_release_pixels():
    img = np.full((20, 20, 3), 100, dtype=np.uint8)
    out = paint_colours(img, [[2.0, 4.0, 6.0, 9.0], [5.0, 5.0, 8.0, 7.0]], [(0, 0, 255), (255, 0, 0)], alpha=0.5)
    blue, red = blend_rgb((100, 100, 100), (0, 0, 255), 0.5), blend_rgb((100, 100, 100), (255, 0, 0), 0.5)
    # box 0: columns int(2) .. int(6 - 1) - 1 = 2..4, rows 4..7; box 1 (later) wins columns 5..6, rows 5..5
    assert (out[4:8, 2:5] == blue).all() and (out[5, 5:7] == red).all()
    assert (out[4, 5] == 100).all() and (out[6:8, 5:7] == 100).all()  # box 0 ends at column 4
    changed = (out != img).any(axis=-1)
    assert changed.sum() == 4 * 3 + 1 * 2


def test_custom_palettes_and_their_errors():
    p = parse_palette("cyan:0,255,255; magenta:255,0,255")
    assert p.words == ("cyan", "magenta") and p.rgb == ((0, 255, 255), (255, 0, 255))
    for bad in ("", "nope", "x:1,2", "x:1,2,300", "a:1,2,3;a:4,5,6"):
        with pytest.raises(ValueError):
            parse_palette(bad)


def glyph_mask(text: str, scale: int) -> np.ndarray:
    """The ink of ``text`` on its label, built independently from the font table."""
    w, h = label_size(text, scale)
    m = np.zeros((h, w), dtype=bool)
    for d, ch in enumerate(text):
        for r, line in enumerate(GLYPHS[ch]):
            for c, cell in enumerate(line):
                if cell == "#":
                    y, x = scale + r * scale, scale + d * 6 * scale + c * scale
                    m[y:y + scale, x:x + scale] = True
    return m


@pytest.mark.parametrize("scale", [1, 2, 3])
def test_a_mark_is_its_number_on_a_label_at_the_box_centre(scale):
    img = np.full((120, 160, 3), 200, dtype=np.uint8)
    boxes = [[20.0, 30.0, 81.0, 91.0]]
    out = draw_marks(img, boxes, [7], scale=scale, outline=False)
    (c0, r0, c1, r1), = box_spans(boxes, 120, 160).tolist()
    w, h = label_size("7", scale)
    x, y = (c0 + c1) // 2 - w // 2, (r0 + r1) // 2 - h // 2
    label = out[y:y + h, x:x + w]
    ink = glyph_mask("7", scale)
    assert (label[ink] == text_colour(MARK_COLOURS[0])).all() and (label[~ink] == MARK_COLOURS[0]).all()
    outside = np.ones((120, 160), dtype=bool)
    outside[y:y + h, x:x + w] = False
    assert (out[outside] == 200).all()  # nothing else drawn


def test_outline_numbers_colours_and_corner_marks():
    img = np.full((64, 64, 3), 255, dtype=np.uint8)
    boxes = [[4.0, 4.0, 30.0, 26.0], [34.0, 36.0, 62.0, 62.0]]
    out = draw_marks(img, boxes, [1, 12], position="corner", outline=True, scale=1)
    spans = box_spans(boxes, 64, 64).tolist()
    for j, (c0, r0, c1, r1) in enumerate(spans):
        rgb = MARK_COLOURS[j]
        border = np.zeros((64, 64), dtype=bool)
        border[r0:r1, c0:c1] = True
        border[r0 + 1:r1 - 1, c0 + 1:c1 - 1] = False
        assert (out[border] == rgb).all()
        assert (out[r0 + 12:r1 - 1, c0 + 16:c1 - 1] == 255).all()  # inside, past the label: untouched
        text = str([1, 12][j])
        w, h = label_size(text, 1)
        ink = glyph_mask(text, 1)
        assert (out[r0:r0 + h, c0:c0 + w][ink] == text_colour(rgb)).all()  # the label at the top-left corner
    assert label_size("12", 1) == (13, 9)


def test_labels_stay_inside_the_image_and_text_contrasts():
    assert label_origin([0, 0, 2, 2], (13, 9), 30, 30, "center") == (0, 0)
    assert label_origin([25, 25, 30, 30], (13, 9), 30, 30, "center") == (17, 21)
    assert label_origin([25, 25, 30, 30], (13, 9), 30, 30, "corner") == (17, 21)
    with pytest.raises(ValueError):
        label_origin([0, 0, 1, 1], (1, 1), 5, 5, "middle")
    assert text_colour((0, 0, 0)) == (255, 255, 255) and text_colour((250, 250, 250)) == (0, 0, 0)
    assert auto_scale(64, 64) == 1 and auto_scale(480, 640) == 3
    out = draw_marks(np.zeros((10, 10, 3), np.uint8), [[0.0, 0.0, 10.0, 10.0]], [5])
    assert out.shape == (10, 10, 3)  # a label bigger than the box, clipped to the image


def test_groups_of_marks():
    assert candidate_groups(7, 0) == [range(0, 7)]
    assert candidate_groups(7, 3) == [range(0, 3), range(3, 6), range(6, 7)]
    assert candidate_groups(0, 0) == []
