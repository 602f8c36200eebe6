"""Adapters over tiny random ViLT / FLAVA / BridgeTower models (offline, CPU, small)."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from cptbench.models.base import ModelVocabularyError, TextTooLongError  # noqa: E402
from cptbench.models.loading import UnsupportedModelError, load_adapter, resolve_model_path  # noqa: E402

KINDS = ("vilt", "flava", "bridgetower")
SIZES_HW = ((40, 60), (50, 30))  # two images of different sizes and aspect ratios


def _images(seed: int = 0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES_HW]


def _texts(adapter):
    m = adapter.mask_token
    return [f"the man on the left is in {m} color.", f"dog is in {m} color."]


@pytest.fixture(scope="module")
def adapters(tiny_model_dir):
    return {kind: load_adapter(str(tiny_model_dir(kind))) for kind in KINDS}


def _batch(adapter, images=None):
    return adapter.collate([adapter.prepare_image(im) for im in (images or _images())])


def _sizes_wh(images=None):
    return [(im.shape[1], im.shape[0]) for im in (images or _images())]


# -- every kind -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_mask_logits_shape_and_determinism(adapters, kind):
    a = adapters[kind]
    batch = _batch(a)
    with torch.no_grad():
        first = a.mask_logits(batch, _texts(a))
        rng_before = torch.get_rng_state()
        second = a.mask_logits(batch, _texts(a))
        assert torch.equal(rng_before, torch.get_rng_state()), "a forward must not consume the global RNG"
    assert first.shape == (2, len(a.tokenizer))  # the tiny models' vocabulary is the tokenizer's
    assert torch.isfinite(first).all()
    assert torch.allclose(first, second, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", KINDS)
def test_word_id(adapters, kind):
    a = adapters[kind]
    ids = {w: a.word_id(w) for w in ("red", "blue", "yellow", "purple", "green", "none")}
    assert len(set(ids.values())) == 6
    # the id is the token the colour word has inside the CPT template
    enc = a.tokenizer("the dog is in red color.")["input_ids"]
    assert ids["red"] in enc
    with pytest.raises(ModelVocabularyError) as err:
        a.word_id("reddish")
    assert "reddish" in str(err.value) and a.model_name in str(err.value)
    if kind != "bridgetower":  # byte-level BPE has no unknown words
        with pytest.raises(ModelVocabularyError, match="unknown"):
            a.word_id("r\u20acd")


@pytest.mark.parametrize("kind", KINDS)
def test_text_errors(adapters, kind):
    a = adapters[kind]
    batch = _batch(a)
    long_text = " ".join(["man"] * (a.max_text_length + 5)) + f" is in {a.mask_token} color."
    with pytest.raises(TextTooLongError, match=str(a.max_text_length)):
        a.mask_logits(batch, [long_text, _texts(a)[1]])
    n = 1
    while a.count_tokens(" ".join(["man"] * (n + 1)) + f" {a.mask_token}") + a.num_special_tokens <= a.max_text_length:
        n += 1
    fits = " ".join(["man"] * n) + f" {a.mask_token}"
    assert a.count_tokens(fits) + a.num_special_tokens == a.max_text_length  # exactly at the limit
    with torch.no_grad():
        a.mask_logits(batch, [fits, fits])
    with pytest.raises(ValueError, match="exactly one"):
        a.mask_logits(batch, ["no mask here", _texts(a)[1]])
    with pytest.raises(ValueError, match="exactly one"):
        a.mask_logits(batch, [f"{a.mask_token} and {a.mask_token}", _texts(a)[1]])
    with pytest.raises(ValueError, match="texts for a batch"):
        a.mask_logits(batch, _texts(a)[:1])
    m = a.mask_token
    for text, error in ((long_text, TextTooLongError), ("no mask here", ValueError), (f"{m} and {m}", ValueError)):
        with pytest.raises(error) as batched:
            a.mask_logits(batch, [text, _texts(a)[1]])
        with pytest.raises(error) as single:
            a.encode_text(text)
        assert str(single.value) == str(batched.value)  # one check, one message, batched or one text
    assert a.encode_text("no mask here", need_mask=False).mask_col is None


@pytest.mark.parametrize("kind", KINDS)
def test_region_features_shapes(adapters, kind):
    a = adapters[kind]
    batch = _batch(a)
    with torch.no_grad():
        rf = a.region_features(batch, _texts(a), _sizes_wh())
    b, p, h = rf.patches.shape
    assert (b, h) == (2, a.hidden_size)
    assert rf.patch_boxes.shape == (2, p, 4)
    assert rf.patch_valid.shape == (2, p) and rf.patch_valid.dtype == torch.bool
    assert rf.pooled.shape == (2, a.hidden_size)
    assert torch.all(rf.patches[~rf.patch_valid] == 0)
    assert torch.all(rf.patch_boxes[~rf.patch_valid] == 0)
    for i, (w, hgt) in enumerate(_sizes_wh()):
        boxes = rf.patch_boxes[i][rf.patch_valid[i]]
        assert torch.all(boxes[:, 0] >= 0) and torch.all(boxes[:, 1] >= 0)
        assert torch.all(boxes[:, 2] <= w + 1e-4) and torch.all(boxes[:, 3] <= hgt + 1e-4)
        assert torch.all(boxes[:, 2] > boxes[:, 0]) and torch.all(boxes[:, 3] > boxes[:, 1])
    with pytest.raises(ValueError, match="original"):
        a.region_features(batch, _texts(a), [(10, 10), (30, 50)])


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_image_side(adapters, tiny_model_dir, kind):
    a = load_adapter(str(tiny_model_dir(kind)))  # a private copy: this test writes gradients
    logits = a.mask_logits(_batch(a), _texts(a))
    logits[:, a.word_id("red")].sum().backward()
    grads = [p.grad for n, p in a.model.named_parameters() if "patch" in n and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


# -- ViLT -------------------------------------------------------------------------------------------

def _tiles(boxes: torch.Tensor, w: int, h: int) -> bool:
    """Boxes cover [0, w] x [0, h] exactly once (rasterised on a 1/2-pixel grid)."""
    cover = np.zeros((2 * h, 2 * w), dtype=np.int32)
    for x0, y0, x1, y1 in (boxes.double() * 2).round().long().tolist():
        cover[y0:y1, x0:x1] += 1
    return bool((cover == 1).all())


def test_vilt_patch_boxes_tile_each_image(adapters):
    a = adapters["vilt"]
    ps = a.patch_size  # 8 px at the tiny model's 32 px shortest edge
    with torch.no_grad():
        rf = a.region_features(_batch(a), _texts(a), _sizes_wh())
    # 40x60 (HxW) -> resized 32x48 -> 4x6 patches; 50x30 -> 53x32 -> 48x32 (rounded to 8) -> 6x4
    assert rf.patch_valid.sum(dim=1).tolist() == [24, 24]
    for i, (w, h) in enumerate(_sizes_wh()):
        boxes = rf.patch_boxes[i][rf.patch_valid[i]]
        assert _tiles(boxes, w, h)
        assert len({tuple(b) for b in boxes.tolist()}) == len(boxes)
    # first image: column width 60/6 = 10 px, row height 40/4 = 10 px, row-major order
    assert torch.allclose(rf.patch_boxes[0][:2], torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10]]))
    assert ps == 8

    # a small image in a batch with a big one: only its own grid is valid
    small = np.full((20, 20, 3), 128, dtype=np.uint8)
    big = _images()[0]
    with torch.no_grad():
        rf = a.region_features(_batch(a, [small, big]), _texts(a), [(20, 20), (60, 40)])
    assert rf.patch_valid.sum(dim=1).tolist() == [16, 24]
    assert _tiles(rf.patch_boxes[0][rf.patch_valid[0]], 20, 20)


def test_vilt_matches_native_forward(adapters):
    """The adapter's own image tokens give the same logits as ViltForMaskedLM's sampling path."""
    a = adapters["vilt"]
    batch = _batch(a)
    texts = _texts(a)
    enc = a.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(123)
        native = a.model(**enc, pixel_values=batch["pixel_values"], pixel_mask=batch["pixel_mask"]).logits
        mine = a.mask_logits(batch, texts)
    native_at_mask = native[enc["input_ids"] == a.mask_token_id]
    assert torch.allclose(mine, native_at_mask, atol=1e-5, rtol=1e-5)


def _encoder_input_tokens(adapter, batch, texts):
    """The encoder's input (embeddings) for the image tokens, captured with a forward pre-hook."""
    seen = {}

    def hook(module, args, kwargs):
        seen["x"] = (args[0] if args else kwargs["hidden_states"]).detach().clone()

    handle = adapter.model.vilt.encoder.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.no_grad():
            rf = adapter.region_features(batch, texts, [(int(s[1]), int(s[0])) for s in batch["original_size"]])
    finally:
        handle.remove()
    text_len = adapter.tokenizer(list(texts), padding=True, return_tensors="pt")["input_ids"].shape[1]
    return seen["x"][:, text_len + 1:], rf


