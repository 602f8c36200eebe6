"""Stand-ins for the generative prompting methods: a fixture whose expressions name their target's
colour, and a fake model that answers from what a model sees.

* :func:`colour_fixture` writes 64 x 64 PNG scenes of non-overlapping flat boxes, each in its own
  colour of :data:`OBJECT_COLOURS`, and one expression per box, "the <colour> box".
* :func:`fake_model` replaces a real tiny adapter's forward (tokenizer, image processor, prompt
  format, image-token expansion, positions, batching and cache row selection stay the family's
  own): for every prompt it reads the asking turn's expression from the decoded token ids and the
  asking turn's image back from the ``pixel_values`` the family's processor produced, finds the
  answer a perfect model would give (``vlm-colour``: the paint colour blended over the named box;
  ``vlm-mark``: the number whose label colour sits on it), and puts a high logit on that answer's
  tokens, one by one, through the cache it hands out. A prompt whose copy does not mark the named
  box gets no preference.
"""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
from PIL import Image

from cptbench.data.examples import Example, Label, TrainExample
from cptbench.data.images import file_image
from cptbench_baselines.vlm_regions import MARK_COLOURS, blend_rgb

OBJECT_COLOURS = {"gray": (128, 128, 128), "black": (20, 20, 20), "white": (250, 250, 250), "orange": (255, 140, 0),
                  "pink": (255, 105, 180), "brown": (120, 70, 20), "cyan": (0, 200, 200), "olive": (110, 120, 30)}
BACKGROUND = (200, 200, 190)
HIGH = 12.0


