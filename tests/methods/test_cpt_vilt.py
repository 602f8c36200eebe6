"""CPT end to end on a tiny randomly initialised ViLT (built on the fly, nothing downloaded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cptbench.cpt.config import CptConfig
from cptbench.cpt.method import CptBlockMethod, CptSegMethod
from cptbench.data.images import file_image
from cptbench.data.examples import Example, Label, TrainExample
from cptbench.methods.base import MethodContext

tiny = pytest.importorskip("cptbench.models.tiny")
loading = pytest.importorskip("cptbench.models.loading")

H, W = 40, 56
BOXES = np.array([[2, 2, 20, 18], [22, 2, 40, 18], [2, 20, 20, 38], [30, 22, 54, 38], [10, 10, 30, 30], [0, 0, 56, 40]], float)
LONG = " ".join(["the big man on the left near the small dog"] * 5) + "."


@pytest.fixture(scope="module")
def vilt_dir(tmp_path_factory):
    return tiny.build_tiny_model("vilt", tmp_path_factory.mktemp("vilt"), words=["thing"], image_size=32, seed=0)


def split(tmp_path, prefix, n, seed):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        path = tmp_path / f"{prefix}{i}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)).save(path)
        poly = tuple([[b[0], b[1], b[2], b[1], b[0], b[3]]] for b in BOXES[:-1]) + (None,)
        ex = Example(example_id=f"{prefix}:{i}", ref_id=i, sent_id=i, image_id=i, image_handle=file_image(path), image_size=(W, H),
                     expression=LONG if i == 0 else f"the man on the left {i}.", boxes=BOXES,
                     categories=("person", "dog", "person", "car", "cat", "thing"), masks=poly,
                     candidate_key=f"{prefix}:{i}")
        out.append(TrainExample(ex, Label(ex.example_id, BOXES[int(rng.integers(len(BOXES)))])))
    return out


def method(cls, vilt_dir, **config):
    ctx = MethodContext(model=str(vilt_dir), device="cpu", eval_batch_size=4)
    return cls(CptConfig(**config), ctx)


def test_zero_shot_and_few_shot_on_tiny_vilt(tmp_path, vilt_dir):
    train = split(tmp_path, "train", 2, seed=0)
    evals = [te.example for te in split(tmp_path, "val", 3, seed=1)]

    zero = method(CptSegMethod, vilt_dir, palette="release5", category_segment=True)
    zero.fit([], seed=0)
    scores = zero.predict(evals)
    assert [s.shape for s in scores] == [(6,)] * 3 and all(np.isfinite(s).all() for s in scores)
    d, c = zero.describe(), zero.take_counters()
    assert c["passes"] == 2 * c["expressions"] and c["truncated_expressions"] == 1 and c["mask_fallbacks"] == 3
    assert d["score_rule"] == "logit"

    runs = []
    for _ in range(2):
        m = method(CptBlockMethod, vilt_dir, steps=3, lr=1e-3)
        before = {k: v.clone() for k, v in m.adapter.model.state_dict().items()}
        m.fit(train, seed=3)
        runs.append((m.train_result.losses, m.predict(evals)))
        after = m.adapter.model.state_dict()
        assert any(not torch.equal(before[k], after[k]) for k in before)
        assert m.describe()["train_steps"] == 3 and m.describe()["score_rule"] == "ratio"
    assert np.allclose(runs[0][0], runs[1][0], rtol=1e-5, atol=1e-6)
    assert all(np.allclose(a, b, rtol=1e-4, atol=1e-5) for a, b in zip(runs[0][1], runs[1][1]))
