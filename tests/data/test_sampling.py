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


# ----------------------------------------------------------------------- the release's sampler
def _release_draw_line_by_line(refs_file, k, seed):
    """The release's few-shot draw, written out as it does it: the per-expression list of the train
    split in the refs file's order, each ref's sentences in order, ``random.seed(seed)``,
    ``random.shuffle(expressions)``, ``expressions[:k]`` (on the module-level generator)."""
    import pickle
    import random

    with open(refs_file, "rb") as f:
        refs = pickle.load(f)
    expressions = []
    for ref in refs:
        if ref["split"] == "train":
            for sent in ref["sentences"]:
                expressions.append((ref["ref_id"], sent["sent_id"]))
    state = random.getstate()
    try:
        random.seed(seed)
        random.shuffle(expressions)
        return expressions[:k]
    finally:
        random.setstate(state)


def test_release_sampler_equals_the_releases_draw_and_leaves_global_random_alone(tmp_path):
    import pickle
    import random

    from cptbench.data.sampling import DEFAULT_SAMPLER, draw_manifest
    from cptbench.run.session import DataSession
    from cptbench.tasks.spec import load_task_card
    from refer_fixture import write_refer_fixture, write_task_card

    root = write_refer_fixture(tmp_path / "data", splits={"train": 12, "val": 2, "testA": 1, "testB": 1})
    refs_file = root / "toyref" / "refs(unc).p"
    refs = pickle.loads(refs_file.read_bytes())  # shuffle the file's ref order: the release's draw follows it
    random.Random(7).shuffle(refs)
    refs_file.write_bytes(pickle.dumps(refs, protocol=2))
    task = load_task_card(write_task_card(tmp_path / "cards"))
    session = DataSession(str(root))
    before = random.getstate()
    for k in (1, 2, 4, 8, 16):
        for seed in range(5):
            got = session.manifest(task, k, seed, "release")
            assert list(got.examples) == _release_draw_line_by_line(refs_file, k, seed), (k, seed)
            assert got.sampler == "release" and got == Manifest.from_json(json.loads(json.dumps(got.to_json())))
    assert random.getstate() == before
    default = session.manifest(task, 4, 0)
    assert default.sampler == DEFAULT_SAMPLER and "sampler" not in default.to_json()
    assert default.examples != session.manifest(task, 4, 0, "release").examples
    with pytest.raises(Exception, match="sampler must be one of"):
        draw_manifest(task, session.train_pairs(task), 1, 0, "numpy")


def test_release_sampler_runs_end_to_end_with_its_own_manifests_and_ids(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from cptbench.cli.main import cli
    from cptbench.results.store import ResultsStore
    from refer_fixture import write_refer_fixture, write_task_card

    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    common = ["run", "-t", "toyref", "-m", "category-prior", "-k", "0,2", "--seeds", "0", "--data-root", str(root),
              "--results", str(res), "--no-leaderboard"]
    for extra in ([], ["--sampler", "release"], ["--set", "sampler=release"]):
        r = CliRunner().invoke(cli, common + extra)
        assert r.exit_code == 0, r.output
    recs = ResultsStore(res).records()
    by = {(r.shots, r.sampler) for r in recs}
    assert by == {(0, "cptbench"), (2, "cptbench"), (2, "release")}  # zero-shot draws nothing: shared
    assert len(recs) == 9  # 3 splits x (k=0, k=2 default, k=2 release); the --set spelling adds nothing
    assert (res / "splits" / "toyref" / "k2_s0_release.json").is_file() and (res / "splits" / "toyref" / "k2_s0.json").is_file()
    release = {r.split: r for r in recs if r.sampler == "release"}
    assert all(r.manifest_path.endswith("k2_s0_release.json") for r in release.values())
    r = CliRunner().invoke(cli, common + ["--sampler", "release", "--set", "sampler=cptbench"])
    assert r.exit_code == 2 and "disagrees" in r.output
    r = CliRunner().invoke(cli, ["leaderboard", "--results", str(res), "--format", "csv"])
    assert r.exit_code == 0 and "[sampler release]" in r.output
