"""The dual-encoder adapters (CLIP, BLIP image-text retrieval) over tiny random models built on the
fly: their embeddings equal a direct call of the transformers model, the tokenizers written by
hand work, wrong checkpoints are refused by name, and the embedding cache keys exact pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cptbench.core.errors import ModelError
from cptbench.models.base import TextTooLongError
from cptbench.models.dual_encoder import (EmbeddingCache, UnsupportedDualEncoderError, image_digest,
                                          load_dual_encoder)

TEXTS = ["a photo of the small blue circle", "the red square on the left", "a photo of a dog"]


def images(n, seed=0, shape=(40, 56, 3)):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for _ in range(n)]


def tokens(enc, texts):
    return enc.tokenizer(texts, padding=True, return_tensors="pt")


def test_clip_embeddings_equal_the_models_own_forward(tiny_dual_dir):
    enc = load_dual_encoder(str(tiny_dual_dir("clip")))
    assert enc.family == "clip" and enc.image_size == 32 and enc.max_text_length == 77
    assert enc.logit_scale == pytest.approx(float(enc.model.logit_scale.detach().exp()))
    prepared = [enc.prepare_image(a) for a in images(3)]
    tok = tokens(enc, TEXTS)
    with torch.no_grad():
        ours_i, ours_t = enc.encode_images(prepared), enc.encode_texts(TEXTS)
        out = enc.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=torch.stack(prepared))
    assert torch.allclose(ours_i, out.image_embeds, atol=1e-6) and torch.allclose(ours_t, out.text_embeds, atol=1e-6)
    assert torch.allclose(ours_i.norm(dim=-1), torch.ones(3), atol=1e-6)
    # the processor's pixels: the same as the model's own processor gives
    direct = enc.image_processor(images=[images(1)[0]], return_tensors="pt", input_data_format="channels_last")
    assert torch.equal(enc.prepare_image(images(1)[0]), direct["pixel_values"][0])


def test_blip_itc_and_itm_equal_the_models_own_forward(tiny_dual_dir):
    enc = load_dual_encoder(str(tiny_dual_dir("blip")))
    assert enc.family == "blip" and enc.has_match_head and enc.image_size == 32
    assert enc.logit_scale == pytest.approx(1 / 0.07, rel=1e-3)  # the config's initial value
    prepared = [enc.prepare_image(a) for a in images(3, seed=1)]
    tok = tokens(enc, TEXTS)
    pixels = torch.stack(prepared)
    with torch.no_grad():
        itc = enc.encode_images(prepared) @ enc.encode_texts(TEXTS).T
        direct = enc.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=pixels,
                           use_itm_head=False).itm_score
        itm = enc.match_logits(prepared, TEXTS)
        direct_itm = enc.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"], pixel_values=pixels,
                               use_itm_head=True).itm_score
    assert torch.allclose(itc, direct, atol=1e-6)
    assert torch.allclose(itm, direct_itm[:, 1] - direct_itm[:, 0], atol=1e-5)


def test_tokenizers_written_by_hand(tiny_dual_dir):
    clip = load_dual_encoder(str(tiny_dual_dir("clip")))
    pieces = clip.tokenizer.tokenize("The SMALL blue circle")
    assert pieces == ["the</w>", "small</w>", "blue</w>", "circle</w>"]  # lower-cased, whole words
    assert clip.tokenizer.tokenize("zq") == ["z", "q</w>"]  # unknown: byte pieces
    ids = clip.tokenizer("a dog")["input_ids"]
    assert ids[0] == clip.tokenizer.convert_tokens_to_ids("<|startoftext|>")
    assert ids[-1] == clip.tokenizer.convert_tokens_to_ids("<|endoftext|>") == clip.model.config.text_config.eos_token_id
    assert clip.count_tokens("a dog") == len(ids) == 4
    blip = load_dual_encoder(str(tiny_dual_dir("blip")))
    assert blip.tokenizer.tokenize("The small blue circle") == ["the", "small", "blue", "circle"]
    with pytest.raises(TextTooLongError, match="40-token limit"):
        blip.encode_texts(["dog " * 60])


def test_wrong_models_are_refused_by_name(tiny_dual_dir, tiny_model_dir, tmp_path):
    with pytest.raises(UnsupportedDualEncoderError, match="'vilt'.*blip, clip"):
        load_dual_encoder(str(tiny_model_dir("vilt")))
    # the other way: a masked-LM method given a dual encoder names the methods that take it
    from cptbench.models.loading import UnsupportedModelError, load_adapter

    with pytest.raises(UnsupportedModelError, match="'clip' model is a dual encoder.*clip-crop.*clip-cpt"):
        load_adapter(str(tiny_dual_dir("clip")))
    # a BLIP checkpoint without its matching head and projections (a captioning checkpoint, say)
    import shutil

    from safetensors.torch import load_file, save_file

    folder = tmp_path / "blip-no-heads"
    shutil.copytree(tiny_dual_dir("blip"), folder)
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if not k.startswith(("itm_head", "text_proj"))},
              str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ModelError, match="not in the checkpoint.*BlipForImageTextRetrieval"):
        load_dual_encoder(str(folder))
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "blip"


def test_embedding_cache_keys_exact_pixels_and_counts():
    a, b = images(2, seed=3)
    assert image_digest(a) == image_digest(a.copy())
    changed = a.copy()
    changed[5, 7, 1] ^= 1
    assert image_digest(changed) != image_digest(a)
    assert image_digest(a) != image_digest(a.reshape(56, 40, 3))  # same bytes, other shape
    cache = EmbeddingCache(capacity=2)
    assert cache.get("image", image_digest(a)) is None
    cache.put("image", image_digest(a), np.ones(3))
    assert cache.get("image", image_digest(a.copy())).tolist() == [1, 1, 1]
    cache.put("image", "b", np.zeros(3))
    cache.put("image", "c", np.zeros(3))  # capacity 2: the least recently used (a) goes
    assert cache.peek("image", image_digest(a)) is None
    assert cache.stats() == {"image_cache_hits": 1, "image_cache_misses": 1}


def test_loading_a_dual_encoder_is_counted_as_loading(tiny_dual_dir, monkeypatch):
    """``load_dual_encoder`` adds exactly its own time to the process's load clock (the run engine
    records it as ``load_seconds``, not as fit or predict time): a fake clock that only the model's
    reading advances, by 7 s."""
    from cptbench.models import dual_clip, loading

    folder = tiny_dual_dir("clip")
    loading.warm_imports()
    monkeypatch.setattr(loading.PRISTINE, "enabled", False)  # read from disk here, not a copy kept by another test
    now = [100.0]
    monkeypatch.setattr(loading.time, "perf_counter", lambda: now[0])
    real = dual_clip.ClipDualEncoder.from_pretrained.__func__

    def slow(cls, *args, **kwargs):
        now[0] += 7.0
        return real(cls, *args, **kwargs)

    monkeypatch.setattr(dual_clip.ClipDualEncoder, "from_pretrained", classmethod(slow))
    before = loading.load_clock()
    enc = load_dual_encoder(str(folder))
    assert enc.family == "clip" and loading.load_clock() - before == pytest.approx(7.0)


@pytest.mark.parametrize("kind", ["clip", "blip"])
def test_tiny_models_see_the_image_and_read_the_text(kind, tiny_dual_dir):
    """A tiny random model whose embeddings ignore the pixels (BLIP's vision default init, 1e-10)
    would tie every candidate, and every visual prompt would score the same: different images and
    different texts must embed apart."""
    enc = load_dual_encoder(str(tiny_dual_dir(kind)))
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (40, 40, 3), dtype=np.uint8), np.zeros((40, 40, 3), np.uint8),
              np.full((40, 40, 3), 255, np.uint8)]
    with torch.no_grad():
        img = enc.encode_images([enc.prepare_image(a) for a in images]).float()
        txt = enc.encode_texts(["a photo of a red ball", "a photo of the green box on the left"]).float()
    off_diagonal = (img @ img.T)[~torch.eye(3, dtype=torch.bool)]
    assert off_diagonal.max().item() < 0.999
    assert (txt[0] @ txt[1]).item() < 0.999
