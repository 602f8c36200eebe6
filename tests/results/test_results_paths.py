"""Paths read back from records stay inside the results folder (ResultsLayout.inside)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from cptbench.cli.main import cli
from cptbench.core.errors import ResultsError
from cptbench.report.selection import load_predictions
from cptbench.results.store import ResultsStore
from record_fixture import make_record


def _store_with(tmp_path, predictions_path: str) -> ResultsStore:
    store = ResultsStore(tmp_path / "res")
    store.check_writable()
    (tmp_path / "outside.jsonl").write_text('{"example_id": "1:1", "correct": true}\n')
    store.append_record(make_record(predictions_path=predictions_path))
    return store


def test_predictions_outside_the_folder_are_refused(tmp_path):
    store = _store_with(tmp_path, "../outside.jsonl")
    (rec,) = store.records()
    with pytest.raises(ResultsError, match="outside the results folder"):
        load_predictions(store, rec)


def test_delete_refuses_a_record_pointing_outside_before_moving_anything(tmp_path):
    store = _store_with(tmp_path, "../outside.jsonl")
    r = CliRunner().invoke(cli, ["runs", "--results", str(store.root), "--delete", "--yes"])
    assert r.exit_code == 1 and "outside the results folder" in r.output
    assert len(store.records()) == 1 and not store.layout.deleted_runs.exists()
    assert (tmp_path / "outside.jsonl").is_file()


# --------------------------------------------------------------------- verified predictions
def _real_store(tmp_path, monkeypatch):
    """A results folder with one real run of the refer fixture (oracle: every row correct)."""
    from refer_fixture import write_refer_fixture, write_task_card

    root = write_refer_fixture(tmp_path / "data")
    write_task_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    res = tmp_path / "res"
    for method in ("random", "oracle"):
        r = CliRunner().invoke(cli, ["run", "-t", "toyref", "-m", method, "-k", "0", "--seeds", "0", "--data-root", str(root),
                                     "--results", str(res), "--no-leaderboard"])
        assert r.exit_code == 0, r.output
    return ResultsStore(res), root


def test_a_tampered_predictions_file_is_refused_by_every_reader(tmp_path, monkeypatch):
    import json

    store, root = _real_store(tmp_path, monkeypatch)
    rec = next(r for r in store.records() if r.method == "random" and r.split == "val")
    path = store.root / rec.predictions_path
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row["correct"] = True  # every pick "right" now
    path.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    with pytest.raises(ResultsError, match="sha256") as info:
        load_predictions(store, rec)
    assert str(path) in str(info.value) and "runs.jsonl" in str(info.value)
    for args in (["compare", "random", "oracle", "-k", "0", "-t", "toyref"],
                 ["errors", "-m", "random", "-t", "toyref", "--split", "val", "--data-root", str(root)]):
        r = CliRunner().invoke(cli, [*args, "--results", str(store.root)])
        assert r.exit_code == 1 and "sha256" in r.output and "Traceback" not in r.output, (args, r.output)


@pytest.mark.parametrize("edit, match", [
    ({"accuracy": 150.0}, "not a percentage"),
    ({"accuracy": float("inf")}, "not a percentage"),
    ({"n_correct": 11}, "more than n"),
    ({"accuracy": 30.0, "n_correct": 5}, "n_correct / n"),
    ({"n_invalid": -1}, "below 0"),
    ({"predict_seconds": float("nan")}, "predict_seconds"),
])
def test_a_record_whose_numbers_cannot_be_true_is_refused_with_its_line(tmp_path, edit, match):
    import json

    store = ResultsStore(tmp_path / "res")
    store.check_writable()
    store.append_record(make_record(run_id="good"))
    line = {**make_record(run_id="bad").to_json(), **edit}
    with open(store.runs_path, "a") as f:
        f.write(json.dumps(line, allow_nan=True) + "\n")
    with pytest.raises(ResultsError, match=match) as info:
        store.records()
    assert "line 2" in str(info.value)
    r = CliRunner().invoke(cli, ["leaderboard", "--results", str(store.root)])
    assert r.exit_code == 1 and "line 2" in r.output and "Traceback" not in r.output
