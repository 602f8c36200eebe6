"""Run ids of existing results never change by accident: the ids of a fixed grid of plans (every
bundled task card, every registered method with its card defaults, a few --set variants, limits,
the data policy and a detections setting) must equal the ids recorded in ``golden/run_ids.json``.

The model and data fingerprints are fixed strings here (their own tests cover them), so the ids
depend only on how cptbench turns a request into run identities. A change that moves an id on
purpose (a method's results change) updates the golden file in the same commit and says why.
Regenerate with ``CPTBENCH_WRITE_GOLDEN=1 python -m pytest tests/run/test_golden_run_ids.py``.
"""

from __future__ import annotations

import json
import os
from importlib.metadata import entry_points
from pathlib import Path

from cptbench.run.plan import RunRequest, plan, run_specs
from cptbench.tasks.cards import get_task

GOLDEN = Path(__file__).parent / "golden" / "run_ids.json"

VARIANTS = {
    "plain": {},
    "release5-ratio": {"palette": "release5", "score": "ratio"},
    "ft-steps": {"ft.steps": "7", "ft-head.lr": "0.001"},
}


def _installed_methods() -> list[str]:
    """The methods the package installs (not the ones other tests register in this process)."""
    return sorted(ep.name for ep in entry_points(group="cptbench.methods"))


def _ids() -> dict[str, str]:
    out: dict[str, str] = {}
    for task_name in ("synthref", "refcoco", "refcoco+", "refcocog"):
        task = get_task(task_name)
        for variant, options in VARIANTS.items():
            methods = _installed_methods() if variant == "plain" else (
                ["cpt-blk", "cpt-seg"] if variant.startswith("release5") else ["ft", "ft-head"])
            for limit, skip_bad, proposals in ((None, False, "gt"), (5, True, "det:dets.json:" + "ab" * 32)):
                request = RunRequest(tasks=[task], methods=methods, shots=[0, 1, 16], seeds=[0, 3],
                                     options=options, limit=limit, skip_bad=skip_bad)
                for job in plan(request):
                    for spec in run_specs(job, model_fp="model-fp-0123", data_fp="data-fp-4567",
                                          proposal_setting=proposals, limit=limit, skip_bad=skip_bad):
                        split = spec.split
                        key = (f"{task.name}|{variant}|{job.method_cls.name}|k{job.shots}|s{job.seed}|{split}|"
                               f"limit={limit}|skip_bad={skip_bad}|{proposals[:3]}")
                        out[key] = spec.run_id
    return out


def test_run_ids_equal_the_golden_file():
    ids = _ids()
    if os.environ.get("CPTBENCH_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps(ids, indent=1, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    missing = sorted(set(golden) - set(ids))
    assert not missing, f"plans no longer produced: {missing[:5]}"
    changed = sorted(k for k in golden if golden[k] != ids[k])
    assert not changed, f"{len(changed)} run ids changed, e.g. {changed[:5]}"
    assert len(ids) == len(golden) > 500
