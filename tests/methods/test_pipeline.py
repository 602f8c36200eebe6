"""The device pipeline of CPT (cptbench/cpt/pipeline.py, resample.py): fidelity to the reference path
(PIL/numpy paint + the Hugging Face processor), batching, numerics options, OOM back-off, auto batch
size, training caches and the benchmark."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cptbench.cpt.config import CptConfig  # noqa: E402
from cptbench.cpt.method import CptBlockMethod, CptSegMethod  # noqa: E402
from cptbench.cpt.painting import DEFAULT_ALPHA, Painter, parse_palette  # noqa: E402
from cptbench.cpt.pipeline import DevicePipeline  # noqa: E402
from cptbench.methods.numerics import (  # noqa: E402
    AUTO_CPU_BATCH, read_autobatch as _read_autobatch, remember_batch_size, resolve_precision, run_batches,
)
from cptbench.cpt.resample import AxisResampler, pil_pass_order, resize_full  # noqa: E402
from cptbench.data.examples import Example, Label, TrainExample  # noqa: E402
from cptbench.data.images import ImageSource  # noqa: E402
from cptbench.methods.base import ConfigError, MethodContext  # noqa: E402
from cptbench.models.loading import load_adapter  # noqa: E402

#: the stated tolerance: mean |pixel difference| before normalisation, in [0, 1] pixel units
TOLERANCE = 0.5 / 255


def smooth_image(rng, h, w):
    coarse = rng.integers(0, 256, (h // 6 + 2, w // 6 + 2, 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR), dtype=np.int16)
    return np.clip(img + rng.integers(-25, 26, img.shape), 0, 255).astype(np.uint8)


def make_examples(tmp_path, sizes_hw, n_boxes=7, seed=0, exprs=1):
    """One example per image (or ``exprs``), random boxes (one covering the image, some at the
    border), triangle masks except the last candidate (box fallback)."""
    rng = np.random.default_rng(seed)
    source = ImageSource()
    out = []
    for n, (h, w) in enumerate(sizes_hw):
        path = tmp_path / f"im{seed}_{n}.png"
        Image.fromarray(smooth_image(rng, h, w)).save(path)
        source.add(f"im{seed}_{n}", path)
        x0, y0 = rng.uniform(-3, w * 0.8, n_boxes), rng.uniform(-3, h * 0.8, n_boxes)
        boxes = np.stack([x0, y0, np.minimum(x0 + rng.uniform(1, w * 0.6, n_boxes), w + 2),
                          np.minimum(y0 + rng.uniform(1, h * 0.6, n_boxes), h + 2)], axis=1)
        boxes[0] = [0, 0, w, h]
        masks = tuple([[b[0], b[1], b[2], b[1], b[0], b[3]]] for b in boxes[:-1]) + (None,)
        for j in range(exprs):
            out.append(Example(example_id=f"{n}:{j}", ref_id=n, sent_id=j, image_id=n,
                               image_handle=source.handle(f"im{seed}_{n}", (w, h)), image_size=(w, h),
                               expression=f"the man on the left {j}", boxes=boxes, categories=("man",) * n_boxes,
                               masks=masks, candidate_key=f"gt:{n}"))
    return out


@pytest.fixture(scope="module")
def adapters(tiny_model_dir):
    out = {kind: load_adapter(str(tiny_model_dir(kind))) for kind in ("vilt", "flava", "bridgetower")}
    from cptbench.models.vilt import image_processor_class  # the PIL class on 5.x, the plain one on 4.x

    real = load_adapter(str(tiny_model_dir("vilt")))
    real.image_processor = image_processor_class()(size={"shortest_edge": 384}, size_divisor=32)  # vilt-b32-mlm's
    out["vilt384"] = real
    return out


def grey_levels(adapter, a, b):
    """|a - b| of two normalised pixel tensors, in grey levels (0..255) before normalisation."""
    std = torch.tensor(adapter.image_processor.image_std).view(3, 1, 1)
    return (a - b).abs() * std * 255


# ------------------------------------------------------------------------------------ resampling
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("n_in,n_out", [(640, 512), (30, 32), (50, 48), (37, 96), (427, 384)])
def test_axis_windows_equal_the_full_pass(mode, n_in, n_out):
    axis = AxisResampler.build(n_in, n_out, mode, "cpu")
    rng = np.random.default_rng(n_in)
    x = torch.from_numpy(rng.integers(0, 256, (3, 5, n_in)).astype(np.float32))
    full = axis.apply(x, 2, 0, n_out, 0)
    ref = torch.nn.functional.interpolate(x[None], size=(5, n_out), mode=mode, antialias=True)[0]
    assert (full - ref.add(0.5).floor().clamp(0, 255)).abs().max() <= 1  # torch's kernel, PIL's rounding
    for a, b in [(0, 3), (n_in // 3, n_in // 2), (n_in - 4, n_in)]:
        c0, c1 = axis.outputs_of(a, b)
        s0, s1 = axis.support(c0, c1)
        assert s0 <= a and b <= s1
        window = axis.apply(x[..., s0:s1], 2, c0, c1, s0)
        # the same weights; a float32 sum in another order may land on the other side of a .5 tie
        # (bilinear weights make ties common)
        assert (window - full[..., c0:c1]).abs().max() <= 1 and (window != full[..., c0:c1]).float().mean() < 0.05
        changed = x.clone()
        changed[..., a:b] = 255 - changed[..., a:b]
        moved = (axis.apply(changed, 2, 0, n_out, 0) != full).any(dim=0).any(dim=0)
        assert not moved[:c0].any() and not moved[c1:].any()  # nothing outside outputs_of changes


@pytest.mark.parametrize("n_in,n_out", [(640, 512), (480, 384), (37, 96), (427, 384), (300, 299)])
def test_banded_product_equals_the_dense_block(n_in, n_out):
    """The CPU band (tiles of outputs, clamped reads at the edges) gives the dense product's values
    for windows anywhere, along both dims, and a whole pass equals torch's own kernel."""
    from cptbench.cpt.resample import BAND_MIN, _banded

    axis = AxisResampler.build(n_in, n_out, "bicubic", "cpu")
    assert axis.band is not None
    rng = np.random.default_rng(n_out)
    for c0, c1 in [(0, n_out), (0, min(BAND_MIN, n_out)), (n_out // 5, n_out - 3), (max(n_out - BAND_MIN - 7, 0), n_out)]:
        s0, s1 = axis.support(c0, c1)
        s0, s1 = max(s0 - 2, 0), min(s1 + 1, n_in)  # a slab wider than the support, as painted windows are
        for dim in (1, 2):
            shape = (3, s1 - s0, 7) if dim == 1 else (3, 7, s1 - s0)
            x = torch.from_numpy(rng.integers(0, 256, shape).astype(np.float32))
            w = axis.dense[s0:s1, c0:c1]
            dense = torch.matmul(w.t(), x) if dim == 1 else torch.matmul(x, w)
            assert torch.allclose(_banded(axis.band, x, dim, c0, c1, s0), dense, atol=1e-3), (c0, c1, dim)
    x = torch.from_numpy(rng.integers(0, 256, (3, n_in, 5)).astype(np.float32))
    ref = torch.nn.functional.interpolate(x[None], size=(n_out, 5), mode="bicubic", antialias=True)[0]
    assert (axis.apply(x, 1, 0, n_out, 0) - ref.add(0.5).floor().clamp(0, 255)).abs().max() <= 1


@pytest.mark.parametrize("hw,out", [((480, 640), (384, 512)), ((50, 30), (48, 32)), ((30, 50), (32, 48)),
                                    ((100, 100), (50, 200))])
def test_full_resize_matches_pil_in_its_pass_order(hw, out):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (*hw, 3), dtype=np.uint8)
    order = pil_pass_order(*hw, *out, "bicubic")
    x = torch.from_numpy(img).permute(2, 0, 1).float()
    h_axis, v_axis = AxisResampler.build(hw[1], out[1], "bicubic", "cpu"), AxisResampler.build(hw[0], out[0], "bicubic", "cpu")
    pil = torch.from_numpy(np.asarray(Image.fromarray(img).resize(out[::-1], Image.BICUBIC), np.float32)).permute(2, 0, 1)
    for use_interpolate in (True, False):
        _, r = resize_full(x, h_axis, v_axis, order, use_interpolate)
        assert (r - pil).abs().mean() < 1e-3 and (r - pil).abs().max() <= 1


# ------------------------------------------------------------------------------------ fidelity
CASES = [("vilt", [(40, 60), (50, 30), (20, 20), (33, 97)]), ("flava", [(40, 60), (50, 30)]),
         ("bridgetower", [(40, 60), (50, 30), (100, 41)]), ("vilt384", [(480, 640), (427, 640)])]


@pytest.mark.parametrize("kind,sizes", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("mode,palette", [("block", "red"), ("block", "release5"), ("mask", "release5")])
def test_pixels_match_the_reference_path(adapters, tmp_path, kind, sizes, mode, palette):
    """The stated tolerance: mean |diff| < 0.5/255 of the [0, 1] pixel range before normalising;
    what the pipeline reaches is far below it (a float32 sum now and then rounds the other way)."""
    adapter = adapters[kind]
    painter = Painter(parse_palette(palette), DEFAULT_ALPHA, mode, adapter.prepare_image)
    pipe = DevicePipeline(adapter, painter, "cpu", "fp32")
    diffs = []
    for ex in make_examples(tmp_path, sizes):
        for g in range(len(painter.groups(ex))):
            ref = painter.prepared(ex, g)["pixel_values"]
            mine = pipe.build_copy(ex, g)
            assert mine.shape == ref.shape
            d = grey_levels(adapter, mine, ref)
            assert d.max() <= 2
            diffs.append(float(d.mean()))
    assert np.mean(diffs) / 255 < TOLERANCE / 100
    assert pipe.stats["images_uploaded"] == len(sizes)  # each image uploaded once for all its copies


def test_painting_is_bit_exact_when_no_resize_is_needed(adapters, tmp_path):
    adapter = adapters["vilt"]  # shortest edge 32, divisor 8: a 32x48 image is already the processed size
    for alpha in (DEFAULT_ALPHA, 0.3, 0.5):
        painter = Painter(parse_palette("release5"), alpha, "mask", adapter.prepare_image)
        pipe = DevicePipeline(adapter, painter, "cpu", "fp32")
        for ex in make_examples(tmp_path, [(32, 48)], n_boxes=9, seed=2):
            for g in range(2):
                assert grey_levels(adapter, pipe.build_copy(ex, g), painter.prepared(ex, g)["pixel_values"]).max() < 1e-3


@pytest.mark.parametrize("rule", ["release", "cover"])
def test_block_regions_follow_the_reference_box_rule(adapters, tmp_path, rule):
    adapter = adapters["vilt"]
    painter = Painter(parse_palette("red"), DEFAULT_ALPHA, "block", adapter.prepare_image, box_pixels=rule)
    pipe = DevicePipeline(adapter, painter, "cpu", "fp32")
    (ex,) = make_examples(tmp_path, [(40, 60)], n_boxes=12)
    regions = pipe._region_set(ex, pipe._entry(ex))
    expected = painter.region_masks(ex, range(ex.n_candidates), 40, 60)
    for r, m in zip(regions, expected):
        drawn = np.zeros((40, 60), bool)
        drawn[r.y0:r.y1, r.x0:r.x1] = not r.empty
        assert np.array_equal(drawn, m)


# ------------------------------------------------------------------------------------ batches
@pytest.mark.parametrize("kind", ["vilt", "flava", "bridgetower"])
def test_batches_send_each_copy_once_and_give_the_reference_logits(adapters, tmp_path, kind):
    adapter = adapters[kind]
    painter = Painter(parse_palette("red"), DEFAULT_ALPHA, "block", adapter.prepare_image)
    pipe = DevicePipeline(adapter, painter, "cpu", "fp32")
    examples = make_examples(tmp_path, [(40, 60), (50, 30)], n_boxes=3, exprs=2)
    pairs = [(ex, g) for ex in examples for g in range(2)]  # each copy twice (two expressions)
    m = adapter.mask_token
    texts = [f"the man on the left {i % 3} is in {m} color." for i in range(len(pairs))]
    images = pipe.images(pairs)
    assert images["pixel_values"].shape[0] == 4 and images["pass_index"].tolist() == [0, 1, 0, 1, 2, 3, 2, 3]
    columns = pipe.columns([adapter.word_id("red"), adapter.word_id("none")])
    with torch.no_grad():
        mine = pipe.forward(images, pipe.text(texts), columns)
        ref = adapter.mask_logits(adapter.collate([painter.prepared(ex, g) for ex, g in pairs]), texts)[:, columns]
        full = pipe.forward(images, pipe.text(texts))
    assert torch.allclose(mine, ref, atol=1e-4, rtol=1e-4)
    assert torch.allclose(full[:, columns], mine, atol=1e-5, rtol=1e-5)  # only the needed columns: the same values
    again = pipe.images(pairs)  # the next batch reuses the previous batch's copies
    assert pipe.stats["copies_reused"] == 4 and torch.equal(again["pixel_values"], images["pixel_values"])


@pytest.mark.parametrize("kind", ["vilt", "bridgetower"])
def test_text_arrays_equal_the_tokenizers_batch(adapters, kind):
    a = adapters[kind]
    texts = [f"dog is in {a.mask_token} color.", f"the man on the left in the red shirt is in {a.mask_token} color."]
    arrays = a.text_arrays([a.encode_text(t) for t in texts])
    enc = a.tokenizer(texts, padding=True, return_tensors="np")
    for name in enc:
        assert np.array_equal(arrays[name], enc[name]), name
    assert [int(r[c]) for r, c in zip(arrays["input_ids"], arrays["mask_col"])] == [a.mask_token_id] * 2


def test_vilt_layout_from_host_sizes_equals_the_pixel_mask_one(adapters, tmp_path):
    a = adapters["vilt"]
    prepared = [a.prepare_image(np.zeros(hw + (3,), np.uint8)) for hw in [(40, 60), (50, 30), (20, 20)]]
    batch = a.collate(prepared)
    hw = np.array([p["pixel_values"].shape[-2:] for p in prepared])
    with torch.no_grad():
        seq_mask, mask_mask, cells, grids, _ = a._image_tokens(batch)
        seq_hw, mask_hw, cells_hw, grids_hw, _ = a._image_tokens({"pixel_values": batch["pixel_values"], "image_hw": hw})
    assert torch.equal(mask_mask, mask_hw) and np.array_equal(cells, cells_hw) and np.array_equal(grids, grids_hw)
    assert torch.allclose(seq_mask, seq_hw)
    assert grids.tolist() == [[4, 6], [6, 4], [4, 4]] and mask_mask.sum(dim=1).tolist() == [25, 25, 17]


# ------------------------------------------------------------------------------------ method level
def test_predictions_agree_with_the_reference_on_synthref(synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest
    from cptbench.results.store import ResultsStore
    from cptbench.tasks.cards import get_task

    task = get_task("synthref")
    runner = Runner(RunRequest(tasks=[task], methods=["cpt"], shots=[0]), ResultsStore(synthref_cache / "results"))
    examples = runner.session.split(task, "val", "gt").examples[:48]
    out = {}
    for pipeline in ("device", "reference"):
        m = CptBlockMethod(CptConfig(template=1, palette="release5", pipeline=pipeline),
                           MethodContext(model="bundled:mini-vilt", eval_batch_size=16))
        out[pipeline] = m.predict(examples)
        assert m.describe()["pipeline"] == pipeline and m.perf_info()["pipeline"] == pipeline
    picks = [(int(np.argmax(a)), int(np.argmax(b))) for a, b in zip(out["device"], out["reference"])]
    assert np.mean([p == q for p, q in picks]) >= 0.99
    assert max(float(np.abs(a - b).max()) for a, b in zip(out["device"], out["reference"])) < 1e-3


def test_options_enter_config_and_records(tiny_model_dir):
    with pytest.raises(ValueError, match="pipeline must be one of device, reference"):
        CptConfig(pipeline="gpu")
    with pytest.raises(ValueError, match="precision must be one of auto, fp32, bf16"):
        CptConfig(precision="fp16")
    assert resolve_precision("auto", "cuda:0") == "bf16" and resolve_precision("auto", "cpu") == "fp32"
    m = CptBlockMethod(CptConfig(), MethodContext(model=str(tiny_model_dir("vilt"))))
    assert (m.describe()["pipeline"], m.describe()["precision"]) == ("device", "fp32")  # known before loading
    from cpt_fakes import OracleAdapter

    oracle = CptBlockMethod.with_adapter(OracleAdapter(parse_palette("red")))
    assert oracle.describe()["pipeline"] == "reference"  # a stand-in adapter has no device path


def test_unreproducible_processor_is_refused_with_the_fix(tiny_model_dir):
    a = load_adapter(str(tiny_model_dir("vilt")))
    a.image_processor.resample = 1  # LANCZOS
    with pytest.raises(ConfigError, match="pipeline=reference"):
        CptBlockMethod.with_adapter(a).setup()
    CptBlockMethod.with_adapter(a, CptConfig(pipeline="reference")).setup()


def test_out_of_memory_halves_the_batch_and_loses_nothing():
    oom = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    sizes, seen, told = [], [], []

    def forward(chunk):
        sizes.append(len(chunk))
        if len(chunk) > 3:
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.tensor([[float(i)] for i in chunk])

    final = run_batches(list(range(21)), 16, lambda c: c, forward, lambda c, a: seen.extend(zip(c, a[:, 0])),
                        device="cpu", precision="fp32", on_batch_size=told.append)
    assert final == 2 and told == [8, 4, 2] and sizes[:4] == [16, 8, 4, 2]
    assert [i for i, _ in seen] == list(range(21)) and all(i == v for i, v in seen)
    with pytest.raises(ValueError):
        run_batches([1, 2], 2, lambda c: c, lambda c: (_ for _ in ()).throw(ValueError("other")), lambda c, a: None,
                    device="cpu", precision="fp32")


def test_out_of_memory_on_the_device_path_counts_each_pass_once_and_the_halving_holds(tmp_path, tiny_model_dir):
    oom = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    examples = make_examples(tmp_path, [(40, 60), (50, 30)], n_boxes=3, exprs=2)
    m = CptBlockMethod(CptConfig(), MethodContext(model=str(tiny_model_dir("vilt")), eval_batch_size=8))
    m.setup()
    pipe, rows = m._pipeline, []
    real = pipe.forward

    def forward(images, text, columns=None):
        n = int(images["pass_index"].shape[0])
        rows.append(n)
        if n > 3:
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(images, text, columns)

    pipe.forward = forward
    m.predict(examples)
    assert rows[:3] == [8, 4, 2] and m.perf_info()["eval_batch_size"] == 2
    done = [n for n in rows if n <= 3]
    assert pipe.stats["passes"] == 3 * len(examples) == sum(done) and pipe.stats["batches"] == len(done)
    rows.clear()
    m.predict(examples)  # the next call starts at the halved size
    assert rows and max(rows) <= 2 and pipe.stats["passes"] == 6 * len(examples)


def test_release_training_restores_the_image_cache_and_fit_releases_on_error(tmp_path, tiny_model_dir):
    adapter = load_adapter(str(tiny_model_dir("vilt")))
    painter = Painter(parse_palette("red"), DEFAULT_ALPHA, "block", adapter.prepare_image)
    pipe = DevicePipeline(adapter, painter, "cpu", "fp32", image_cache=1)
    examples = make_examples(tmp_path, [(40, 60), (50, 30), (30, 30)], n_boxes=2)
    pipe.keep_for_training(examples)
    for ex in examples:
        pipe.build_copy(ex, 0)
    assert pipe._image_cap == 3 and len(pipe._images) == 3
    pipe.release_training()
    assert pipe._image_cap == 1 and len(pipe._images) == 1 and pipe._kept is None  # no k-shot images left behind

    m = CptBlockMethod(CptConfig(steps=2), MethodContext(model=str(tiny_model_dir("vilt")), eval_batch_size=2))
    m.setup()
    m._pipeline.forward = lambda *a, **k: (_ for _ in ()).throw(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        m.fit([TrainExample(ex, Label(ex.example_id, ex.boxes[1])) for ex in examples], seed=0)
    assert m._pipeline._kept is None and m._pipeline._image_cap == m._pipeline._base_image_cap


def test_axis_resamplers_are_bounded(adapters, monkeypatch):
    import cptbench.cpt.device_images as pipeline

    monkeypatch.setattr(pipeline, "AXIS_CACHE", 2)
    a = adapters["vilt"]
    pipe = DevicePipeline(a, Painter(parse_palette("red"), DEFAULT_ALPHA, "block", a.prepare_image), "cpu", "fp32")
    first = pipe._axis(40, 32)
    pipe._axis(50, 32)
    assert pipe._axis(40, 32) is first  # a hit, now the most recent
    pipe._axis(60, 32)
    assert list(pipe._axes) == [(40, 32), (60, 32)]


@pytest.mark.parametrize("device,hint", [("cdua", "not a torch device"), ("cuda:5", "CUDA"), ("mps", "MPS")])
def test_bench_refuses_an_unusable_device_before_building_anything(device, hint):
    from click.testing import CliRunner

    from cptbench.cli.main import cli
    from cptbench.run.device import check_device
    from cptbench.core.errors import UsageError

    if device == "mps" and getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    with pytest.raises(UsageError, match=hint):
        check_device(device)
    res = CliRunner().invoke(cli, ["bench", "--model", "tiny", "--device", device])
    assert res.exit_code == 2 and f"--device {device}" in res.output and "Traceback" not in res.output


def test_auto_batch_size(tmp_path, monkeypatch, tiny_model_dir):
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path))
    remember_batch_size("model|gpu|384x512", 256)
    remember_batch_size("other", 64)
    assert _read_autobatch() == {"model|gpu|384x512": 256, "other": 64}
    (ex,) = make_examples(tmp_path, [(40, 60)], n_boxes=2)
    m = CptBlockMethod(CptConfig(), MethodContext(model=str(tiny_model_dir("vilt")), eval_batch_size="auto"))
    m.predict([ex])
    assert m.perf_info()["eval_batch_size"] == AUTO_CPU_BATCH  # CPU: the documented default, no probing


def test_few_shot_training_paints_each_copy_once(tmp_path, tiny_model_dir):
    train = [TrainExample(ex, Label(ex.example_id, ex.boxes[1])) for ex in make_examples(tmp_path, [(40, 60), (50, 30)], n_boxes=4)]
    results = {}
    for pipeline in ("device", "reference"):
        m = CptBlockMethod(CptConfig(steps=6, lr=1e-3, pipeline=pipeline),
                           MethodContext(model=str(tiny_model_dir("vilt")), eval_batch_size=2))
        m.fit(train, seed=0)
        results[pipeline] = m.train_result.losses
        if pipeline == "device":
            stats = m._pipeline.stats
            assert stats["images_uploaded"] == 2
            assert stats["painted_copies"] <= 8 and stats["copies_reused"] > 0  # 2 images x 4 groups at most
            assert m._pipeline._kept is None  # released after the fit
    assert np.allclose(results["device"], results["reference"], rtol=1e-3, atol=1e-4)


def test_cpt_seg_method_end_to_end_on_the_device_path(tmp_path, tiny_model_dir):
    examples = make_examples(tmp_path, [(40, 60), (50, 30)], n_boxes=6, exprs=2)
    scores = {}
    for pipeline in ("device", "reference"):
        m = CptSegMethod(CptConfig(palette="release5", pipeline=pipeline),
                         MethodContext(model=str(tiny_model_dir("vilt")), eval_batch_size=3))
        scores[pipeline] = m.predict(examples)
        assert m.take_counters()["passes"] == 2 * len(examples)
    assert all(np.allclose(a, b, atol=1e-4) for a, b in zip(scores["device"], scores["reference"]))


def test_prefetch_decodes_each_image_once(tmp_path):
    import time

    from cptbench.data.images import prefetch_handles

    examples = make_examples(tmp_path, [(20, 30), (30, 20), (25, 25)], n_boxes=2, exprs=3, seed=7)
    source = examples[0].image_handle._source
    examples[0].image()  # decoded and cached before any prefetch
    for _ in range(3):
        prefetch_handles(ex.image_handle for ex in examples)
    deadline = time.time() + 10
    while len(source.decodes) < 3 and time.time() < deadline:
        time.sleep(0.01)
    for ex in examples:
        ex.image()
    assert source.decodes == {f"im7_{i}": 1 for i in range(3)}


# ------------------------------------------------------------------------------------ benchmark
def test_benchmark_reports_every_figure(tmp_path):
    from click.testing import CliRunner

    from cptbench.cli.main import cli

    out = tmp_path / "bench.json"
    res = CliRunner().invoke(cli, ["bench", "--model", "tiny", "--images", "2", "--forward-images", "1",
                                   "--image-size", "96", "64", "--json", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads(out.read_text())
    null, fwd = data["null"], data["forward"]
    assert null["forward"] == "null" and null["passes"] > 0 and null["decodes_per_image"] == 1.0
    assert 0 < fwd["forward_share"] < 1 and fwd["passes_per_s"] > 0 and null["painted_copies_per_image"] >= 8
    assert null["bytes_to_device_per_pass"] > 0 and data["peak_host_mib_process"] > 0
    assert "peak_host_mib" not in null and "peak_host_mib" not in fwd  # a process peak is not a per-run figure
    assert "passes/s" in res.output and data["machine"]["torch"] == torch.__version__


# ------------------------------------------------------------------------------------ CUDA (when lent one)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_pipeline_matches_cpu_and_bf16_agrees(adapters, tmp_path, synthref_cache, monkeypatch):
    """On a GPU: the same pixels as on the CPU, and bf16 autocast picks what fp32 picks on almost
    every synthref expression with the bundled model."""
    adapter = adapters["vilt384"]
    painter = Painter(parse_palette("release5"), DEFAULT_ALPHA, "mask", adapter.prepare_image)
    cpu, gpu = DevicePipeline(adapter, painter, "cpu", "fp32"), DevicePipeline(adapter, painter, "cuda", "bf16")
    for ex in make_examples(tmp_path, [(480, 640), (50, 30)]):
        for g in range(len(painter.groups(ex))):
            assert grey_levels(adapter, gpu.build_copy(ex, g).cpu(), cpu.build_copy(ex, g)).max() <= 1
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest
    from cptbench.results.store import ResultsStore
    from cptbench.tasks.cards import get_task

    task = get_task("synthref")
    runner = Runner(RunRequest(tasks=[task], methods=["cpt"], shots=[0]), ResultsStore(synthref_cache / "results-cuda"))
    examples = runner.session.split(task, "val", "gt").examples
    picks = {}
    for precision in ("fp32", "bf16"):
        m = CptBlockMethod(CptConfig(template=1, precision=precision),
                           MethodContext(model="bundled:mini-vilt", device="cuda", eval_batch_size=64))
        picks[precision] = [int(np.argmax(s)) for s in m.predict(examples)]
        assert m.describe()["precision"] == precision and m.perf_info()["pipeline"] == "device"
    assert np.mean([a == b for a, b in zip(picks["fp32"], picks["bf16"])]) >= 0.95
