"""Run identity covers what decides the result: the model's files, the data's files, not their paths."""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from cptbench.report.aggregate import aggregate
from cptbench.report.tables import wide_tables
from cptbench.cli.main import cli
from cptbench.core.hashing import file_sha256
from cptbench.run.fingerprint import model_fingerprint
from cptbench.results.store import ResultsStore
from record_fixture import make_record
from refer_fixture import write_refer_fixture, write_task_card


@pytest.fixture
def toy(tmp_path, monkeypatch):
    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path, root


def run(root, res, *extra):
    r = CliRunner().invoke(cli, ["run", "-t", "toyref", "--data-root", str(root), "--results", str(res),
                                 "--no-leaderboard", *extra])
    assert r.exit_code == 0, r.output
    return r.output


def test_editing_instances_json_makes_new_runs_and_a_moved_copy_does_not(toy):
    tmp, root = toy
    res = tmp / "res"
    assert "3 new runs" in run(root, res, "-m", "oracle", "-k", "0")
    moved = tmp / "moved"
    shutil.copytree(root, moved)
    assert "0 new runs" in run(moved, res, "-m", "oracle", "-k", "0")  # same content elsewhere: same runs
    inst = moved / "toyref" / "instances.json"
    data = json.loads(inst.read_text())
    data["annotations"][0]["bbox"][2] += 1.0  # fix a box
    inst.write_text(json.dumps(data))
    assert "3 new runs" in run(moved, res, "-m", "oracle", "-k", "0")
    recs = ResultsStore(res).records()
    assert len({r.data_fingerprint for r in recs}) == 2
    # the leaderboard never mixes the two data versions in one row, and says they differ
    rows = aggregate(recs)
    assert len(rows) == 6 and all(r.n_seeds == 1 for r in rows)
    labels = {row[1] for t in wide_tables(rows) for row in t.rows}
    assert len(labels) == 2 and all("[data " in lab for lab in labels)


def test_an_image_of_another_size_makes_new_runs(toy):
    tmp, root = toy
    res = tmp / "res"
    run(root, res, "-m", "random", "-k", "0", "--seeds", "0")
    img = sorted((root / "images" / "train2014").glob("*.png"))[-1]
    img.write_bytes(img.read_bytes() + b"\0" * 16)  # same pixels, another file
    assert "3 new runs" in run(root, res, "-m", "random", "-k", "0", "--seeds", "0")


def _perturb_weights(folder):
    from safetensors.torch import load_file, save_file

    f = folder / "model.safetensors"
    tensors = load_file(str(f))
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.5
    save_file(tensors, str(f), metadata={"format": "pt"})


def test_replacing_the_weights_of_a_model_dir_makes_new_runs(toy, tiny_vilt_dir):
    tmp, root = toy
    model = tmp / "model"
    shutil.copytree(tiny_vilt_dir, model)
    res = tmp / "res"
    args = ("-m", "cpt", "-k", "0", "--split", "val", "--limit", "2", "--model", str(model))
    assert "1 new runs" in run(root, res, *args)
    before = model_fingerprint(str(model))[0]
    (model / "README.md").write_text("notes do not change a model\n")
    assert model_fingerprint(str(model))[0] == before
    assert "0 new runs" in run(root, res, *args)
    _perturb_weights(model)
    assert model_fingerprint(str(model))[0].digest != before.digest
    assert "1 new runs" in run(root, res, *args)
    recs = ResultsStore(res).records()
    assert len({r.model_fingerprint for r in recs}) == 2
    assert all(r.model_source["kind"] == "local" and "model.safetensors" in r.model_source["files"] for r in recs)


def test_file_hash_cache_follows_content_not_time(tmp_path, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    f = tmp_path / "a.bin"
    f.write_bytes(b"one")
    h1 = file_sha256(f)
    f.write_bytes(b"two")  # same size: the stamp (mtime, inode) still changes
    assert file_sha256(f) != h1
    f.write_bytes(b"one")
    assert file_sha256(f) == h1


def test_hub_snapshot_fingerprint_uses_commit_and_blob_names(tmp_path, monkeypatch):
    from cptbench.run.fingerprint import snapshot_fingerprint

    snap = tmp_path / "models--org--m" / "snapshots" / "abc123"
    blobs = tmp_path / "models--org--m" / "blobs"
    snap.mkdir(parents=True)
    blobs.mkdir()
    for name, blob in (("config.json", "c0ffee"), ("model.safetensors", "deadbeef")):
        (blobs / blob).write_text(name)
        (snap / name).symlink_to(blobs / blob)
    fp = snapshot_fingerprint(snap, "org/m")
    assert fp.source["commit"] == "abc123" and fp.source["files"] == {"config.json": "c0ffee", "model.safetensors": "deadbeef"}


def test_schema_1_records_still_read_and_never_pass_for_todays_runs(toy):
    tmp, root = toy
    res = tmp / "res"
    res.mkdir()
    old = make_record(run_id="old1").to_json()
    for k in ("schema_version", "model_fingerprint", "data_fingerprint", "skip_bad", "n_skipped", "perf",
              "predictions_sha256", "results_version", "seed_policy", "model_source", "data_source"):
        old.pop(k)
    (res / "runs.jsonl").write_text(json.dumps(old) + "\n")
    rec, = ResultsStore(res).records()
    assert rec.model_fingerprint == "unknown" and rec.schema_version == 2
    assert "3 new runs" in run(root, res, "-m", "oracle", "-k", "0")
    r = CliRunner().invoke(cli, ["leaderboard", "--results", str(res)])
    assert r.exit_code == 0, r.output


def test_newer_schema_is_refused_with_the_line(tmp_path):
    (tmp_path / "runs.jsonl").write_text(json.dumps({**make_record().to_json(), "schema_version": 99}) + "\n")
    with pytest.raises(Exception, match=r"runs.jsonl: line 1.*newer cptbench"):
        ResultsStore(tmp_path).records()
