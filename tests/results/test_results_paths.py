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
