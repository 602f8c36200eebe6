"""The visual-prompt methods (clip-crop, clip-blur, reclip, clip-circle, clip-cpt): a fake dual encoder
that prefers the region of the expression's colour reaches 100% through every method's bookkeeping;
the embedding cache is hit for repeated inputs; the few-shot head (loss against a brute-force loop
and finite differences, determinism, zero-shot = fit([])); options, sources and the device policy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cptbench.methods.base import MethodContext
from cptbench.methods.registry import create_method, get_method_class, method_registry
from cptbench_baselines.dual_head import fit_head, head_loss, log_softmax
from dual_fakes import ColourDualEncoder, accuracy, scenes, train_examples

METHODS = ("clip-crop", "clip-blur", "reclip", "clip-circle", "clip-cpt")


def make(name, adapter=None, **options):
    return create_method(name, options, MethodContext(adapter=adapter or ColourDualEncoder(), eval_batch_size=8))


@pytest.fixture(scope="module")
def scene():
    return scenes(12, seed=4)


def test_registered_with_published_defaults():
    for name in METHODS:
        cls = get_method_class(name)
        assert method_registry().origin(name) == "entry point: cptbench_baselines.dual_methods"
        assert cls.needs_model and cls.trains and not cls.uses_eval_labels
    defaults = {name: get_method_class(name).Config() for name in METHODS}
    assert defaults["clip-blur"].blur_radius == defaults["reclip"].blur_radius == 100.0  # ReCLIP --blur_std_dev
    assert defaults["clip-crop"].box_padding == defaults["reclip"].box_padding == 0.0  # ReCLIP --enlarge_boxes
    assert (defaults["clip-circle"].ellipse_thickness, defaults["clip-circle"].ellipse_color) == (2, "255,0,0")
    assert (defaults["clip-cpt"].shade_color, defaults["clip-cpt"].shade_alpha) == ("240,0,30", 127 / 255)
    assert defaults["clip-cpt"].template == "{q} is in red color."
    assert {defaults[n].template for n in METHODS if n != "clip-cpt"} == {"a photo of {q}"}
    # each method has only the options that change it
    assert "blur_radius" not in {f.name for f in dataclasses.fields(defaults["clip-crop"])}
    assert "ellipse_thickness" not in {f.name for f in dataclasses.fields(defaults["reclip"])}
    for name, bad, match in (("clip-blur", {"blur_radius": 0}, "blur_radius"), ("clip-crop", {"box_padding": -1}, "box_padding"),
                             ("clip-circle", {"ellipse_thickness": 0}, "ellipse_thickness"),
                             ("clip-circle", {"ellipse_color": "red"}, "r,g,b"), ("clip-cpt", {"shade_alpha": 1.5}, "shade_alpha"),
                             ("reclip", {"template": "a photo"}, "{q}"), ("reclip", {"head": "mlp"}, "head"),
                             ("reclip", {"score": "itx"}, "score"), ("clip-crop", {"template": "{q} {x}"}, "braces")):
        with pytest.raises(ValueError, match=match):
            make(name, **bad)


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("score", ["itc", "itm"])
def test_a_colour_reading_encoder_reaches_100_percent(name, score, scene):
    examples, labels, _ = scene
    method = make(name, score=score)
    method.fit([], 0)
    scores = method.predict(examples)
    assert accuracy(scores, examples, labels) == 100.0
    for s, ex in zip(scores, examples):
        assert s.shape == (ex.n_candidates,) and np.isclose(np.exp(s).sum(), 1.0)  # log-softmax over candidates
    counts = method.take_counters()
    assert counts["prompt_images"] == sum(ex.n_candidates for ex in examples) * len(method.prompts)
    assert method.take_counters()["prompt_images"] == 0  # counters restart


def test_text_is_the_lower_cased_expression_in_the_template(scene):
    examples, _, _ = scene
    fake = ColourDualEncoder()
    make("clip-cpt", fake).predict(examples[:3])
    fake2 = ColourDualEncoder()
    make("clip-crop", fake2).predict(examples[:3])
    assert {t for t in fake.texts_encoded if t != " is in red color."} == {
        f"{ex.expression.lower()} is in red color." for ex in examples[:3]}
    assert {t for t in fake2.texts_encoded if t != "a photo of "} == {f"a photo of {ex.expression.lower()}" for ex in examples[:3]}
    # too long: the expression is cut from the end, the template kept, the cut counted
    fake3 = ColourDualEncoder()
    fake3.max_text_length = 7  # "a photo of" + 2 specials leaves 2 words
    method = make("clip-crop", fake3)
    method.predict(examples[:1])
    colour = examples[0].expression.split()[1].lower()
    assert f"a photo of the {colour}" in fake3.texts_encoded  # "square." went: 5 words + 2 specials = 7
    assert method.take_counters()["truncated_expressions"] == 1


def test_the_embedding_cache_is_hit_for_repeated_inputs(scene):
    examples, _, _ = scene
    fake = ColourDualEncoder()
    method = make("clip-blur", fake)
    method.fit([], 0)
    first = method.predict(examples)
    stats = method.perf_info()
    # three expressions per image share its candidates' blurred copies: encoded once
    n_images = len({ex.image_key for ex in examples})
    assert stats["encoded_images"] == sum(ex.n_candidates for ex in examples) // 3 == 3 * n_images
    assert stats["image_cache_misses"] == stats["encoded_images"]
    assert stats["image_cache_hits"] == 2 * stats["encoded_images"]
    encoded = sum(fake.batches)
    again = method.predict(examples)  # everything cached: nothing encoded
    assert sum(fake.batches) == encoded and all(np.array_equal(a, b) for a, b in zip(first, again))
    after = method.perf_info()
    assert after["image_cache_misses"] == stats["image_cache_misses"]
    assert after["image_cache_hits"] == stats["image_cache_hits"] + sum(ex.n_candidates for ex in examples)
    assert after["text_cache_hits"] > stats["text_cache_hits"] and after["encoded_texts"] == stats["encoded_texts"]


def test_batches_follow_the_run_policy_and_halve_on_out_of_memory(scene):
    examples, _, _ = scene
    reference = make("clip-circle").predict(examples)
    fake = ColourDualEncoder(fail_above=3)
    method = create_method("clip-circle", {}, MethodContext(adapter=fake, eval_batch_size=8))
    scores = method.predict(examples)
    assert fake.batches[:3] == [8, 4, 2] and max(fake.batches[3:]) <= 2  # halved until it fits, then held
    assert method.perf_info()["eval_batch_size"] == 2
    assert all(np.array_equal(a, b) for a, b in zip(reference, scores))
    bf16 = create_method("clip-circle", {}, MethodContext(adapter=ColourDualEncoder(), precision="bf16"))
    assert accuracy(bf16.predict(examples), examples, scene[1]) == 100.0  # bf16 autocast on the CPU runs too
    assert bf16.describe()["precision"] == "bf16"


def test_itm_needs_a_matching_head():
    fake = ColourDualEncoder()
    fake.has_match_head = False
    with pytest.raises(ValueError, match="score=itm needs a model with an image-text matching head"):
        make("reclip", fake, score="itm").fit([], 0)


# ------------------------------------------------------------------------------------ few-shot head
def _random_problem(seed, n=5, p=6):
    rng = np.random.default_rng(seed)
    feats = [rng.normal(size=(int(rng.integers(2, 6)), p)) for _ in range(n)]
    targets = [int(rng.integers(0, len(f))) for f in feats]
    return feats, targets, np.full(p, 3.0)


@pytest.mark.parametrize("kind", ["linear", "temperature"])
def test_head_loss_against_a_brute_force_loop_and_finite_differences(kind):
    feats, targets, w0 = _random_problem(1)
    rng = np.random.default_rng(2)
    params = rng.normal(size=len(w0) if kind == "linear" else 1) * 0.3
    loss, grad = head_loss(kind, params, feats, targets, w0, l2=0.7)
    brute = 0.5 * 0.7 * float(params @ params)
    for f, t in zip(feats, targets):
        z = f @ (w0 * (1 + params)) if kind == "linear" else np.exp(params[0]) * (f @ w0)
        brute += np.log(np.exp(z).sum()) - z[t]
    assert loss == pytest.approx(brute, rel=1e-10)
    eps = 1e-6
    for j in range(len(params)):
        d = np.zeros_like(params)
        d[j] = eps
        numeric = (head_loss(kind, params + d, feats, targets, w0, 0.7)[0] - head_loss(kind, params - d, feats, targets, w0, 0.7)[0]) / (2 * eps)
        assert grad[j] == pytest.approx(numeric, rel=1e-5, abs=1e-7)


def test_head_fits_deterministically_and_the_temperature_keeps_the_ranking():
    feats, targets, w0 = _random_problem(3, n=8)
    a, facts = fit_head("linear", feats, targets, w0, l2=1.0, iterations=50)
    b, _ = fit_head("linear", feats, targets, w0, l2=1.0, iterations=50)
    assert a.trained and np.array_equal(a.u, b.u) and facts["loss_last"] < facts["loss_zero_shot"]
    t, _ = fit_head("temperature", feats, targets, w0, l2=1.0, iterations=50)
    assert t.trained and t.tau != 0
    for f in feats:
        assert np.array_equal(np.argsort(t.logits(f)), np.argsort(f @ w0))  # a positive scale: same ranking
    zero, facts = fit_head("linear", [], [], w0, l2=1.0, iterations=50)
    assert not zero.trained and facts == {} and np.array_equal(zero.logits(feats[0]), feats[0] @ w0)
    assert np.exp(log_softmax(np.array([1000.0, 0.0]))).sum() == pytest.approx(1.0)


def test_few_shot_fit_through_the_method(scene):
    examples, labels, _ = scene
    train = train_examples(examples[:4], labels)
    zero = make("reclip")
    zero.fit([], 0)
    zero_scores = zero.predict(examples)
    assert zero.describe()["head_trained"] is False
    tuned = make("reclip")
    tuned.fit(train, seed=3)
    info = tuned.describe()
    assert info["head_trained"] and info["train_expressions"] == 4 and info["k"] == 4 and info["seed"] == 3
    assert info["loss_last"] <= info["loss_zero_shot"]
    assert "spatial-relation resolver" in info["left_out"] and info["prompts"] == ["crop", "blur"]
    again = make("reclip")
    again.fit(train, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(tuned.predict(examples), again.predict(examples)))
    assert accuracy(tuned.predict(examples), examples, labels) == 100.0
    # predicting without fit is zero-shot; head=none keeps zero-shot scores after a fit
    assert all(np.allclose(a, b) for a, b in zip(make("reclip").predict(examples), zero_scores))
    frozen = make("reclip", head="none")
    frozen.fit(train, seed=3)
    assert all(np.allclose(a, b) for a, b in zip(frozen.predict(examples), zero_scores))
    # an expression whose candidates all miss is left out and counted
    from cptbench.data.examples import Label, TrainExample

    miss = TrainExample(examples[0], Label(examples[0].example_id, np.array([40.0, 40.0, 47.0, 47.0])))
    method = make("clip-crop")
    method.fit([miss, *train[:1]], seed=0)
    assert method.describe()["skipped_no_hit"] == 1 and method.describe()["train_expressions"] == 1


@pytest.mark.parametrize("kind", ["clip", "blip"])
def test_the_precision_policy_reaches_the_real_forward(kind, tiny_dual_dir, scene):
    """A real (tiny) model under ``precision=bf16`` runs its forward in bf16 autocast: its scores
    move off the fp32 ones by bf16 rounding (not more), and both are recorded as such."""
    examples = scene[0][:6]
    scores = {}
    for precision in ("fp32", "bf16"):
        context = MethodContext(model=str(tiny_dual_dir(kind)), eval_batch_size=8, precision=precision)
        method = create_method("reclip", {}, context)
        scores[precision] = method.predict(examples)
        assert method.describe()["precision"] == method.perf_info()["precision"] == precision
        assert method.describe()["family"] == kind
    gaps = [np.abs(a - b).max() for a, b in zip(scores["fp32"], scores["bf16"])]
    assert max(gaps) > 0 and max(gaps) < 0.5