def test_vilt_token_to_patch_mapping(adapters):
    """Perturb the pixels of one patch box: the image token that changes most is the one whose
    box it is (checked for several patches, including in the padded second image)."""
    a = adapters["vilt"]
    images = _images(1)
    texts = _texts(a)
    base, rf = _encoder_input_tokens(a, _batch(a, images), texts)
    for img, token in ((0, 0), (0, 9), (0, 23), (1, 5), (1, 22)):
        x0, y0, x1, y1 = rf.patch_boxes[img, token].round().long().tolist()
        changed = [im.copy() for im in images]
        changed[img][y0:y1, x0:x1] = 255 - changed[img][y0:y1, x0:x1]
        new, _ = _encoder_input_tokens(a, _batch(a, changed), texts)
        delta = (new[img] - base[img]).norm(dim=-1)
        delta[~rf.patch_valid[img]] = -1
        assert int(delta.argmax()) == token
        other = 1 - img
        assert torch.allclose(new[other], base[other])


def test_vilt_subsampling_is_deterministic(tiny_model_dir):
    a = load_adapter(str(tiny_model_dir("vilt")))
    a.model.config.max_image_length = 10
    batch = _batch(a)
    with torch.no_grad():
        state = torch.get_rng_state()
        r1 = a.region_features(batch, _texts(a), _sizes_wh())
        r2 = a.region_features(batch, _texts(a), _sizes_wh())
        assert torch.equal(state, torch.get_rng_state())
    assert r1.patches.shape[1] == 10 and r1.patch_valid.all()
    assert torch.equal(r1.patch_boxes, r2.patch_boxes)
    assert torch.allclose(r1.patches, r2.patches, atol=1e-6)
    full = load_adapter(str(tiny_model_dir("vilt")))
    with torch.no_grad():
        all_boxes = full.region_features(batch, _texts(a), _sizes_wh()).patch_boxes[0].tolist()
    assert all(b in all_boxes for b in r1.patch_boxes[0].tolist())


