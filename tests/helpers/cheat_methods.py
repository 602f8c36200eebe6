"""Malicious plug-in methods for the sealed-evaluation tests: each tries one route to the evaluation
labels and, when the route is closed, falls back to the first candidate. Importing this module
registers them (as a third-party package's entry points would)."""

from __future__ import annotations

import gc
import json
import pickle
import sys
from pathlib import Path

import numpy as np

from cptbench.methods import Method
from cptbench.methods.registry import method_registry


def _pick(example, target_box) -> np.ndarray:
    """Scores that pick the candidate closest to ``target_box`` (or the first one without it)."""
    scores = np.zeros(example.n_candidates)
    if target_box is None or not example.n_candidates:
        if example.n_candidates:
            scores[0] = 1.0
        return scores
    d = np.abs(np.asarray(example.boxes, dtype=np.float64) - np.asarray(target_box, dtype=np.float64)).sum(axis=1)
    scores[int(np.argmin(d))] = 1.0
    return scores


class ThroughPaths(Method):
    """Follows the image handle's private paths to the data root and reads the refer annotations."""

    def predict(self, examples):
        out = []
        for ex in examples:
            box = None
            try:
                image_path = next(iter(ex.image_handle._source._paths.values()))
                root = Path(image_path).parents[2]
                refs = pickle.loads(next(root.glob("*/refs(*).p")).read_bytes())
                anns = {a["id"]: a for a in json.loads(next(root.glob("*/instances.json")).read_text())["annotations"]}
                ann = anns[next(r for r in refs if r["ref_id"] == ex.ref_id)["ann_id"]]
                x, y, w, h = ann["bbox"]
                box = [x, y, x + w, y + h]
            except Exception:  # noqa: BLE001 - the route is closed
                pass
            out.append(_pick(ex, box))
        return out


class ThroughFrames(Method):
    """Walks up the caller's frames for a ``labels`` mapping of the split."""

    def predict(self, examples):
        labels = None
        frame = sys._getframe(1)
        while frame is not None and labels is None:
            for value in frame.f_locals.values():
                found = getattr(value, "labels", None)
                if isinstance(found, dict) and examples and examples[0].example_id in found:
                    labels = found
                    break
            frame = frame.f_back
        return [_pick(ex, labels[ex.example_id].box if labels else None) for ex in examples]


class ThroughGC(Method):
    """Searches every live object for the labels."""

    def predict(self, examples):
        from cptbench.data.examples import Label

        wanted = {ex.example_id for ex in examples}
        labels = {o.example_id: o for o in gc.get_objects() if type(o) is Label and o.example_id in wanted}
        return [_pick(ex, labels[ex.example_id].box if ex.example_id in labels else None) for ex in examples]


class ThroughResults(Method):
    """Reads earlier runs' predictions next to its artifacts folder (which used to lie in the
    results folder) and picks what was marked correct there."""

    def predict(self, examples):
        right: dict[str, int] = {}
        folder = self.context.artifacts_dir
        for up in ([folder, *folder.parents][:4] if folder else []):
            for f in Path(up).glob("predictions/*.jsonl"):
                for line in f.read_text().splitlines():
                    row = json.loads(line)
                    if row.get("correct"):
                        right[row["example_id"]] = row["pred"]
        out = []
        for ex in examples:
            scores = _pick(ex, None)
            if ex.example_id in right and right[ex.example_id] < ex.n_candidates:
                scores = np.zeros(ex.n_candidates)
                scores[right[ex.example_id]] = 1.0
            out.append(scores)
        return out


CHEATS = {"cheat-paths": ThroughPaths, "cheat-frames": ThroughFrames, "cheat-gc": ThroughGC,
          "cheat-results": ThroughResults}
for _name, _cls in CHEATS.items():
    if _name not in method_registry():
        method_registry().add(_name, lambda c=_cls: c, origin="tests/helpers/cheat_methods.py")
