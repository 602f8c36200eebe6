"""CPT method bookkeeping with an oracle adapter, config validation and describe()."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cptbench.cpt.config import CptConfig
from cptbench.cpt.method import CptBlockMethod, CptSegMethod
from cptbench.cpt.painting import box_masks, decode_segmentation, parse_palette
from cpt_fakes import OracleAdapter
from cptbench.data.images import file_image
from cptbench.data.examples import Example
from cptbench.methods.base import ConfigError, MethodContext
from cptbench.methods.registry import create_method, get_method_class
from cptbench.models.base import ModelVocabularyError

H, W = 40, 100


def grid_boxes(n):
    """``n`` disjoint 10x10 boxes on a grid (2 rows of up to 8)."""
    return np.array([[2 + 12 * (i % 8), 4 + 16 * (i // 8), 12 + 12 * (i % 8), 14 + 16 * (i // 8)] for i in range(n)], float)


def triangle(box):
    x1, y1, x2, y2 = box
    return [[x1, y1, x2, y1, x1, y2]]


def make_task(tmp_path, oracle, n_images=3, n_candidates=8, per_image=3, seg=False, seed=0):
    """Examples over noise images; each expression refers to a different candidate."""
    rng = np.random.default_rng(seed)
    examples, truth = [], []
    boxes = grid_boxes(n_candidates)
    masks = tuple(triangle(b) for b in boxes) if seg else ()
    for img_id in range(n_images):
        img = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
        path = tmp_path / f"img{img_id}.png"
        Image.fromarray(img).save(path)
        for j in range(per_image):
            gt = int(rng.integers(n_candidates))
            expr = f"thing {img_id} {j} there."
            region = decode_segmentation(masks[gt], H, W) if seg else box_masks(boxes[gt:gt + 1], H, W)[0]
            oracle.register(expr, img, region)
            examples.append(Example(
                example_id=f"{img_id}:{j}", ref_id=img_id, sent_id=j, image_id=img_id, image_handle=file_image(path),
                image_size=(W, H), expression=expr, boxes=boxes, categories=("thing",) * n_candidates,
                masks=masks, split="val", candidate_key=f"gt:{img_id}"))
            truth.append(gt)
    # interleave images so predict has to regroup passes by painted copy
    order = np.random.default_rng(seed + 1).permutation(len(examples))
    return [examples[i] for i in order], [truth[i] for i in order]


@pytest.mark.parametrize("palette,n_candidates,groups", [("red", 6, 6), ("release5", 8, 2), ("release5", 3, 1)])
@pytest.mark.parametrize("cls", [CptBlockMethod, CptSegMethod])
def test_oracle_reaches_full_accuracy(tmp_path, palette, n_candidates, groups, cls):
    oracle = OracleAdapter(parse_palette(palette), words=["thing", "there"] + [str(i) for i in range(10)])
    examples, truth = make_task(tmp_path, oracle, n_candidates=n_candidates, seg=cls is CptSegMethod)
    progress = []
    ctx = MethodContext(eval_batch_size=4, progress=lambda *a: progress.append(a), adapter=oracle)
    method = cls(CptConfig(palette=palette), ctx)
    method.fit([], seed=0)
    scores = method.predict(examples)
    assert [s.shape for s in scores] == [(n_candidates,)] * len(examples)
    assert [int(np.argmax(s)) for s in scores] == truth
    n_passes = len(examples) * groups
    assert sum(oracle.calls) == n_passes and max(oracle.calls) <= 4
    assert progress[0] == ("predict", 0, n_passes) and progress[-1] == ("predict", n_passes, n_passes)
    d = method.describe()
    c = method.take_counters()
    assert c["passes"] == groups * c["expressions"] and d["score_rule"] == "logit"
    assert method.perf_info()["painted_copies"] == 3 * groups  # one painted copy per image and group, shared by expressions
    assert d["template_text"] == "<q> is in [MASK] color." and d["mode"] == cls.mode
    assert c.get("mask_fallbacks", 0) == 0 and c["truncated_expressions"] == 0 and d["train_steps"] == 0
    assert method.take_counters()["passes"] == 0  # counters restart after each take


def test_scores_do_not_depend_on_batch_size_and_mask_fallbacks_are_counted(tmp_path):
    oracle = OracleAdapter(parse_palette("release5"), words=["thing", "there"] + [str(i) for i in range(10)])
    examples, truth = make_task(tmp_path, oracle, n_images=2, n_candidates=7)
    # cpt-seg without masks: every candidate falls back to its box
    runs = []
    for bs in (1, 5):
        m = CptSegMethod.with_adapter(oracle, CptConfig(palette="release5"), MethodContext(eval_batch_size=bs))
        runs.append(m.predict(examples))
        assert m.take_counters()["mask_fallbacks"] == len(examples) * 7  # per expression: its 7 candidates
    assert all(np.array_equal(a, b) for a, b in zip(*runs))
    assert [int(np.argmax(s)) for s in runs[0]] == truth


def test_empty_candidate_sets_and_truncation_count(tmp_path):
    oracle = OracleAdapter(parse_palette("red"), words=["thing", "there"], max_text_length=9, strict=False)
    examples, _ = make_task(tmp_path, oracle, n_images=1, n_candidates=2, per_image=2)
    empty = Example(**{**{f: getattr(examples[0], f) for f in examples[0].__dataclass_fields__},
                       "example_id": "9:9", "boxes": np.zeros((0, 4)), "categories": ()})
    m = CptBlockMethod.with_adapter(oracle)
    scores = m.predict([empty] + examples)
    assert scores[0].shape == (0,)
    # "thing 0 j there" (4 tokens) + 5 template tokens + 2 specials > 9: cut to 2 expression tokens
    assert m.take_counters()["truncated_expressions"] == 2


def test_category_segment_reaches_the_adapter(tmp_path):
    oracle = OracleAdapter(parse_palette("red"), words=["thing", "there"] + [str(i) for i in range(10)])
    examples, truth = make_task(tmp_path, oracle, n_images=1, n_candidates=3, per_image=1)
    seen = []
    real = oracle.mask_logits
    oracle.mask_logits = lambda images, texts: seen.extend(texts) or real(images, texts)
    m = CptBlockMethod.with_adapter(oracle, CptConfig(category_segment=True))
    assert int(np.argmax(m.predict(examples)[0])) == truth[0]
    q = examples[0].expression.replace(".", "").strip()
    assert sorted(seen) == sorted(f"{q} is in [MASK] color. [SEP] " + " ".join(
        ("red thing" if i == g else "thing") for i in range(3)) for g in range(3))


def test_vocabulary_is_checked_at_setup():
    oracle = OracleAdapter(parse_palette("red"))
    m = CptBlockMethod.with_adapter(oracle, CptConfig(palette="crimson:200,0,0"))
    with pytest.raises(ModelVocabularyError, match="crimson"):
        m.setup()


def test_config_validation_and_registry():
    assert get_method_class("cpt") is CptBlockMethod and get_method_class("cpt-seg") is CptSegMethod
    assert CptBlockMethod.needs_model and CptBlockMethod.trains
    m = create_method("cpt-blk", {"template": "2", "palette": "release5", "score": "ratio", "save-weights": "false"})
    assert m.config == CptConfig(template=2, palette="release5", score="ratio")
    for options, hint in [({"template": "4"}, "template"), ({"palette": "rainbow"}, "release5"),
                          ({"score": "prob"}, "score"), ({"alpha": "0"}, "alpha"), ({"steps": "-1"}, "steps"),
                          ({"warmup": "2"}, "warmup"), ({"lr": "0"}, "lr"), ({"templat": "1"}, "Did you mean")]:
        with pytest.raises(ConfigError, match=hint):
            create_method("cpt", options)
    with pytest.raises(ConfigError, match="artifacts"):
        create_method("cpt", {"save_weights": "true"})
    with pytest.raises(ConfigError, match="needs a model"):
        create_method("cpt").setup()


def _oom_above(oracle, limit):
    """Make ``oracle.mask_logits`` run out of memory on batches larger than ``limit``."""
    import torch

    oom = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)
    real = oracle.mask_logits

    def forward(images, texts):
        if len(texts) > limit:
            oracle.calls.append(-len(texts))  # a failed attempt
            raise oom("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(images, texts)

    oracle.mask_logits = forward


def test_out_of_memory_halving_holds_for_later_calls_and_counts_each_pass_once(tmp_path):
    words = ["thing", "there"] + [str(i) for i in range(10)]
    # a short text limit: the category segment of every pass is cut, so the count is non-zero
    counts = {}
    for name, bs, limit in (("oom", 8, 2), ("plain", 2, 99)):
        oracle = OracleAdapter(parse_palette("red"), words=words, max_text_length=14, strict=False)
        examples, _ = make_task(tmp_path, oracle, n_images=2, n_candidates=3, per_image=2)
        _oom_above(oracle, limit)
        m = CptBlockMethod.with_adapter(oracle, CptConfig(category_segment=True), MethodContext(eval_batch_size=bs))
        m.predict(examples)
        counts[name] = m.take_counters()
        if name == "oom":
            assert oracle.calls[:3] == [-8, -4, 2] and m.perf_info()["eval_batch_size"] == 2
            oracle.calls.clear()
            m.predict(examples)  # the next call starts at the halved size: no failed attempt
            assert oracle.calls and all(0 < n <= 2 for n in oracle.calls)
            assert m.take_counters() == counts["oom"]
    assert counts["oom"]["truncated_category_segments"] > 0
    assert counts["oom"] == counts["plain"]  # the failed batches' passes are not counted twice


def test_auto_batch_size_is_worked_out_once_per_method(tmp_path, monkeypatch):
    import cptbench.methods.numerics as numerics

    oracle = OracleAdapter(parse_palette("red"), words=["thing", "there"] + [str(i) for i in range(10)])
    examples, _ = make_task(tmp_path, oracle, n_images=2, n_candidates=3, per_image=2)
    ctx = MethodContext(eval_batch_size="auto")
    m = CptBlockMethod.with_adapter(oracle, CptConfig(), ctx)
    for _ in range(2):
        m.predict(examples)
    assert oracle.calls == [len(examples) * 3] * 2  # 12 passes a call, under the default of 32
    assert m.perf_info()["eval_batch_size"] == numerics.AUTO_CPU_BATCH  # no device pipeline: the default

    # with a device pipeline on CUDA the size is probed (or read from the cache file) once, not per call
    found, remembered = [], []
    monkeypatch.setattr(numerics, "autobatch_key", lambda model, device, shape, precision, tag: f"key {shape}")
    monkeypatch.setattr(numerics, "probe_batch_size", lambda device, key, probe: found.append(key) or 4)
    monkeypatch.setattr(numerics, "remember_batch_size", lambda key, size: remembered.append((key, size)))

    class FakePipe:
        cuda = True
        adapter, device, precision = oracle, "cuda", "bf16"
        spec = type("Spec", (), {"name": "fake"})

        def _entry(self, example):
            return type("Entry", (), {"out_hw": (8, 8)})()

    m = CptBlockMethod.with_adapter(oracle, CptConfig(), ctx)
    m.setup()
    m._pipeline = FakePipe()
    m._sizer = numerics.BatchSizer("auto", "cuda")
    assert m._eval_batch_size(examples, []) == numerics.AUTO_CPU_BATCH and not found  # no passes: no probe yet
    items = [(0, 0)]
    assert [m._eval_batch_size(examples, items) for _ in range(3)] == [4, 4, 4] and found == ["key 8x8"]
    m._sizer.on_oom(2)
    assert m._eval_batch_size(examples, items) == 2 and remembered == [("key 8x8", 2)] and found == ["key 8x8"]
