"""Refer-layout datasets with a planted shortcut (or none), for the shortcut audit's tests.

Every image (96 x 72 px, one flat colour: there is nothing to see) holds 3-6 boxes of random
categories, each inside its own cell of a 4 x 3 grid, so no two candidates overlap and exactly one
hits a target. Each image has one ref with two sentences of random words that say nothing about the
target. Where the target is depends on ``rule``:

* ``"second"``: always the second annotation of the image (annotation order = candidate order);
* ``"leftmost"``: always the box whose centre is leftmost, annotations in random order;
* ``"random"``: a uniformly random candidate (no shortcut at all).

Everything comes from one ``numpy`` generator seeded with ``seed``: the same files on every machine.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

RULES = ("second", "leftmost", "random")
CATEGORIES = ("cat", "dog", "bird", "cup")
WORDS = ("the", "a", "thing", "one", "over", "there", "near", "this", "object", "please", "look", "at")
SIZE = (96, 72)
GRID = (4, 3)


def _target(rule: str, boxes: list[list[float]], rng: np.random.Generator) -> int:
    if rule == "second":
        return 1
    if rule == "leftmost":
        return int(np.argmin([x + w / 2 for x, _, w, _ in boxes]))
    return int(rng.integers(len(boxes)))


def write_shortcut_fixture(root: Path, rule: str, *, seed: int = 0, images: dict[str, int] | None = None,
                           dataset: str = "refcoco", split_by: str = "unc",
                           image_dir: str = "images/train2014") -> Path:
    """Write the data set of ``rule`` (module doc) under ``root`` in the refer layout of a card with
    ``dataset``, ``split_by`` and ``image_dir``; ``images``: images per split. Returns ``root``."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    images = images or {"train": 120, "val": 40, "testA": 40, "testB": 40}
    rng = np.random.default_rng(seed)
    w_img, h_img = SIZE
    cell_w, cell_h = w_img // GRID[0], h_img // GRID[1]
    img_dir = root / image_dir
    img_dir.mkdir(parents=True, exist_ok=True)
    blank = Image.new("RGB", SIZE, (200, 200, 200))
    img_rows, anns, refs = [], [], []
    image_id = ann_id = ref_id = sent_id = 0
    for split, n_images in images.items():
        for _ in range(n_images):
            image_id += 1
            name = f"COCO_train2014_{image_id:012d}.png"
            blank.save(img_dir / name)
            img_rows.append({"id": image_id, "file_name": name, "width": w_img, "height": h_img})
            n = int(rng.integers(3, 7))
            cells = rng.choice(GRID[0] * GRID[1], size=n, replace=False)
            boxes = []
            for c in cells:
                bw, bh = float(rng.integers(8, 17)), float(rng.integers(8, 17))
                x = float((c % GRID[0]) * cell_w + rng.integers(1, cell_w - bw))
                y = float((c // GRID[0]) * cell_h + rng.integers(1, cell_h - bh))
                boxes.append([x, y, bw, bh])
            cats = [int(k) for k in rng.integers(len(CATEGORIES), size=n)]
            target = _target(rule, boxes, rng)
            ids = []
            for box, cat in zip(boxes, cats):
                ann_id += 1
                ids.append(ann_id)
                x, y, bw, bh = box
                anns.append({"id": ann_id, "image_id": image_id, "category_id": cat + 1, "bbox": box,
                             "area": bw * bh, "iscrowd": 0,
                             "segmentation": [[x, y, x + bw, y, x + bw, y + bh, x, y + bh]]})
            ref_id += 1
            sents = []
            for _ in range(2):
                sent_id += 1
                text = " ".join(rng.choice(WORDS, size=int(rng.integers(2, 6))))
                sents.append({"sent_id": sent_id, "sent": text, "raw": text, "tokens": text.split()})
            refs.append({"ref_id": ref_id, "ann_id": ids[target], "image_id": image_id,
                         "category_id": cats[target] + 1, "split": split,
                         "sent_ids": [s["sent_id"] for s in sents], "sentences": sents, "file_name": name})
    ds = root / dataset
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "instances.json").write_text(json.dumps({
        "images": img_rows, "annotations": anns,
        "categories": [{"id": i + 1, "name": c, "supercategory": "thing"} for i, c in enumerate(CATEGORIES)],
    }))
    (ds / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root
