"""Sealed evaluation: a plug-in that tries to read the evaluation labels (through the image
handle's paths, the caller's frames, the garbage collector, or earlier predictions next to its
artifacts folder) reaches them in-process and gets nothing sealed; honest methods give the same
records sealed and unsealed."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.results.store import ResultsStore
from refer_fixture import write_refer_fixture, write_task_card

import cheat_methods  # noqa: F401  (registers the cheats, as a plug-in package would)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sealed")
    root = write_refer_fixture(tmp / "data", splits={"train": 4, "val": 6, "testA": 2, "testB": 2})
    write_task_card(tmp / "cards")
    return tmp, root


def run(toy, monkeypatch, res, *args):
    tmp, root = toy
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp / "cache"))
    r = CliRunner().invoke(cli, ["run", "-t", "toyref", "-k", "0", "--seeds", "0", "--split", "val", "--data-root", str(root),
                                 "--results", str(res), "--no-leaderboard", *args])
    assert r.exit_code == 0, r.output
    return {rec.method: rec for rec in ResultsStore(res).records()}


@pytest.mark.parametrize("cheat", ["cheat-paths", "cheat-frames", "cheat-gc", "cheat-results"])
def test_each_label_route_works_in_process_and_is_closed_when_sealed(toy, monkeypatch, cheat):
    tmp = toy[0]
    res = tmp / f"res-{cheat}"
    base = run(toy, monkeypatch, res, "-m", "oracle,first-candidate")  # earlier runs in the folder (cheat-results)
    chance = base["first-candidate"].accuracy  # what every cheat falls back to
    assert chance < 100.0
    unsealed = run(toy, monkeypatch, res, "-m", cheat, "--no-sealed")[cheat]
    assert not unsealed.sealed
    if cheat == "cheat-results":  # closed even in-process: artifacts_dir is a scratch folder outside the results
        assert unsealed.accuracy == chance
    else:
        assert unsealed.accuracy == 100.0  # the route is open in-process: no in-process contract stops it
    sealed_res = tmp / f"res-{cheat}-sealed"
    run(toy, monkeypatch, sealed_res, "-m", "oracle,first-candidate")
    sealed = run(toy, monkeypatch, sealed_res, "-m", cheat)[cheat]  # sealed by default: not part of cptbench
    assert sealed.sealed and sealed.accuracy == chance and sealed.method_info.get("sealed") is True


def test_honest_methods_give_the_same_predictions_sealed(toy, monkeypatch):
    tmp = toy[0]
    args = ["-m", "random,category-prior,cpt", "-k", "0,2", "--set", "cpt.steps=2", "--model", "bundled:mini-vilt"]
    plain = run(toy, monkeypatch, tmp / "plain", *args)
    sealed = run(toy, monkeypatch, tmp / "sealed", *args, "--sealed")
    for name, rec in plain.items():
        assert not rec.sealed and sealed[name].sealed
        assert sealed[name].predictions_sha256 == rec.predictions_sha256 and sealed[name].run_id == rec.run_id
