"""The blind baselines (``blind-text``, ``blind-image``): their features computed by hand, the
training loss against a brute-force loop and finite differences, what each can and cannot learn on
hand-built examples, determinism, the record's facts, and a run through the harness."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cptbench.data.examples import Example, Label, TrainExample
from cptbench.methods.base import MethodContext
from cptbench.methods.registry import create_method, get_method_class, method_registry
from cptbench_baselines.blind_features import (CANDIDATE_FEATURES, MATCH_FEATURES, candidate_features,
                                               match_features, stable_bucket, word_buckets, words)

W, H = 100, 50


def example(i, boxes, cats, expression="the thing", image_id=None):
    return Example(example_id=f"{i}:{i}", ref_id=i, sent_id=i, image_id=i if image_id is None else image_id,
                   image_handle=None, image_size=(W, H), expression=expression,
                   boxes=np.asarray(boxes, dtype=np.float64), categories=tuple(cats))


def col(phi, name):
    return phi[:, CANDIDATE_FEATURES.index(name)]


def make(name, **options):
    return create_method(name, options, MethodContext())


# ------------------------------------------------------------------------------------- contract
def test_registered_like_any_method_and_honest_about_labels():
    for name in ("blind-text", "blind-image"):
        cls = get_method_class(name)
        assert method_registry().origin(name).startswith("entry point: cptbench_baselines.blind")
        assert cls.uses_eval_labels is False and cls.trains is True
    assert get_method_class("blind-text").reads_expression and not get_method_class("blind-image").reads_expression
    with pytest.raises(ValueError, match="l2"):
        make("blind-text", l2=-1.0)
    with pytest.raises(ValueError, match="iterations"):
        make("blind-image", iterations=0)


# ------------------------------------------------------------------------------------- features
def test_candidate_features_by_hand():
    # three candidates: a small dog on the left, a big cat in the middle, a small cat on the right
    boxes = [[0, 0, 10, 10], [40, 10, 70, 40], [80, 20, 90, 30]]
    phi = candidate_features(example(1, boxes, ("dog", "cat", "cat")))
    assert phi.shape == (3, len(CANDIDATE_FEATURES)) and phi.min() >= 0 and phi.max() <= 1
    assert col(phi, "cx") == pytest.approx([0.05, 0.55, 0.85]) and col(phi, "cy") == pytest.approx([0.1, 0.5, 0.5])
    assert col(phi, "area") == pytest.approx([100 / 5000, 900 / 5000, 100 / 5000])
    assert col(phi, "rank_cx").tolist() == [0, 0.5, 1] and col(phi, "rank_area").tolist() == [0.25, 1, 0.25]
    assert col(phi, "rank_cy").tolist() == [0, 0.75, 0.75]  # two tie at y = 25: they share ranks 1 and 2
    assert col(phi, "leftmost").tolist() == [1, 0, 0] and col(phi, "rightmost").tolist() == [0, 0, 1]
    assert col(phi, "bottommost").tolist() == [0, 1, 1] and col(phi, "largest").tolist() == [0, 1, 0]
    assert col(phi, "smallest").tolist() == [1, 0, 1]
    assert col(phi, "index").tolist() == [0, 0.5, 1] and col(phi, "index_1").tolist() == [0, 1, 0]
    assert col(phi, "index_last").tolist() == [0, 0, 1] and col(phi, "index_5+").tolist() == [0, 0, 0]
    # among its category: the dog is alone; of the two cats the big one is the leftmost and largest
    assert col(phi, "category_share") == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert col(phi, "category_alone").tolist() == [1, 0, 0]
    assert col(phi, "in_category_leftmost").tolist() == [1, 1, 0]
    assert col(phi, "in_category_rank_cx").tolist() == [0.5, 0, 1]
    assert col(phi, "in_category_largest").tolist() == [1, 1, 0]
    # look-alikes (same category, area within 1.5x): the two cats are 9x apart, each alone
    assert col(phi, "lookalike_alone").tolist() == [1, 1, 1]
    bucket = [f"category_bucket_{stable_bucket(c, 16)}" for c in ("dog", "cat")]
    assert col(phi, bucket[0]).tolist() == [1, 0, 0] and col(phi, bucket[1]).tolist() == [0, 1, 1]
    assert phi[:, [CANDIDATE_FEATURES.index(f"category_bucket_{b}") for b in range(16)]].sum(axis=1).tolist() == [1, 1, 1]


def test_expression_features_by_hand():
    ex = example(1, [[0, 0, 10, 10]] * 3, ("dog", "hot dog", "cat"), expression="The two Dogs, left!")
    assert words(ex.expression) == ["the", "two", "dogs", "left"]
    m = match_features(ex, words(ex.expression))
    assert m.shape == (3, len(MATCH_FEATURES))
    assert m.tolist() == [[1, 1], [0, 1], [0, 0]]  # plural ignored; "hot dog": one word of two named
    assert word_buckets(["a", "b", "a"], 8) == sorted({stable_bucket("a", 8), stable_bucket("b", 8)})
    assert stable_bucket("left", 1024) == stable_bucket("left", 1024) == __import__("zlib").crc32(b"left") % 1024


# ------------------------------------------------------------------------------------- training
def _scenes(n, rng, expression=lambda t, cats: "the thing", target=lambda boxes, cats, rng: 1, distinct=False):
    out = []
    for i in range(n):
        k = int(rng.integers(3, 7))
        x = rng.permutation(9)[:k] * 10.0
        boxes = np.stack([x, np.zeros(k), x + 8, np.full(k, 8.0)], axis=1)
        names = ["cat", "dog", "cup", "pen", "box", "car"]
        cats = tuple(rng.permutation(names)[:k] if distinct else rng.choice(names[:3], size=k))
        t = target(boxes, cats, rng)
        out.append(TrainExample(example(i, boxes, cats, expression(t, cats)), Label(f"{i}:{i}", boxes[t])))
    return out


def _accuracy(method, data):
    return np.mean([int(np.argmax(s)) == int(np.argmax(method.context.metric.ious(te.example.boxes, te.label.box)))
                    for te, s in zip(data, method.predict([te.example for te in data]))])


def test_blind_image_learns_where_targets_are_and_blind_text_what_is_named():
    rng = np.random.default_rng(0)
    second = _scenes(150, rng)  # always the second annotation
    for name in ("blind-image", "blind-text"):
        m = make(name)
        m.fit(second[:100], 0)
        assert _accuracy(m, second[100:]) == 1.0
    # a random target named by its category (every category once per image): only blind-text sees it
    named = _scenes(300, rng, expression=lambda t, cats: f"the {cats[t]}", target=lambda b, c, r: int(r.integers(len(c))),
                    distinct=True)
    text, image = make("blind-text"), make("blind-image")
    text.fit(named[:200], 0)
    image.fit(named[:200], 0)
    assert _accuracy(text, named[200:]) == 1.0
    chance = np.mean([1 / te.example.n_candidates for te in named[200:]])
    assert _accuracy(image, named[200:]) < chance + 0.15


def test_loss_matches_a_brute_force_loop_and_its_gradient_finite_differences():
    rng = np.random.default_rng(1)
    m = make("blind-text", buckets=8, l2=2.0)
    data = _scenes(12, rng, expression=lambda t, cats: f"the {cats[t]} left", target=lambda b, c, r: int(r.integers(len(c))))
    batch, skipped = m._batch(data)
    assert skipped == {"no_hit": 0, "single_candidate": 0}
    theta = rng.normal(size=m.n_features * 9) * 0.3
    loss, grad = m._loss(theta, batch)
    v, w = theta[:m.n_features], theta[m.n_features:].reshape(8, m.n_features)
    total = 0.0
    for te in data:  # independently: per expression, features, scores, log-softmax
        phi, buckets = m.features(te.example)
        s = phi @ (v + w[buckets].sum(axis=0))
        t = int(np.argmax(m.context.metric.ious(te.example.boxes, te.label.box)))
        total += math.log(np.exp(s - s.max()).sum()) + s.max() - s[t]
    assert loss == pytest.approx((total + 0.5 * 2.0 * theta @ theta) / len(data))
    eps = 1e-6
    for j in rng.choice(theta.size, 12, replace=False):
        step = np.zeros_like(theta)
        step[j] = eps
        assert grad[j] == pytest.approx((m._loss(theta + step, batch)[0] - m._loss(theta - step, batch)[0]) / (2 * eps),
                                        rel=1e-5, abs=1e-8)


def test_deterministic_ties_not_by_order_and_an_honest_record():
    rng = np.random.default_rng(2)
    data = _scenes(60, rng)
    miss = TrainExample(example(900, [[0, 0, 5, 5], [10, 0, 15, 5]], ("cat", "dog")), Label("900:900", np.array([50.0, 40, 60, 50])))
    alone = TrainExample(example(901, [[0, 0, 5, 5]], ("cat",)), Label("901:901", np.array([0.0, 0, 5, 5])))
    a, b = make("blind-text", iterations=50), make("blind-text", iterations=50)
    a.fit(data + [miss, alone], 0)
    b.fit(data + [miss, alone], 3)
    held = [te.example for te in _scenes(20, np.random.default_rng(3))]
    assert all(np.array_equal(x, y) for x, y in zip(a.predict(held), b.predict(held)))
    info = a.describe()
    assert info["trained"] and info["train_expressions"] == 60
    assert info["skipped_no_hit"] == 1 and info["skipped_single_candidate"] == 1
    assert 1 <= info["iterations"] <= 50 and info["max_iterations"] == 50 and info["reads_expression"]
    assert info["parameters"] == (1024 + 1) * (len(CANDIDATE_FEATURES) + len(MATCH_FEATURES))
    assert info["features"] == list(CANDIDATE_FEATURES) + list(MATCH_FEATURES) and info["reads_pixels"] is False
    assert info["train_accuracy"] == 100.0
    # zero-shot: weights zero, every score tied; ties fall to a seeded draw, not to the first candidate
    zero = make("blind-image")
    zero.fit([], 0)
    picks = [int(np.argmax(s)) for s in zero.predict(held)]
    assert len(set(picks)) > 2 and picks == [int(np.argmax(s)) for s in zero.predict(held)]
    assert zero.describe()["trained"] is False and zero.describe()["parameters"] == len(CANDIDATE_FEATURES)


def test_runs_in_the_harness_with_k_shot_training_sets(tmp_path, synthref_cache, monkeypatch):
    import cptbench

    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    records = cptbench.evaluate(tasks="synthref", methods=["blind-text", "blind-image"], shots=[0, 8], seeds=[0],
                                splits="testB", limit=30, results=str(tmp_path / "res"))
    by = {(r.method, r.shots): r for r in records}
    assert set(by) == {(m, k) for m in ("blind-text", "blind-image") for k in (0, 8)}
    info = by[("blind-text", 8)].method_info
    assert info["trained"] and info["train_expressions"] <= 8 and info["reads_expression"]
    assert by[("blind-image", 0)].method_info["trained"] is False
    assert all(r.split == "testB" and r.n == 30 and not r.uses_eval_labels for r in records)
