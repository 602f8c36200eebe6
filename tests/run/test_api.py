"""The public Python API: ``cptbench.evaluate`` runs what ``cptbench run`` runs and returns the typed
records; the README's example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import cptbench
from cptbench.core.errors import UsageError

README = Path(__file__).resolve().parents[2] / "README.md"


def test_evaluate_returns_every_asked_run_new_or_recorded(tmp_path, synthref_cache, monkeypatch):
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    res = tmp_path / "res"
    recs = cptbench.evaluate(methods=["random", "oracle"], shots=0, seeds=[0, 1], limit=5, results=str(res))
    assert [(r.method, r.seed, r.split) for r in recs] == [
        ("random", 0, "val"), ("random", 0, "testA"), ("random", 0, "testB"),
        ("random", 1, "val"), ("random", 1, "testA"), ("random", 1, "testB"),
        ("oracle", 0, "val"), ("oracle", 0, "testA"), ("oracle", 0, "testB")]
    assert all(isinstance(r, cptbench.RunRecord) and r.n == 5 for r in recs)
    assert all(r.accuracy == 100.0 for r in recs if r.method == "oracle")
    again = cptbench.evaluate(methods=["oracle"], shots=[0], seeds=[0], limit=5, results=str(res))
    assert [r.run_id for r in again] == [r.run_id for r in recs if r.method == "oracle"]  # found, not recomputed
    assert len(cptbench.load_records(str(res))) == 9
    with pytest.raises(UsageError, match="did you mean|Did you mean"):
        cptbench.evaluate(methods="oracel", shots=0, results=str(res))


def test_records_frame_has_one_row_per_run(tmp_path, synthref_cache, monkeypatch):
    pd = pytest.importorskip("pandas")
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    recs = cptbench.evaluate(methods="random", shots=0, seeds=[0], limit=4, results=str(tmp_path / "r"))
    frame = cptbench.records_frame(recs)
    assert isinstance(frame, pd.DataFrame) and len(frame) == 3
    assert list(frame["split"]) == ["val", "testA", "testB"] and (frame["n"] == 4).all()
    from cptbench.api import FRAME_COLUMNS

    assert list(frame.columns[:len(FRAME_COLUMNS)]) == list(FRAME_COLUMNS)


def test_import_is_light_and_names_are_listed():
    out = subprocess.run([sys.executable, "-c", "import sys, cptbench; cptbench.list_methods(); cptbench.list_tasks(); "
                          "print('torch' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert "cpt-blk" in cptbench.list_methods() and "synthref" in cptbench.list_tasks()


def test_the_readme_example_runs(tmp_path, synthref_cache, monkeypatch):
    text = README.read_text()
    block = re.search(r"<!-- api:example -->\n```python\n(.*?)```", text, re.S)
    assert block, "README.md lacks the <!-- api:example --> block"
    monkeypatch.setenv("CPTBENCH_CACHE", str(synthref_cache))
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block.group(1), "README.md (api example)", "exec"), scope)  # noqa: S102 - our own README
    assert scope["records"] and all(r.task == "synthref" for r in scope["records"])