# -- FLAVA and BridgeTower --------------------------------------------------------------------------

def test_flava_matches_pretraining_forward(adapters):
    a = adapters["flava"]
    batch = _batch(a)
    texts = _texts(a)
    enc = a.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = a.model(input_ids=enc["input_ids"], input_ids_masked=enc["input_ids"],
                      attention_mask=enc["attention_mask"], token_type_ids=enc["token_type_ids"],
                      pixel_values=batch["pixel_values"], return_loss=False)
        mine = a.mask_logits(batch, texts)
    ref = out.mmm_text_logits[enc["input_ids"] == a.mask_token_id]
    assert torch.allclose(mine, ref, atol=1e-5, rtol=1e-5)


def test_bridgetower_matches_native_forward(adapters):
    a = adapters["bridgetower"]
    batch = _batch(a)
    texts = _texts(a)
    enc = a.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        native = a.model(**enc, pixel_values=batch["pixel_values"]).logits
        mine = a.mask_logits(batch, texts)
    assert torch.allclose(mine, native[enc["input_ids"] == a.mask_token_id], atol=1e-5, rtol=1e-5)


def test_fixed_grid_boxes(adapters):
    with torch.no_grad():
        flava = adapters["flava"]
        rf = flava.region_features(_batch(flava), _texts(flava), _sizes_wh())
        # square resize, no effective crop: a 4x4 grid tiles each image
        for i, (w, h) in enumerate(_sizes_wh()):
            assert rf.patch_valid[i].all() and _tiles(rf.patch_boxes[i], w, h)
        bt = adapters["bridgetower"]
        rf = bt.region_features(_batch(bt), _texts(bt), _sizes_wh())
    # 40x60 -> resized 32x48 -> centre crop 32x32 at x = 8..40 -> original x = 10..50
    boxes = rf.patch_boxes[0]
    assert rf.patch_valid[0].all()
    assert float(boxes[:, 0].min()) == pytest.approx(10) and float(boxes[:, 2].max()) == pytest.approx(50)
    assert _tiles(boxes - torch.tensor([10.0, 0, 10, 0]), 40, 40)


@pytest.mark.parametrize("hw", [(40, 60), (50, 30), (33, 97), (100, 41), (32, 32)])
def test_bridgetower_geometry_matches_processor(adapters, hw):
    from cptbench.models.bridgetower import processed_geometry

    proc = adapters["bridgetower"].image_processor
    out = proc(images=[np.zeros((*hw, 3), np.uint8)], return_tensors="pt", input_data_format="channels_last",
               do_center_crop=False)
    (rh, rw), _ = processed_geometry(proc, *hw)
    assert tuple(out["pixel_values"].shape[-2:]) == (rh, rw)


# -- loading and the tiny builder -------------------------------------------------------------------

def test_load_adapter_errors(tmp_path):
    (tmp_path / "bert").mkdir()
    (tmp_path / "bert" / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UnsupportedModelError, match="vilt.*bridgetower|bridgetower.*vilt"):
        load_adapter(str(tmp_path / "bert"))
    with pytest.raises(FileNotFoundError, match="bundled model 'no-such-model'"):
        load_adapter("bundled:no-such-model")
    with pytest.raises(ValueError, match="invalid bundled"):
        resolve_model_path("bundled:../x")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_adapter(str(tmp_path))
    if os.environ.get("HF_HUB_OFFLINE") == "1":  # offline, an unknown hub id fails fast
        with pytest.raises(OSError, match="cannot load the config of model"):
            load_adapter("no-such-org/no-such-model")


