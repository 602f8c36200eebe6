"""The generative adapters (LLaVA-1.5, Qwen2-VL) on tiny random models built offline: loading,
chat formats, image tokens, answer tokens, and the cached answer scorer against the brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cptbench.core.errors import ModelError
from cptbench.models.gen_llava import pad_to_square
from cptbench.models.gen_scoring import answer_loglik, reference_loglik
from cptbench.models.gen_loading import UnsupportedGenerativeModel, check_nothing_missing, load_generative
from cptbench.models.generative import PreparedImage, Turn

KINDS = ("llava", "qwen2_vl")


@pytest.fixture(scope="module", params=KINDS)
def adapter(request, tiny_generative_dir):
    return load_generative(str(tiny_generative_dir(request.param)))


def images(seed=0):
    rs = np.random.RandomState(seed)
    return [rs.randint(0, 256, (64, 64, 3)).astype(np.uint8), rs.randint(0, 256, (48, 80, 3)).astype(np.uint8),
            rs.randint(0, 256, (96, 64, 3)).astype(np.uint8)]


def test_loads_each_family(adapter):
    assert adapter.family in KINDS and adapter.max_context == 4096
    assert not adapter.model.training and adapter.device.type == "cpu"


def test_image_tokens_match_what_the_model_consumes(adapter):
    prepared = [adapter.prepare_image(im) for im in images()]
    if adapter.family == "llava":  # padded to a square, then 64 px: a 4 x 4 grid of 16 px patches
        assert [p.n_tokens for p in prepared] == [16, 16, 16]
    else:  # aspect ratio kept: sides to multiples of 16, merged 2 x 2 patches of 8 px
        assert [p.grid for p in prepared] == [(1, 4, 4), (1, 3, 5), (1, 6, 4)]
        assert [p.n_tokens for p in prepared] == [16, 15, 24]
    prompt = adapter.encode([Turn(p, f"question {i}", "red") for i, p in enumerate(prepared[:2])] +
                            [Turn(prepared[2], "the last one")])
    image_tokens = sum(1 for i in prompt.ids if i == adapter.placeholder_id)
    assert image_tokens == sum(p.n_tokens for p in prepared)
    with torch.no_grad():  # the model itself checks that features and image tokens agree
        logits, _ = adapter.forward(adapter.collate([prompt]).inputs, last_only=True)
    assert logits.shape == (1, 1, len(adapter.tokenizer))


def test_chat_formats(adapter):
    p = adapter.prepare_image(images()[0])
    text = adapter.render([Turn(p, "Q1", "blue"), Turn(p, "Q2")])
    if adapter.family == "llava":
        assert text == "USER: <image>\nQ1 ASSISTANT: blue</s>USER: <image>\nQ2 ASSISTANT:"
        assert adapter.tokenizer(text)["input_ids"][0] == adapter.tokenizer.bos_token_id
    else:
        assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q1<|im_end|>\n"
                        "<|im_start|>assistant\nblue<|im_end|>\n"
                        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Q2<|im_end|>\n"
                        "<|im_start|>assistant\n")


def test_answers_end_with_the_end_of_turn_token(adapter):
    end = adapter.tokenizer.convert_tokens_to_ids(adapter.end_of_answer)
    one, twelve = adapter.answer_ids("1"), adapter.answer_ids("12")
    assert one[-1] == end and twelve[-1] == end and one != twelve[:len(one)]
    # the answer continues the generation tag exactly as a conversation tokenises it
    p = adapter.prepare_image(images()[0])
    whole = adapter.encode([Turn(p, "Q", "purple")]).ids
    asking = adapter.encode([Turn(p, "Q")]).ids
    assert whole[:len(asking)] == asking and whole[len(asking):len(asking) + len(adapter.answer_ids("purple"))] == \
        adapter.answer_ids("purple")
    assert adapter.answer_fallbacks == 0


def test_cached_scores_equal_the_brute_force(adapter):
    """One prefix forward per prompt and the answers from its cache give the log-likelihoods (and
    so the ranking) of one full forward per answer with the model's own positions: left padding,
    several images per prompt (in-context turns), non-square images (Qwen2-VL's M-RoPE grids) and
    answers of different token lengths included."""
    prepared = [adapter.prepare_image(im) for im in images(3)]
    prompts = [adapter.encode([Turn(prepared[0], "Which color is the big circle?")]),
               adapter.encode([Turn(prepared[1], "Which color is x?", "blue"), Turn(prepared[2], "Which one is y?", "7"),
                               Turn(prepared[0], "Which color is the small blue triangle on the left?")]),
               adapter.encode([Turn(prepared[2], "and this")])]
    words = [["red", "blue", "yellow", "purple", "green"], ["1", "12", "3"], ["gray", "turquoise"]]
    answers = [[adapter.answer_ids(w) for w in row] for row in words]
    assert len({len(p) for p in prompts}) == 3 and len({len(a) for row in answers for a in row}) >= 2
    with torch.no_grad():
        cached, counts = answer_loglik(adapter, prompts, answers)
        brute = [reference_loglik(adapter, p, a) for p, a in zip(prompts, answers)]
    for r, row in enumerate(brute):
        got = cached[r, :len(row)].numpy()
        np.testing.assert_allclose(got, row, rtol=0, atol=1e-4)
        assert list(np.argsort(-got)) == list(np.argsort(-np.asarray(row)))
        assert counts[r, :len(row)].tolist() == [len(a) for a in answers[r]]
    assert torch.isnan(cached[2, 2:]).all() and torch.isnan(cached[1, 3:]).all()


def test_scores_do_not_depend_on_the_batch(adapter):
    prepared = [adapter.prepare_image(im) for im in images(5)]
    prompts = [adapter.encode([Turn(p, f"Which color is thing {i}?")]) for i, p in enumerate(prepared)]
    answers = [[adapter.answer_ids(w) for w in ("red", "blue")]] * 3
    with torch.no_grad():
        together, _ = answer_loglik(adapter, prompts, answers)
        alone = [answer_loglik(adapter, [p], [a])[0][0] for p, a in zip(prompts, answers)]
    np.testing.assert_allclose(together.numpy(), torch.stack(alone).numpy(), atol=1e-4)


def test_qwen_positions_follow_mrope(tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir("qwen2_vl")))
    image = PreparedImage({}, 6, (1, 2, 3))
    pad = adapter.placeholder_id
    pos = adapter.positions([5, 5, pad, pad, pad, pad, pad, pad, 5, 5], [image])
    # two text tokens at 0, 1; the image at 2 + (t, h, w); text resumes at 2 + max(1, 2, 3) = 5
    assert pos[:, :2].tolist() == [[0, 1]] * 3
    assert pos[0, 2:8].tolist() == [2] * 6
    assert pos[1, 2:8].tolist() == [2, 2, 2, 3, 3, 3] and pos[2, 2:8].tolist() == [2, 3, 4, 2, 3, 4]
    assert pos[:, 8:].tolist() == [[5, 6]] * 3


def test_llava_pads_to_a_square_with_the_mean_colour():
    img = np.full((2, 4, 3), 9, dtype=np.uint8)
    out = pad_to_square(img, (1, 2, 3))
    assert out.shape == (4, 4, 3)
    assert (out[1:3] == 9).all() and (out[0] == (1, 2, 3)).all() and (out[3] == (1, 2, 3)).all()
    assert pad_to_square(np.zeros((3, 3, 3), np.uint8), (1, 1, 1)).shape == (3, 3, 3)


def test_a_masked_lm_is_refused_with_the_families_named(tiny_model_dir):
    with pytest.raises(UnsupportedGenerativeModel, match="'vilt' is not a generative.*llava, qwen2_vl"):
        load_generative(str(tiny_model_dir("vilt")))


def test_missing_weights_are_refused_unless_tied():
    model = torch.nn.Module()
    model.a = torch.nn.Linear(2, 2)
    model.b = torch.nn.Linear(2, 2)
    model.b.weight = model.a.weight  # tied
    check_nothing_missing("m", model, ["b.weight"])
    with pytest.raises(ModelError, match="1 weight.*b.bias.*another transformers line"):
        check_nothing_missing("m", model, ["b.bias"])
