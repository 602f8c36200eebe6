"""Boxes the default data policy keeps, in the methods: a box reaching past the image is painted
clipped (numpy reference and device path alike), a zero-area box paints nothing; the fine-tuning
pooling, the heuristics and an end-to-end CPT / ft run do not break on such boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

torch = pytest.importorskip("torch")

from cptbench.cpt.painting import DEFAULT_ALPHA, Painter, blend_color, box_masks, parse_palette  # noqa: E402
from cptbench.cpt.pipeline import DevicePipeline  # noqa: E402
from cptbench.data.examples import Example  # noqa: E402
from cptbench.data.images import file_image  # noqa: E402
from cptbench.models.loading import load_adapter  # noqa: E402

H, W = 32, 48  # already ViLT's processed size at the tiny model's 32 px shortest edge: no resize
RED = (240, 0, 30)

#: xywh boxes reaching 40 px past a border, as detectors' boxes do
PAST = [(-40.5, 5.0, 52.0, 9.0), (20.0, -40.0, 68.0, 50.0), (30.5, 20.25, 57.5, 51.0)]
#: zero-area boxes: zero width at a fractional x, zero height, zero width on the border
ZERO = [(10.5, 4.0, 0.0, 12.0), (3.0, 7.3, 15.0, 0.0), (48.0, 0.0, 0.0, 32.0)]


def noise(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def xyxy(b):
    x, y, w, h = b
    return [x, y, x + w, y + h]


def release_pixels(b, rule):
    """The painted pixels written out independently: the release converts xywh to x2 = x + w - 1,
    truncates, and its paste clips to the image (here numpy slicing with the start held at 0);
    ``cover`` takes every touched pixel. Zero area paints nothing."""
    x, y, w, h = b
    m = np.zeros((H, W), bool)
    if w <= 0 or h <= 0:
        return m
    if rule == "release":
        c0, c1, r0, r1 = int(x), int(x + w - 1), int(y), int(y + h - 1)
    else:
        c0, c1, r0, r1 = int(np.floor(x)), int(np.ceil(x + w)), int(np.floor(y)), int(np.ceil(y + h))
    m[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = True
    return m


def example(tmp_path, img, boxes, masks=(), key="det:1"):
    path = tmp_path / f"img-{abs(hash(key)) % 10**6}.png"
    Image.fromarray(img).save(path)
    boxes = np.array([xyxy(b) for b in boxes], float).reshape(-1, 4)
    return Example(example_id="1:1", ref_id=1, sent_id=1, image_id=1, image_handle=file_image(path, (W, H)),
                   image_size=(W, H), expression="the man on the left", boxes=boxes, categories=("man",) * len(boxes),
                   masks=tuple(masks) or (None,) * len(boxes), candidate_key=key)


@pytest.mark.parametrize("rule", ["release", "cover"])
@pytest.mark.parametrize("box", PAST + ZERO)
def test_reference_painting_clips_and_zero_area_paints_nothing(tmp_path, rule, box):
    img = noise(1)
    m = box_masks([xyxy(box)], H, W, rule)[0]
    assert np.array_equal(m, release_pixels(box, rule))
    out = Painter(parse_palette("red"), DEFAULT_ALPHA, "block", lambda a: a, box_pixels=rule).painted(
        example(tmp_path, img, [box]), 0)
    assert np.array_equal(out[m], blend_color(img[m], RED)) and np.array_equal(out[~m], img[~m])
    if box in ZERO:
        assert not m.any() and np.array_equal(out, img)
    else:
        assert m.any() and (m[:, 0].any() or m[0].any() or m[:, -1].any() or m[-1].any())  # reaches the border


def test_zero_area_paints_nothing_in_mask_mode_whatever_its_segmentation(tmp_path):
    img = noise(2)
    seg = [[3.0, 7.3, 18.0, 7.3, 18.0, 9.0, 3.0, 9.0]]  # a polygon that would cover pixels
    ex = example(tmp_path, img, [ZERO[1], PAST[0]], masks=(seg, None))
    painter = Painter(parse_palette("release5"), DEFAULT_ALPHA, "mask", lambda a: a)
    regions = painter.region_masks(ex, [0, 1], H, W)
    assert not regions[0].any() and np.array_equal(regions[1], release_pixels(PAST[0], "release"))


@pytest.fixture(scope="module")
def vilt(tiny_model_dir):
    return load_adapter(str(tiny_model_dir("vilt")))


@pytest.mark.parametrize("mode,rule", [("block", "release"), ("block", "cover"), ("mask", "release")])
def test_device_path_paints_the_same_pixels(vilt, tmp_path, mode, rule):
    img = noise(3)
    boxes = PAST + ZERO
    masks = tuple([[b[0], b[1], b[0] + b[2], b[1], b[0], b[1] + b[3]]] for b in boxes[:2]) + (None,) * (len(boxes) - 2)
    ex = example(tmp_path, img, boxes, masks)
    for palette in ("red", "release5"):
        painter = Painter(parse_palette(palette), DEFAULT_ALPHA, mode, vilt.prepare_image, box_pixels=rule)
        pipe = DevicePipeline(vilt, painter, "cpu", "fp32")
        std = torch.tensor(vilt.image_processor.image_std).view(3, 1, 1)
        for g in range(len(painter.groups(ex))):
            ref = painter.prepared(ex, g)["pixel_values"]
            mine = pipe.build_copy(ex, g)
            assert mine.shape == ref.shape and float(((mine - ref).abs() * std * 255).max()) < 1e-3
        regions = pipe._region_set(ex, pipe._entry(ex))
        assert all(r.empty for r in regions[len(PAST):])  # zero area: nothing to paint
        assert all(0 <= r.y0 <= r.y1 <= H and 0 <= r.x0 <= r.x1 <= W for r in regions)  # clipped
    # a group holding only a zero-area candidate is the unpainted image
    painter = Painter(parse_palette("red"), DEFAULT_ALPHA, "block", vilt.prepare_image)
    pipe = DevicePipeline(vilt, painter, "cpu", "fp32")
    assert np.array_equal(painter.painted(ex, len(PAST)), img)
    plain = vilt.prepare_image(img)["pixel_values"]
    copy = pipe.build_copy(ex, len(PAST))
    assert float(((copy - plain.reshape(copy.shape)).abs() * std * 255).max()) < 1e-3


def test_pooling_and_geometry_stay_finite_on_such_boxes():
    from cptbench_baselines.region_pool import box_geometry, overlap_weights, pad_boxes

    # a 2 x 3 grid of 16 px patches over the 48 x 32 image
    patches = torch.tensor([[c * 16, r * 16, c * 16 + 16, r * 16 + 16] for r in range(2) for c in range(3)], dtype=torch.float32)
    boxes, valid = pad_boxes([np.array([xyxy(b) for b in PAST + ZERO])])
    weights, fallback = overlap_weights(patches[None], torch.ones(1, 6, dtype=torch.bool), boxes, valid)
    assert torch.isfinite(weights).all() and torch.allclose(weights.sum(-1), torch.ones(1, 6, dtype=weights.dtype))
    assert fallback[0].tolist() == [False] * 3 + [True] * 3  # zero area: the nearest patch(es)
    geom = box_geometry(boxes, torch.tensor([[W, H]], dtype=torch.float32))
    assert torch.isfinite(geom).all() and (geom[0, 3:, 6] == 0).all()  # zero area


def test_heuristics_score_such_boxes(tmp_path):
    from cptbench_baselines.heuristics import LargestBox, MostCentral, SmallestBox

    ex = example(tmp_path, noise(4), PAST + ZERO)
    for cls in (LargestBox, SmallestBox, MostCentral):
        s = cls.score(cls.__new__(cls), ex)
        assert s.shape == (6,) and np.isfinite(s).all()


def test_cpt_and_ft_run_end_to_end_on_data_with_such_boxes(tiny_model_dir, tmp_path, monkeypatch):
    from cptbench.cli.main import cli
    from refer_fixture import write_refer_fixture, write_task_card

    root = write_refer_fixture(tmp_path / "d", size=(W, H))
    p = root / "toyref" / "instances.json"
    data = json.loads(p.read_text())
    for i, a in enumerate(data["annotations"]):
        if i % 3 == 2:  # a candidate no ref points to: 40 px past the right border, or zero height
            a["bbox"] = [30.0, 2.0, 58.0, 12.0] if a["image_id"] % 2 else [5.0, 20.0, 12.0, 0.0]
    p.write_text(json.dumps(data))
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    r = CliRunner().invoke(cli, ["run", "-t", "toyref", "--data-root", str(root), "-m", "cpt,cpt-seg,ft,ft-head",
                                 "-k", "1", "--seeds", "0", "--split", "val", "--model", str(tiny_model_dir("vilt")),
                                 "--set", "steps=2", "--results", str(tmp_path / "res"), "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    recs = [json.loads(x) for x in (tmp_path / "res" / "runs.jsonl").read_text().splitlines()]
    assert len(recs) == 4 and all(x["data_policy"] == "release" and x["n"] == 12 for x in recs)
    assert all(x["n_kept"]["candidates_outside"] + x["n_kept"]["candidates_zero_area"] == 3 for x in recs)