def test_prepare_image_errors(adapters):
    a = adapters["vilt"]
    with pytest.raises(ValueError, match="uint8"):
        a.prepare_image(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        a.prepare_image(np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(ValueError, match="cannot process"):
        a.prepare_image(np.zeros((1, 500, 3), dtype=np.uint8))


def test_each_load_is_a_fresh_model(tiny_model_dir):
    path = str(tiny_model_dir("vilt"))
    a, b = load_adapter(path), load_adapter(path)
    assert a.model is not b.model
    with torch.no_grad():
        a.model.mlm_score.decoder.bias.add_(1.0)
    assert not torch.equal(a.model.mlm_score.decoder.bias, b.model.mlm_score.decoder.bias)


@pytest.fixture
def pristine():
    """The process's model cache, on and empty for the test; its previous state afterwards."""
    from cptbench.models import loading

    was = loading.PRISTINE.enabled
    loading.reuse_loaded_models(True)
    loading.PRISTINE.clear()
    yield loading.PRISTINE
    loading.PRISTINE.clear()
    loading.PRISTINE.enabled = was


def test_kept_models_stay_on_the_cpu_bounded_and_copies_are_independent(tiny_model_dir, pristine, monkeypatch):
    path = str(tiny_model_dir("vilt"))
    loads = pristine.loads
    a = load_adapter(path, device="meta")  # any device but the CPU: the copy moves, the kept model does not
    b = load_adapter(path)
    assert a.device.type == "meta" and b.device.type == "cpu" and pristine.loads == loads + 1
    assert [m.device.type for m in pristine._models.values()] == ["cpu"]
    with torch.no_grad():
        b.model.mlm_score.decoder.bias.add_(1.0)
    c = load_adapter(path)
    kept = next(iter(pristine._models.values()))
    assert c.model is not kept.model and c.model is not b.model
    assert torch.equal(c.model.mlm_score.decoder.bias, kept.model.mlm_score.decoder.bias)
    assert not torch.equal(c.model.mlm_score.decoder.bias, b.model.mlm_score.decoder.bias)
    for seed in (1, 2, 3):  # three more keys: only the two most recent stay
        load_adapter(path, patch_sample_seed=seed)
    assert len(pristine._models) == pristine.capacity == 2 and pristine.loads == loads + 4
    assert [dict(k[-1]) for k in pristine._models] == [{"patch_sample_seed": 2}, {"patch_sample_seed": 3}]

    from cptbench.models import loading

    walked = []
    monkeypatch.setattr(loading, "_stamp", lambda name: walked.append(name) or ())
    load_adapter(path)
    assert walked == [path]
    loading.reuse_loaded_models(False)
    load_adapter(path)
    assert walked == [path] and not pristine._models  # off: no folder walk, nothing kept


@pytest.mark.parametrize("kind", KINDS)
def test_tiny_build_is_fast_and_deterministic(tmp_path, kind):
    from safetensors.torch import load_file

    from cptbench.models.tiny import build_tiny_model

    start = time.perf_counter()
    p1 = build_tiny_model(kind, tmp_path / "a", ["lamp"], seed=3)
    assert time.perf_counter() - start < 2.0
    p2 = build_tiny_model(kind, tmp_path / "b", ["lamp"], seed=3)
    p3 = build_tiny_model(kind, tmp_path / "c", ["lamp"], seed=4)
    w1, w2, w3 = (load_file(str(p / "model.safetensors")) for p in (p1, p2, p3))
    assert w1.keys() == w2.keys()
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert any(not torch.equal(w1[k], w3[k]) for k in w1)
    assert load_adapter(str(p1)).word_id("lamp") >= 0


@pytest.mark.parametrize("kind", ["vilt", "flava", "bridgetower"])
def test_region_features_take_plain_text_without_mask(kind, tiny_model_dir):
    """Fine-tuning feeds the plain expression (no template, no [MASK])."""
    from cptbench.models.loading import load_adapter

    adapter = load_adapter(str(tiny_model_dir(kind)))
    images = adapter.collate([adapter.prepare_image(np.zeros((32, 48, 3), dtype=np.uint8))])
    feats = adapter.region_features(images, ["the man on the left"], [(48, 32)])
    assert feats.patches.shape[0] == 1 and feats.pooled.shape == (1, adapter.hidden_size)
    with pytest.raises(ValueError, match="exactly one"):
        adapter.mask_logits(images, ["the man on the left"])  # masked-LM logits still need the mask
