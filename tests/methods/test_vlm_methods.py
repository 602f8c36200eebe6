"""``vlm-colour`` and ``vlm-mark`` on tiny generative models of each family: the bookkeeping with a
fake model that knows the answer, the cache against the brute force through the method, in-context
turns and what is cut, options, and LoRA (when peft is installed)."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from cptbench.methods import MethodContext
from cptbench.methods.base import ConfigError
from cptbench.methods.options import parse_config
from cptbench.models.gen_loading import load_generative
from cptbench_baselines.vlm_config import ColourConfig, MarkConfig
from cptbench_baselines.vlm_lora import peft_available
from cptbench_baselines.vlm_prompting import VlmColourMethod, VlmMarkMethod
from cptbench_baselines.vlm_prompts import fit_prompt
from cptbench_baselines.vlm_regions import parse_palette
from vlm_fakes import colour_answer, colour_fixture, fake_model, mark_answer, train_examples

KINDS = ("llava", "qwen2_vl")


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return colour_fixture(tmp_path_factory.mktemp("vlm-scenes"), n_images=6)


def method(cls, adapter, shots=0, **options):
    config = parse_config(cls.Config, options, method=cls.__name__)
    return cls(config, MethodContext(adapter=adapter, shots=shots, eval_batch_size=4))


def accuracy(scores, fixture) -> float:
    return float(np.mean([int(np.argmax(s)) == t for s, (_, _, t) in zip(scores, fixture)]))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name,options", [("colour", {}), ("colour", {"palette": "red"}), ("mark", {}),
                                          ("mark", {"marks_per_image": 3, "mark_position": "corner"})])
def test_a_model_that_knows_the_answer_reaches_100_percent(kind, name, options, fixture, tiny_generative_dir):
    """The fake reads the asking turn's expression from the token ids and its image back from the
    family's pixel_values; the method must map its preferred answer back to the right candidate,
    across copies (5 colours or 3 marks per copy for up to 7 candidates)."""
    adapter = load_generative(str(tiny_generative_dir(kind)))
    if name == "colour":
        m = method(VlmColourMethod, adapter, **options)
        fake_model(adapter, partial(colour_answer, palette=parse_palette(options.get("palette", "release5")),
                                    alpha=m.config.alpha))
    else:
        m = method(VlmMarkMethod, adapter, **options)
        fake_model(adapter, mark_answer)
    m.fit([], seed=0)
    examples = [ex for ex, _, _ in fixture]
    scores = m.predict(examples)
    assert [len(s) for s in scores] == [ex.n_candidates for ex in examples]
    assert accuracy(scores, fixture) == 1.0
    assert max(ex.n_candidates for ex in examples) > 5  # some expressions need two copies
    # with in-context turns in front (their images come first in every row) the fake still reads the asking one
    m.fit(train_examples(fixture[:3]), seed=0)
    assert accuracy(m.predict(examples), fixture) == 1.0
    assert m.take_counters()["icl_turns_shown"] > 0


@pytest.mark.parametrize("kind", KINDS)
def test_the_cache_gives_the_brute_force_scores_through_the_method(kind, fixture, tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir(kind)))
    examples = [ex for ex, _, _ in fixture[:8]]
    results = {}
    for kv in (True, False):
        m = method(VlmColourMethod, adapter, kv_cache=kv)
        m.fit(train_examples(fixture[10:12]), seed=0)
        with torch.no_grad():
            results[kv] = m.predict(examples)
    for a, b in zip(results[True], results[False]):
        np.testing.assert_allclose(a, b, atol=1e-4)
        assert int(np.argmax(a)) == int(np.argmax(b))


def test_mean_scores_divide_by_the_answer_tokens(fixture, tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir("qwen2_vl")))
    ex = [fixture[0][0]]
    total = method(VlmColourMethod, adapter).predict(ex)[0]
    mean = method(VlmColourMethod, adapter, score="mean").predict(ex)[0]
    words = parse_palette("release5").words
    lengths = np.array([len(adapter.answer_ids(words[i % 5])) for i in range(len(total))], dtype=float)
    np.testing.assert_allclose(mean, total / lengths, rtol=1e-5)


def test_in_context_turns_shown_and_cut_are_the_most_that_fit(fixture, tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir("llava")))
    train = train_examples(fixture[:6])
    m = method(VlmColourMethod, adapter, shots=6, max_context=200)
    m.fit(train, seed=0)
    assert m.describe()["icl_turns"] == 6
    examples = [ex for ex, _, _ in fixture[6:10]]
    m.predict(examples)
    counts = m.take_counters()
    prompts = counts["prompts"]
    assert counts["icl_turns_shown"] + counts["icl_turns_cut"] == 6 * prompts and counts["icl_turns_cut"] > 0
    # independently: for each prompt, the largest m whose prompt (plus the longest answer) fits 200 tokens
    expected = 0
    for ex in examples:
        for g in m.groups(ex):
            image = m._copy(adapter, ex, g)
            reserve = max(len(adapter.answer_ids(w)) for w in m.answers(len(g)))
            fits = [n for n in range(7) if len(fit_prompt(adapter, m._turns[:n], image, m.config.question,
                                                           ex.expression, 10 ** 6, 0).prompt) + reserve <= 200]
            expected += max(fits)
    assert counts["icl_turns_shown"] == expected
    assert m.take_counters()["prompts"] == 0  # counters restart


def test_icl_examples_caps_the_turns_and_misses_are_skipped(fixture, tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir("llava")))
    train = train_examples(fixture[:4])
    miss = train[0]
    far = type(miss.label)(miss.label.example_id, np.array([100.0, 100.0, 120.0, 120.0]))
    m = method(VlmMarkMethod, adapter, shots=4, icl_examples=2)
    m.fit([type(miss)(miss.example, far), *train[1:]], seed=0)
    info = m.describe()
    assert info["skipped_no_hit"] == 1 and info["train_expressions"] == 3 and info["icl_turns"] == 2
    assert [t.answer for t in m._turns] == [str(t + 1) for _, _, t in fixture[1:3]]
    m = method(VlmMarkMethod, adapter, shots=4, fewshot="none")
    m.fit(train, seed=0)
    assert m.describe().get("icl_turns") is None and m._turns == []


def test_long_expressions_are_cut_to_fit_and_a_too_small_context_is_refused(fixture, tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir("qwen2_vl")))
    ex = fixture[0][0]
    long = type(ex)(**{**ex.__dict__, "expression": "the " + "very " * 60 + "gray box"})
    m = method(VlmMarkMethod, adapter, max_context=120)
    scores = m.predict([long])[0]
    assert np.isfinite(scores).all() and m.take_counters()["truncated_expressions"] == 1
    with pytest.raises(ValueError, match="raise max_context"):
        method(VlmMarkMethod, adapter, max_context=20).predict([ex])


def test_options_are_checked():
    for bad in ({"fewshot": "both"}, {"template": "no placeholder"}, {"template": "{expression} {x}"},
                {"score": "max"}, {"palette": "x:1"}, {"alpha": 0.0}, {"lora_targets": "q proj"}, {"steps": -1}):
        with pytest.raises(ConfigError):
            parse_config(ColourConfig, bad, method="vlm-colour")
    for bad in ({"mark_position": "middle"}, {"marks_per_image": -1}):
        with pytest.raises(ConfigError):
            parse_config(MarkConfig, bad, method="vlm-mark")
    c = parse_config(MarkConfig, {"template": "Which number is {expression}?"}, method="vlm-mark")
    assert c.question == "Which number is {expression}?"
    assert ColourConfig(template=2).template == "2" and "is in which color" in ColourConfig(template=2).question
    with pytest.raises(ConfigError, match="unknown option of method 'vlm-mark': 'palette'"):
        parse_config(MarkConfig, {"palette": "red"}, method="vlm-mark")  # marks have no palette


@pytest.mark.skipif(not peft_available(), reason="peft is not installed (pip install 'cptbench[lora]')")
@pytest.mark.parametrize("kind", KINDS)
def test_lora_trains_adapters_only_and_detaches_cleanly(kind, fixture, tiny_generative_dir):
    adapter = load_generative(str(tiny_generative_dir(kind)))
    before = {k: v.clone() for k, v in adapter.model.state_dict().items()}
    examples = [ex for ex, _, _ in fixture[:6]]
    m = method(VlmColourMethod, adapter, shots=4, fewshot="lora", steps=4, lr=0.01)
    m.fit([], seed=0)
    zero = m.predict(examples)
    train = train_examples(fixture[6:10])
    m.fit(train, seed=0)
    info = m.describe()
    assert info["lora"] == "trained" and info["steps"] == 4 and len(m.losses) == 4
    assert info["loss_last"] < info["loss_first"]
    trainable = {n for n, p in adapter.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n and "language_model" in n for n in trainable)
    assert info["trainable_parameters"] == sum(p.numel() for n, p in adapter.model.named_parameters() if n in trainable)
    tuned = m.predict(examples)
    assert any(not np.allclose(a, b) for a, b in zip(zero, tuned))
    losses = list(m.losses)
    m.fit(train, seed=0)  # the same fit again: the same training (deterministic)
    assert m.losses == losses
    m.fit([], seed=0)  # adapters removed: the pre-trained model, bit for bit
    after = adapter.model.state_dict()
    assert set(after) == set(before) and all(torch.equal(before[k], after[k]) for k in before)
    for a, b in zip(zero, m.predict(examples)):
        np.testing.assert_allclose(a, b, atol=1e-6)
