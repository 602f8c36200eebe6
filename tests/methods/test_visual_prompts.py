"""Each visual prompt is drawn where it should be, pixel by pixel: the crop, the blur's sharp box,
CPT's shade and the Red Circle ellipse; the resize to the model's input; the published defaults."""

from __future__ import annotations

import numpy as np
import pytest

from cptbench.cpt.painting import blend_color
from cptbench_baselines.visual_prompts import (RECLIP_BLUR_RADIUS, RED_CIRCLE_RGB, RED_CIRCLE_THICKNESS,
                                               blur_outside, box_region, crop, ellipse_outline, gaussian_blur,
                                               parse_rgb, scale_box, shade, to_model_input)

H, W = 30, 40


def textured(seed=0, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 200, size=(h, w, 3), dtype=np.uint8)


def inside(box, h=H, w=W):
    """Boolean mask of the box's pixels by the crop rule (columns round(x1) .. round(x2) - 1)."""
    m = np.zeros((h, w), dtype=bool)
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    m[max(y1, 0):min(y2, h), max(x1, 0):min(x2, w)] = True
    return m


def test_published_defaults():
    assert RECLIP_BLUR_RADIUS == 100.0  # ReCLIP --blur_std_dev
    assert RED_CIRCLE_RGB == (255, 0, 0) and RED_CIRCLE_THICKNESS == 2  # FGVP's Red Circle runs
    assert parse_rgb("240, 0,30") == (240, 0, 30)
    for bad in ("1,2", "0,0,256", "a,b,c"):
        with pytest.raises(ValueError, match="r,g,b"):
            parse_rgb(bad)


def test_crop_is_the_box_rounded_clipped_and_never_empty():
    img = textured()
    assert np.array_equal(crop(img, [5, 6, 15, 20]), img[6:20, 5:15])
    assert np.array_equal(crop(img, [5.4, 6.6, 15.5, 19.4]), img[7:19, 5:16])  # round half to even: 15.5 -> 16
    assert np.array_equal(crop(img, [5, 6, 15, 20], padding=2), img[4:22, 3:17])
    assert np.array_equal(crop(img, [-10, 25, 50, 99]), img[25:30, 0:40])  # reaching past the image: clipped
    assert crop(img, [7, 8, 7, 8]).shape == (1, 1, 3)  # zero area: one pixel
    assert box_region([7, 8, 7, 8], H, W) == (7, 8, 8, 9)
    out = crop(img, [0, 0, 40, 30])
    out[0, 0] = 255
    assert img[0, 0, 0] != 255 or img[0, 0, 1] != 255  # a copy, never a view


def test_blur_keeps_exactly_the_box_sharp():
    img = textured(1)
    box = [8, 5, 20, 17]
    out = blur_outside(img, box, radius=3)
    sharp = inside(box)
    assert np.array_equal(out[sharp], img[sharp])
    assert np.array_equal(out[~sharp], gaussian_blur(img, 3)[~sharp])
    assert (out[~sharp] != img[~sharp]).any(axis=-1).mean() > 0.9  # the outside did change
    # ReCLIP's radius 100 on a small image: the outside is nearly flat
    far = blur_outside(img, box)
    assert far[~sharp].std(axis=0).max() < 3 and np.array_equal(far[sharp], img[sharp])
    # a given blurred image is used as is (callers cache one per image)
    fake_blur = np.zeros_like(img)
    out = blur_outside(img, box, blurred=fake_blur)
    assert np.array_equal(out[sharp], img[sharp]) and not out[~sharp].any()
    # zero-area box: one sharp pixel
    out = blur_outside(img, [7, 8, 7, 8], radius=3)
    assert (out == img).all(axis=-1).sum() >= 1 and np.array_equal(out[8, 7], img[8, 7])


def test_shade_is_cpts_blend_over_the_release_box_pixels():
    img = textured(2)
    box = [10, 4, 22, 16]
    out = shade(img, box, (240, 0, 30), 127 / 255)
    covered = np.zeros((H, W), dtype=bool)
    covered[4:15, 10:21] = True  # the release's rule: int(x1) .. int(x2 - 1) - 1
    assert np.array_equal(out[covered], blend_color(img[covered], (240, 0, 30), 127 / 255))
    assert np.array_equal(out[~covered], img[~covered])
    cover = shade(img, box, (240, 0, 30), 127 / 255, box_pixels="cover")
    assert np.array_equal(cover[4:16, 10:22], blend_color(img[4:16, 10:22], (240, 0, 30), 127 / 255))
    assert np.array_equal(shade(img, [5, 5, 5, 9], (240, 0, 30), 0.5), img)  # zero area paints nothing


def test_ellipse_outline_inscribed_in_the_box():
    img = np.full((H, W, 3), 100, dtype=np.uint8)
    box = [6, 4, 30, 26]  # 24 x 22 px
    out = ellipse_outline(img, box)
    red = np.all(out == RED_CIRCLE_RGB, axis=-1)
    changed = (out != img).any(axis=-1)
    assert np.array_equal(red, changed)  # only the outline, all of it in the colour
    rows, cols = np.nonzero(red)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (4, 25, 6, 29)  # touches the box's four sides
    cy, cx = 15, 18
    assert not red[cy - 6:cy + 6, cx - 6:cx + 6].any()  # the middle is untouched
    assert not red[4:7, 6:9].any() and not red[23:26, 27:30].any()  # the box's corners are outside the ellipse
    # thickness: the outline is 2 px thick at the middle of each side, 4 px with thickness=4
    assert red[4:6, cx].all() and not red[6, cx] and red[cy, 6:8].all() and not red[cy, 8]
    thick = np.all(ellipse_outline(img, box, thickness=4) == RED_CIRCLE_RGB, axis=-1)
    assert thick[4:8, cx].all() and not thick[8, cx]
    blue = ellipse_outline(img, box, rgb=(0, 0, 255))
    assert np.array_equal(np.all(blue == (0, 0, 255), axis=-1), red)
    assert np.array_equal(img, np.full((H, W, 3), 100, dtype=np.uint8))  # the input is not changed
    # a box reaching past the image: clipped, no error
    part = ellipse_outline(img, [-10, -10, 20, 20])
    assert np.all(part == RED_CIRCLE_RGB, axis=-1).any()


def test_resize_to_the_model_input():
    img = textured(3)
    assert to_model_input(img, 16).shape == (16, 16, 3)
    assert to_model_input(img, 15, square=False).shape == (15, 20, 3)  # shorter side 30 -> 15
    assert to_model_input(textured(4, 40, 30), 15, square=False).shape == (20, 15, 3)
    same = textured(5, 16, 16)
    assert to_model_input(same, 16) is same  # already the size: unchanged
    flat = np.full((30, 40, 3), 77, dtype=np.uint8)
    assert (to_model_input(flat, 32) == 77).all()  # bicubic keeps a flat image flat
    assert scale_box([4, 6, 20, 30], (30, 40), (15, 10)).tolist() == [1, 3, 5, 15]
