"""Published reference numbers (accuracy %, Acc@0.5) quoted in the protocol notes, for showing
beside measured rows; read by ``cptbench.report.references`` through the ``cptbench.references``
entry-point group.

``published.csv`` holds one row per (task, split, method, backbone, shots, proposals):

* ``shots``: 0 for zero-shot rows, ``full`` for the fully supervised reference (MDETR);
* ``proposals``: ``det:mattnet`` (MAttNet's Mask R-CNN detections), ``gt`` (all COCO annotations
  of the image), or ``n/a (predicts boxes)`` for the models that use no proposals: MDETR regresses
  boxes, and the zero-shot generalists Kosmos-2 and Florence-2-L write a box as location tokens;
* ``source``: the paper and table the number was read from.
"""

from __future__ import annotations

import csv
import io
from importlib.resources import files
from typing import Any

COLUMNS = ("task", "split", "method", "backbone", "shots", "proposals", "accuracy", "source")


def published_rows() -> list[dict[str, Any]]:
    """The rows of ``published.csv``; ``accuracy`` as float, ``shots`` as int (or ``"full"``)."""
    text = files(__package__).joinpath("published.csv").read_text(encoding="utf-8")
    reader = csv.DictReader(io.StringIO(text))
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise ValueError(f"published.csv: expected columns {COLUMNS}, got {reader.fieldnames}")
    rows = []
    for line, row in enumerate(reader, start=2):
        try:
            accuracy = float(row["accuracy"])
        except ValueError:
            raise ValueError(f"published.csv line {line}: accuracy {row['accuracy']!r} is not a number") from None
        shots = row["shots"]
        rows.append({**row, "accuracy": accuracy, "shots": int(shots) if shots.isdigit() else shots})
    return rows
