"""k-shot draws: the same on every machine and process, different per (task, k, seed), from the train split only, tamper-evident manifests."""

import json
import os
import subprocess
import sys

import pytest

from cptbench.data.sampling import Manifest, sample_k_shot

PAIRS = [(r, s) for r in range(1, 200) for s in (2 * r, 2 * r + 1)]


def test_same_draw_for_same_task_k_seed_and_different_for_others():
    a = sample_k_shot("refcoco", 1, PAIRS, 8, 3)
    assert a == sample_k_shot("refcoco", 1, list(reversed(PAIRS)), 8, 3)  # file order does not matter
    assert len(set(a.examples)) == 8
    assert a.examples != sample_k_shot("refcoco", 1, PAIRS, 8, 4).examples
    assert a.examples != sample_k_shot("refcoco+", 1, PAIRS, 8, 3).examples


def test_zero_shot_and_too_many():
    assert sample_k_shot("t", 1, PAIRS, 0, 0).examples == ()
    with pytest.raises(ValueError, match="only"):
        sample_k_shot("t", 1, PAIRS[:3], 4, 0)


def test_manifest_json_round_trip_and_tamper_detection():
    m = sample_k_shot("t", 1, PAIRS, 4, 0)
    assert Manifest.from_json(json.loads(json.dumps(m.to_json()))) == m
    bad = m.to_json()
    bad["examples"][0]["ref_id"] += 1
    with pytest.raises(ValueError, match="sha256"):
        Manifest.from_json(bad)


def test_identical_across_processes_with_different_hash_seeds():
    code = ("from cptbench.data.sampling import sample_k_shot;"
            "pairs=[(r, s) for r in range(1, 200) for s in (2*r, 2*r+1)];"
            "print({str(k): sample_k_shot('refcoco', 1, set(pairs), k, 1).sha256 for k in (1, 4, 16)})")
    outs = set()
    for hash_seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1


def test_manifests_draw_only_from_train_split(tmp_path):
    from cptbench.run.engine import Runner
    from cptbench.run.plan import RunRequest
    from cptbench.results.store import ResultsStore
    from cptbench.tasks.spec import load_task_card
    from refer_fixture import write_refer_fixture, write_task_card

    root = write_refer_fixture(tmp_path / "data")
    task = load_task_card(write_task_card(tmp_path / "cards"))
    runner = Runner(RunRequest([task], ["random"], [4], data_root=str(root)), ResultsStore(tmp_path / "res"))
    ds = runner.session.dataset(task)
    eval_pairs = {(r["ref_id"], s["sent_id"]) for split in task.eval_splits for r in ds.refs_of(split) for s in r["sentences"]}
    eval_images = {r["image_id"] for split in task.eval_splits for r in ds.refs_of(split)}
    for seed in range(5):
        m = runner.session.manifest(task, 4, seed)
        assert not set(m.examples) & eval_pairs
        train = runner.session.train_examples(task, m, "gt")
        assert [(t.example.ref_id, t.example.sent_id) for t in train] == list(m.examples)
        assert all(t.example.split == "train" and t.example.image_id not in eval_images for t in train)
