"""Published reference numbers (accuracy %, Acc@0.5) quoted in the protocol notes, for showing
beside measured rows; read by ``cptbench.report.references`` through the ``cptbench.references``
entry-point group.

``published.csv`` holds one row per (task, split, method, backbone, shots, proposals):

* ``shots``: 0 for zero-shot rows, ``full`` for the fully supervised reference (MDETR);
* ``proposals``: ``det:mattnet`` (MAttNet's Mask R-CNN detections), ``gt`` (all COCO annotations
  of the image), or ``n/a (predicts boxes)`` for the models that use no proposals: MDETR regresses
  boxes, and the zero-shot generalists Kosmos-2 and Florence-2-L write a box as location tokens;
* ``source``: the paper and table the number was read from.

``published_fewshot.csv`` holds few-shot rows (k >= 1) with their spread over seeds: the same
columns plus ``std`` (population std over the seeds, percentage points) and ``seeds`` (how many).
It is empty on purpose: the CPT paper's per-shot table (Yao et al. 2021: CPT-Blk, CPT-Seg and
fine-tuning on RefCOCO / RefCOCO+ / RefCOCOg at k = 1..16) could not be read from a source that can
be cited here (the arXiv abstract page, the thunlp/CPT README and the papers quoting CPT that were
searched give its zero-shot rows and its headline only), and a number is never written from memory.
Add a row only with the paper's table named in ``source``.

``published_claims.csv`` holds headline claims a comparison is checked against: ``method`` beats
``baseline`` by ``gain`` accuracy points and a ``rsd_reduction`` % lower relative standard
deviation at ``shots`` on ``task`` (the CPT paper's abstract: +17.3 points, 73.8% at one shot on
RefCOCO). :func:`published_rows` returns them with ``kind: "claim"``.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files
from typing import Any

COLUMNS = ("task", "split", "method", "backbone", "shots", "proposals", "accuracy", "source")
#: the few-shot file's columns: COLUMNS with the spread over seeds
FEWSHOT_COLUMNS = ("task", "split", "method", "backbone", "shots", "proposals", "accuracy", "std", "seeds", "source")
#: the claims file's columns
CLAIM_COLUMNS = ("task", "shots", "method", "baseline", "backbone", "gain", "rsd_reduction", "averaging", "source")


def _read(name: str, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    text = files(__package__).joinpath(name).read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != columns:
        raise ValueError(f"{name}: expected columns {columns}, got {reader.fieldnames}")
    return list(enumerate(reader, start=2))


def _number(name: str, line: int, row: dict[str, str], key: str) -> float:
    try:
        return float(row[key])
    except (TypeError, ValueError):
        raise ValueError(f"{name} line {line}: {key} {row[key]!r} is not a number") from None


def published_rows() -> list[dict[str, Any]]:
    """The rows of ``published.csv`` and ``published_fewshot.csv`` (``accuracy`` and ``std`` as
    floats, ``shots`` and ``seeds`` as int, ``shots`` ``"full"`` for the supervised reference), then
    the claims of ``published_claims.csv`` with ``kind: "claim"`` (``gain``, ``rsd_reduction`` as floats)."""
    rows = []
    for name, columns in (("published.csv", COLUMNS), ("published_fewshot.csv", FEWSHOT_COLUMNS)):
        for line, row in _read(name, columns):
            shots = row["shots"]
            out = {**row, "accuracy": _number(name, line, row, "accuracy"), "shots": int(shots) if shots.isdigit() else shots}
            if "std" in row:
                out["std"] = _number(name, line, row, "std")
                out["seeds"] = int(_number(name, line, row, "seeds"))
            rows.append(out)
    for line, row in _read("published_claims.csv", CLAIM_COLUMNS):
        rows.append({**row, "kind": "claim", "shots": int(row["shots"]), "gain": _number("published_claims.csv", line, row, "gain"),
                     "rsd_reduction": _number("published_claims.csv", line, row, "rsd_reduction")})
    return rows
