"""Re-reading the examples behind prediction rows (for ``errors`` and the report's gallery).

Prediction files hold ids, picks, scores and correctness, not expressions or boxes; those come from
the task's data, read again now. A run made with detections needs the same detections file (its
setting, name and content hash, must match). The candidate count of each example is checked
against the length of its recorded score list, so data that changed since the run is caught.
"""

from __future__ import annotations

from typing import Any, Iterable

from cptbench.core.errors import UsageError


def open_task(task: str, data_root=None, images=None):
    """(task card, dataset) of ``task``, its data read from ``data_root`` / ``images``."""
    from cptbench.data.source import open_dataset
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    return spec, open_dataset(spec, data_root, images)


def load_examples(ds, split: str, example_ids: Iterable[str], proposals_setting: str, proposals_file=None,
                  skip_bad: bool = False, strict: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(example id -> Example, example id -> Label) for the given ids of ``split``, read under the data
    policy of the runs (``skip_bad``, ``strict``: --strict-data)."""
    pairs = []
    for eid in example_ids:
        ref, _, sent = str(eid).partition(":")
        pairs.append((int(ref), int(sent)))
    dets = None
    if proposals_setting != "gt":
        if proposals_file is None:
            raise UsageError(f"these runs used detections ({proposals_setting}); give the same file with --proposals FILE "
                             f"to read their candidates again.")
        from cptbench.data.proposals import load_detections

        dets = load_detections(proposals_file)
        if dets.setting != proposals_setting:
            raise UsageError(f"--proposals {proposals_file}: its setting is {dets.setting}, the runs used {proposals_setting}; "
                             f"give the detections file the runs were made with.")
    data = ds.load_split(split, dets, ref_filter=pairs, skip_bad=skip_bad, strict=strict)
    return {ex.example_id: ex for ex in data.examples}, dict(data.labels)