def colour_fixture(folder: Path, n_images: int = 6, seed: int = 0, side: int = 64):
    """``[(example, label, target index)]``: scenes of 3-7 boxes in distinct colours (module doc)."""
    rng = np.random.default_rng(seed)
    names = list(OBJECT_COLOURS)
    out = []
    for i in range(n_images):
        n = int(rng.integers(3, 8))
        img = np.empty((side, side, 3), dtype=np.uint8)
        img[:] = BACKGROUND
        cells = rng.permutation(16)[:n]  # a 4 x 4 grid of 16 px cells: boxes never overlap
        colours = rng.permutation(len(names))[:n]
        boxes = []
        for c, col in zip(cells, colours):
            x0, y0 = 16 * (c % 4) + int(rng.integers(1, 4)), 16 * (c // 4) + int(rng.integers(1, 4))
            x1, y1 = x0 + int(rng.integers(10, 13)), y0 + int(rng.integers(10, 13))
            img[y0:y1, x0:x1] = OBJECT_COLOURS[names[col]]
            boxes.append([x0, y0, x1, y1])
        path = Path(folder) / f"scene{i}.png"
        Image.fromarray(img).save(path)
        handle = file_image(path, (side, side))
        boxes = np.asarray(boxes, dtype=np.float64)
        for t, col in enumerate(colours):
            eid = f"{i}:{t}"
            ex = Example(eid, i, t, i, handle, (side, side), f"the {names[col]} box", boxes, tuple("box" for _ in boxes),
                         candidate_key=f"gt:{i}")
            out.append((ex, Label(eid, boxes[t]), t))
    return out


def train_examples(fixture) -> list[TrainExample]:
    """The fixture's expressions as training examples."""
    return [TrainExample(ex, label) for ex, label, _ in fixture]


def row_images(adapter, inputs, row: int) -> list[np.ndarray]:
    """The uint8 images of batch row ``row``, rebuilt from the family's ``pixel_values``."""
    import torch

    ids = inputs["input_ids"]
    image_token = adapter.placeholder_id
    starts = []  # (row, first token) of every image run, in row-major order
    for r in range(ids.shape[0]):
        is_img = (ids[r] == image_token).tolist()
        starts += [r for j, v in enumerate(is_img) if v and (j == 0 or not is_img[j - 1])]
    ip = adapter.image_processor
    mean = torch.tensor(ip.image_mean).view(3, 1, 1)
    std = torch.tensor(ip.image_std).view(3, 1, 1)
    pixels = inputs["pixel_values"].detach().cpu().float()
    images, offset = [], 0
    for k, r in enumerate(starts):
        if adapter.family == "llava":
            x = pixels[k]
        else:
            t, h, w = (int(v) for v in inputs["image_grid_thw"][k].tolist())
            m, tp, p = int(ip.merge_size), int(ip.temporal_patch_size), int(ip.patch_size)
            x = pixels[offset:offset + t * h * w].reshape(t, h // m, w // m, m, m, 3, tp, p, p)
            x = x.permute(0, 6, 5, 1, 3, 7, 2, 4, 8).reshape(t * tp, 3, h * p, w * p)[0]
            offset += t * h * w
        if r == row:
            images.append(((x * std + mean) * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy())
    return images


def _near(img: np.ndarray, rgb, tol: int = 2) -> np.ndarray:
    return (np.abs(img.astype(np.int64) - np.asarray(rgb)) <= tol).all(axis=-1)


def colour_answer(img: np.ndarray, name: str, palette, alpha: float) -> str | None:
    """The palette word painted over the box of colour ``name`` (None when it is unpainted)."""
    counts = [int(_near(img, blend_rgb(OBJECT_COLOURS[name], rgb, alpha)).sum()) for rgb in palette.rgb]
    best = int(np.argmax(counts))
    return palette.words[best] if counts[best] > 4 else None


def mark_answer(img: np.ndarray, name: str) -> str | None:
    """The number of the mark whose colour sits on the box of colour ``name`` (None without one)."""
    ys, xs = np.nonzero(_near(img, OBJECT_COLOURS[name], 0))
    if not len(ys):
        return None
    window = img[max(ys.min() - 1, 0):ys.max() + 2, max(xs.min() - 1, 0):xs.max() + 2]
    counts = [int(_near(window, rgb, 0).sum()) for rgb in MARK_COLOURS]
    best = int(np.argmax(counts))
    return str(best + 1) if counts[best] > 4 else None


class FakeCache:
    """The preferred answer ids of every row, reordered as a key-value cache's rows are."""

    def __init__(self, preferred):
        self.preferred = list(preferred)

    def batch_select_indices(self, index) -> None:
        """Keep rows ``index`` (repeats allowed), in place."""
        self.preferred = [self.preferred[int(i)] for i in index.tolist()]


def fake_model(adapter, answer):
    """Replace ``adapter.forward`` with the fake (module doc); ``answer(image, name)`` is
    :func:`colour_answer` or :func:`mark_answer` with the method's settings bound. Returns the adapter."""
    import torch

    vocab = len(adapter.tokenizer)

    def forward(self, inputs, cache=None, last_only=False):
        ids = inputs["input_ids"]
        rows, length = ids.shape
        logits = torch.zeros((rows, 1 if cache is None else length, vocab))
        if cache is None:
            preferred = []
            for r in range(rows):
                row = ids[r].tolist()
                last = max(j for j, v in enumerate(row) if v == self.placeholder_id)
                found = re.findall(r'"the (\w+) box"', self.tokenizer.decode(row[last + 1:]))
                pick = answer(row_images(self, inputs, r)[-1], found[-1]) if found else None
                preferred.append(self.answer_ids(pick) if pick is not None else ())
                if pick is not None:
                    logits[r, 0, preferred[-1][0]] = HIGH
            return logits, FakeCache(preferred)
        for r in range(rows):
            want = cache.preferred[r]
            fed = ids[r].tolist()
            for t in range(length):  # the token after the fed prefix, while it follows the preferred answer
                if t + 1 < len(want) and fed[:t + 1] == list(want[:t + 1]):
                    logits[r, t, want[t + 1]] = HIGH
        return logits, cache

    adapter.forward = types.MethodType(forward, adapter)
    return adapter
