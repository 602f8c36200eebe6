"""The release's protocol as defaults (docs/protocol.md): one seeding policy for every trained method,
the fine-tuning step factor, the records naming the policy, and the faithful-default table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cptbench.methods import optim
from cptbench.cli.main import cli
from cptbench.cpt import training as cpt_training
from cptbench.cpt.config import CptConfig
from cptbench.cpt.method import CptBlockMethod
from cpt_fakes import TinyTorchAdapter
from cptbench.methods.base import MethodContext
from cptbench_baselines import finetune as ftmod
from cptbench_baselines.finetune import FineTuneConfig, FineTuneMethod, LinearProbeMethod
from test_cpt_training import make_split
from test_finetune import FakeAdapter, make_examples, train_set

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """Tiny models: intra-op threads only add contention on shared cores (as in test_finetune)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_training_randomness_policies():
    a, b = optim.training_randomness("release", 88, 0), optim.training_randomness("release", 88, 4)
    assert a.entropy == b.entropy == (88,) and a.torch_seed == b.torch_seed
    assert a.rng.random() == b.rng.random()
    c, d = optim.training_randomness("per-run", 88, 0), optim.training_randomness("per-run", 88, 4)
    assert (c.entropy, d.entropy) == ((88, 0), (88, 4)) and c.torch_seed != d.torch_seed
    # per-run is the seeding CPT used before the release's policy became the default
    old_order, old_torch = np.random.SeedSequence([88, 4]).spawn(2)
    assert d.torch_seed == int(old_torch.generate_state(1)[0])
    assert d.rng.random() == np.random.default_rng(old_order).random()
    assert optim.SEED_POLICIES[0] == optim.DEFAULT_SEED_POLICY == "release"
    with pytest.raises(ValueError, match="seed_policy"):
        optim.training_randomness("per-seed", 88, 0)


def _ft_scores(tmp_path, seed, policy, cls=FineTuneMethod):
    ctx = MethodContext(model="fake", adapter=FakeAdapter())
    m = cls(FineTuneConfig(steps=6, lr=1e-2, batch_size=2, seed_policy=policy), ctx)
    m.fit(train_set(tmp_path, 4), seed)
    return m, np.concatenate(m.predict([ex for ex, _ in make_examples(tmp_path, 3, start=50)]))


def _cpt_scores(tmp_path, seed, policy):
    train = make_split(tmp_path, "train", 4, seed=7)
    evals = [te.example for te in make_split(tmp_path, "val", 3, seed=8)]
    adapter = TinyTorchAdapter(words=["the", "thing"] + [str(i) for i in range(10)])
    m = CptBlockMethod(CptConfig(steps=5, lr=1e-2, batch_size=2, seed_policy=policy),
                       MethodContext(eval_batch_size=3, adapter=adapter))
    m.fit(train, seed)
    return m, np.concatenate(m.predict(evals))


@pytest.mark.parametrize("method", ["ft", "ft-head", "cpt"])
def test_ft_and_cpt_follow_one_policy(tmp_path, method):
    """The same k-shot training examples, run seeds 0 and 3 (batches of 2 out of 4, so the order is
    training randomness; CPT also samples negatives and has dropout): one model under ``release``,
    two under ``per-run``, for ft, ft-head and CPT alike."""
    cls = {"ft": FineTuneMethod, "ft-head": LinearProbeMethod}.get(method)

    def run(seed, policy):
        return _cpt_scores(tmp_path, seed, policy) if cls is None else _ft_scores(tmp_path, seed, policy, cls)

    m0, s0 = run(0, "release")
    m3, s3 = run(3, "release")
    np.testing.assert_allclose(s0, s3, atol=1e-7)
    p0, q0 = run(0, "per-run")
    p3, q3 = run(3, "per-run")
    assert not np.allclose(q0, q3, atol=1e-4)
    assert m0.describe()["seed_policy"] == "release" and p3.describe()["seed_policy"] == "per-run"
    assert m0.describe()["train_seed_entropy"] == [88] and p3.describe()["train_seed_entropy"] == [88, 3]


def test_ft_and_cpt_draw_from_the_one_helper(tmp_path, monkeypatch):
    calls = []
    real = optim.training_randomness

    def spy(policy, model_seed, run_seed):
        calls.append((policy, model_seed, run_seed))
        return real(policy, model_seed, run_seed)

    monkeypatch.setattr(ftmod, "training_randomness", spy)
    monkeypatch.setattr(cpt_training, "training_randomness", spy)
    _ft_scores(tmp_path, 2, "release")
    _cpt_scores(tmp_path, 2, "release")
    _ft_scores(tmp_path, 1, "per-run")
    assert calls == [("release", 88, 2), ("release", 88, 2), ("per-run", 88, 1)]


def test_ft_step_factor(tmp_path):
    ctx = MethodContext(model="fake", adapter=FakeAdapter())
    m = FineTuneMethod(FineTuneConfig(steps=2, step_factor=3), ctx)
    m.fit(train_set(tmp_path, 2), 0)
    d = m.describe()
    assert len(m.losses) == 6 and d["steps"] == 6 and d["step_factor"] == 3 and d["warmup_steps"] == 1
    assert FineTuneConfig().step_factor == 1 and FineTuneConfig(steps=500, step_factor=10).total_steps == 5000
    with pytest.raises(ValueError, match="step_factor"):
        FineTuneConfig(step_factor=0)


def test_records_name_the_seed_policy(tmp_path, tiny_vilt_dir, synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    monkeypatch.delenv("CPTBENCH_TASKS_PATH", raising=False)
    res = tmp_path / "res"
    r = CliRunner().invoke(cli, ["run", "-m", "cpt", "-m", "ft", "-k", "1", "--seeds", "0", "--split", "val",
                                 "--model", str(tiny_vilt_dir), "--set", "steps=2", "--set", "cpt-blk.seed_policy=per-run",
                                 "--limit", "3", "--results", str(res), "--no-leaderboard"])
    assert r.exit_code == 0, r.output
    recs = {rec["method"]: rec for rec in map(json.loads, (res / "runs.jsonl").read_text().splitlines())}
    assert recs["cpt-blk"]["seed_policy"] == "per-run" and recs["ft"]["seed_policy"] == "release"
    assert recs["cpt-blk"]["method_info"]["box_pixels"] == "release"
    assert recs["cpt-blk"]["method_config"]["positives"] == "release" and recs["ft"]["method_config"]["step_factor"] == 1


def test_protocol_doc_lists_every_faithful_default():
    doc = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    table = doc[doc.index("Faithful default vs variant"):]
    for option, default in [("seed_policy", "release"), ("box_pixels", "release"), ("positives", "release"),
                            ("no_positive", "release"), ("step_factor", "1")]:
        assert f"`{option}`" in table and default in table, option
    for field, default in [("seed_policy", optim.DEFAULT_SEED_POLICY), ("box_pixels", "release"),
                           ("positives", cpt_training.POSITIVE_RULES[0]), ("no_positive", cpt_training.NO_POSITIVE_RULES[0])]:
        assert getattr(CptConfig(), field) == default
    assert FineTuneConfig().seed_policy == "release"
    # every "PROTOCOL section N" in the code points at this document
    for path in list((ROOT / "cptbench").rglob("*.py")) + list((ROOT / "baselines").rglob("*.py")):
        assert "PROTOCOL section" not in path.read_text(encoding="utf-8"), path
