"""A stand-in dual encoder that reads colours, and scenes of coloured squares to test the
visual-prompt methods' bookkeeping without a model.

:class:`ColourDualEncoder` embeds an image as its counts of pixels of exactly each scene colour
(the pixels of a colour under CPT's red shade count ten times; when the image holds a red ellipse
outline, only the pixels inside the outline's bounding box count) and a text as the one-hot of the
colour word it names. So the candidate whose prompt image shows the named colour scores highest,
for every prompt: a crop holds its square; a blur keeps exact colours only in the sharp box; a
ring marks its square; a shade marks its square's colour. Anything that breaks the prompts'
geometry, the grouping of prompt images per candidate, the text, the combination or the arg-max
shows up as a miss.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from cptbench.cpt.painting import DEFAULT_ALPHA, blend_color
from cptbench.data.examples import Example, Label, TrainExample
from cptbench.data.memory_images import MemoryImageSource
from cptbench.models.dual_encoder import DualEncoder

COLOURS = {"blue": (30, 60, 200), "green": (40, 160, 60), "yellow": (230, 200, 40), "purple": (130, 60, 170)}
BACKGROUND = (200, 200, 200)
RING = (255, 0, 0)
SHADE = (240, 0, 30)


class ColourDualEncoder(DualEncoder):
    """The colour-reading dual encoder (module doc). ``fail_above``: a batch of more images raises
    an out-of-memory error (to test the halving); ``batches`` records every batch size tried."""

    family = "fake"
    max_text_length = 24
    logit_scale = 10.0
    has_match_head = True

    def __init__(self, side: int = 48, fail_above: int | None = None):
        self.model = torch.nn.Linear(1, 1)  # a parameter for the device; never used
        self.model_name = "fake:colours"
        self.image_size = side
        self.fail_above = fail_above
        self.batches: list[int] = []
        self.texts_encoded: list[str] = []
        self._shaded = {name: tuple(int(v) for v in blend_color(rgb, SHADE, DEFAULT_ALPHA)) for name, rgb in COLOURS.items()}

    def prepare_image(self, image):
        """The pixels themselves."""
        arr = np.asarray(image)
        assert arr.dtype == np.uint8 and arr.shape == (self.image_size, self.image_size, 3), arr.shape
        return torch.from_numpy(arr.copy())

    def vector(self, arr: np.ndarray) -> np.ndarray:
        """The unit colour-count vector of one image."""
        ring = np.all(arr == RING, axis=-1)
        if ring.any():
            rows, cols = np.nonzero(ring)
            arr = arr[rows.min() + 1:rows.max(), cols.min() + 1:cols.max()]
        v = np.full(len(COLOURS), 1e-3)
        for i, name in enumerate(COLOURS):
            v[i] += np.all(arr == COLOURS[name], axis=-1).sum() + 10 * np.all(arr == self._shaded[name], axis=-1).sum()
        return v / np.linalg.norm(v)

    def encode_images(self, prepared: Sequence[torch.Tensor]):
        """Colour-count vectors (B, 4)."""
        self.batches.append(len(prepared))
        if self.fail_above is not None and len(prepared) > self.fail_above:
            raise RuntimeError("CUDA out of memory (fake): tried to allocate too much")
        return torch.tensor(np.stack([self.vector(p.numpy()) for p in prepared]), dtype=torch.float32)

    def encode_texts(self, texts: Sequence[str]):
        """One-hot of the colour word of each text (B, 4)."""
        self.texts_encoded.extend(texts)
        out = np.full((len(texts), len(COLOURS)), 1e-3)
        for row, text in enumerate(texts):
            for i, name in enumerate(COLOURS):
                if name in text.split():
                    out[row, i] = 1.0
        return torch.tensor(out / np.linalg.norm(out, axis=1, keepdims=True), dtype=torch.float32)

    def match_logits(self, prepared, texts):
        """Ten times the cosine, as log-odds."""
        return 10 * (self.encode_images(prepared) * self.encode_texts(texts)).sum(dim=1)

    def count_tokens(self, text: str) -> int:
        """Words plus two special tokens."""
        return len(text.split()) + 2


def scenes(n: int, side: int = 48, seed: int = 0, n_squares: int = 3):
    """``n`` images of ``n_squares`` squares of distinct scene colours on grey, one expression per
    square ("the <colour> square"): (examples, labels by example id, the image source)."""
    rng = np.random.default_rng(seed)
    source = MemoryImageSource()
    examples, labels = [], {}
    cells = [(c, r) for r in range(3) for c in range(3)]
    cell = side // 3
    for i in range(n):
        img = np.full((side, side, 3), BACKGROUND, dtype=np.uint8)
        names = list(rng.choice(list(COLOURS), size=n_squares, replace=False))
        spots = [cells[j] for j in rng.choice(len(cells), size=n_squares, replace=False)]
        boxes = []
        for name, (c, r) in zip(names, spots):
            size = int(rng.integers(6, cell - 1))
            x, y = c * cell + int(rng.integers(0, cell - size)), r * cell + int(rng.integers(0, cell - size))
            img[y:y + size, x:x + size] = COLOURS[name]
            boxes.append([x, y, x + size, y + size])
        key = f"scene{seed}-{i}"
        source.put({key: img})
        handle = source.handle(key, (side, side))
        for j, name in enumerate(names):
            eid = f"{i}:{j}"
            examples.append(Example(example_id=eid, ref_id=i, sent_id=j, image_id=i, image_handle=handle,
                                    image_size=(side, side), expression=f"The {name} square.",
                                    boxes=np.asarray(boxes, dtype=np.float64), categories=("square",) * n_squares,
                                    candidate_key=key))
            labels[eid] = Label(eid, np.asarray(boxes[j], dtype=np.float64))
    return examples, labels, source


def train_examples(examples, labels) -> list[TrainExample]:
    """The examples with their labels, as ``fit`` takes them."""
    return [TrainExample(ex, labels[ex.example_id]) for ex in examples]


def accuracy(scores, examples, labels) -> float:
    """Percent of examples whose arg-max candidate is the labelled box."""
    hits = 0
    for s, ex in zip(scores, examples):
        hits += bool(np.array_equal(ex.boxes[int(np.argmax(s))], labels[ex.example_id].box))
    return 100.0 * hits / len(examples)
