"""A tiny refer-layout dataset written on the fly (no downloads): refs pickle, instances.json, PNGs."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = {"train": 6, "val": 3, "testA": 2, "testB": 2}


def write_refer_fixture(root: Path, dataset: str = "toyref", split_by: str = "unc", seed: int = 0,
                        splits: dict[str, int] = SPLITS, size: tuple[int, int] = (48, 32)) -> Path:
    rng = np.random.default_rng(seed)
    images, anns, refs = [], [], []
    img_dir = root / "images" / "train2014"
    img_dir.mkdir(parents=True, exist_ok=True)
    image_id = ann_id = ref_id = sent_id = 0
    for split, n_images in splits.items():
        for _ in range(n_images):
            image_id += 1
            w, h = size
            Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(img_dir / f"COCO_train2014_{image_id:012d}.png")
            images.append({"id": image_id, "file_name": f"COCO_train2014_{image_id:012d}.png", "width": w, "height": h})
            my_anns = []
            for j in range(3):
                ann_id += 1
                x, y = float(4 + 14 * j), float(rng.integers(0, 10))
                bw, bh = 10.0, 12.0
                poly = [x, y, x + bw, y, x + bw, y + bh, x, y + bh]
                anns.append({"id": ann_id, "image_id": image_id, "category_id": 1 + j % 2, "bbox": [x, y, bw, bh],
                             "area": bw * bh, "iscrowd": 0, "segmentation": [poly]})
                my_anns.append(ann_id)
            for target in my_anns[:2]:
                ref_id += 1
                sents = []
                for k in range(2):
                    sent_id += 1
                    text = f"the thing number {target} variant {k}"
                    sents.append({"sent_id": sent_id, "sent": text, "raw": text.title() + ".", "tokens": text.split()})
                refs.append({"ref_id": ref_id, "ann_id": target, "image_id": image_id, "category_id": 1, "split": split,
                             "sent_ids": [s["sent_id"] for s in sents], "sentences": sents,
                             "file_name": f"COCO_train2014_{image_id:012d}_{ref_id}.jpg"})
    ds = root / dataset
    ds.mkdir(parents=True, exist_ok=True)
    (ds / "instances.json").write_text(json.dumps({
        "images": images, "annotations": anns,
        "categories": [{"id": 1, "name": "cat", "supercategory": "animal"}, {"id": 2, "name": "dog", "supercategory": "animal"}],
    }))
    (ds / f"refs({split_by}).p").write_bytes(pickle.dumps(refs, protocol=2))
    return root


TASK_CARD = """\
name: {name}
version: 1
description: tiny refer-layout fixture for tests
source: refer
dataset: toyref
split_by: unc
train_split: train
eval_splits: [val, testA, testB]
default_model: none
image_dir: images/train2014
expected_counts:
  val: {{sentences: 12, refs: 6, images: 3}}
"""


def write_task_card(folder: Path, name: str = "toyref") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    p = folder / f"{name}.yaml"
    p.write_text(TASK_CARD.format(name=name))
    return p
