"""How the fine-tuning baselines turn an expression into candidate representations.

The unpainted image and the plain expression (whitespace-normalised, no template; cut to the
model's text limit token-wise when longer) go through the VL model once per expression. Each
candidate box gets the vector

    [ overlap-pooled final patch states (H) | pooled [CLS] state (H) | box geometry (7) ]

(:mod:`cptbench_baselines.region_pool`). :class:`CandidateInputs` keeps three bounded caches: the
prepared images per image, the model text per expression (and whether it was cut), and for a
frozen backbone (``ft-head``) the representations per (image, expression, candidate boxes), which
are then a pure function of those.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.data.images import LRUCache

from .region_pool import box_geometry, overlap_weights, pad_boxes, pool_patches


def fit_text(adapter, expression: str) -> tuple[str, bool]:
    """The whitespace-normalised expression cut token-wise to the model's text room, and whether
    it was cut."""
    text = " ".join(str(expression).split())
    room = int(adapter.max_text_length) - int(adapter.num_special_tokens)
    if adapter.count_tokens(text) <= room:
        return text, False
    tokens = adapter.tokenizer.tokenize(text)
    keep = max(room, 0)
    while True:
        cut = adapter.tokenizer.convert_tokens_to_string(tokens[:keep]).strip()
        if keep == 0 or adapter.count_tokens(cut) <= room:
            return cut, True
        keep -= 1


def feature_key(ex: Example) -> tuple:
    """What a frozen backbone's representation of ``ex`` depends on: image, text, candidate boxes."""
    boxes = np.ascontiguousarray(ex.boxes, dtype=np.float64)
    return ex.image_key, " ".join(str(ex.expression).split()), boxes.shape, boxes.tobytes()


def stack_representations(reps: list, device):
    """Per-example ``(n_i, D)`` representations padded into ``(B, N, D)`` with a ``(B, N)`` validity."""
    import torch

    n_max = max(r.shape[0] for r in reps)
    out = torch.zeros(len(reps), n_max, reps[0].shape[1], dtype=reps[0].dtype, device=device)
    valid = torch.zeros(len(reps), n_max, dtype=torch.bool, device=device)
    for i, r in enumerate(reps):
        out[i, :r.shape[0]] = r
        valid[i, :r.shape[0]] = True
    return out, valid


class _Slot:
    """A feature-cache entry, filled after the batch that computes it."""

    __slots__ = ("value", "fallbacks")

    def __init__(self):
        self.value = None
        self.fallbacks = 0


class CandidateInputs:
    """The inputs of one method object: caches of prepared images, model texts and (frozen backbone
    only) candidate representations, and the pooling-fallback counts per stage."""

    def __init__(self, image_cache: int, text_cache: int, feature_cache: int):
        self.images = LRUCache(image_cache)
        self.texts = LRUCache(text_cache)
        self.features = LRUCache(feature_cache)
        self.fallbacks = {"train": 0, "predict": 0}

    def image(self, adapter, example: Example):
        """The prepared (unpainted) image and its original (W, H), once per image."""
        def make():
            arr = example.image()
            return adapter.prepare_image(arr), (int(arr.shape[1]), int(arr.shape[0]))

        return self.images.get_or_create(example.image_key, make)

    def model_text(self, adapter, expression: str) -> tuple[str, bool]:
        """(the text the model sees, whether it was cut), worked out once per expression."""
        return self.texts.get_or_create(str(expression), lambda: fit_text(adapter, expression))

    def text(self, adapter, expression: str) -> str:
        """The text the model sees for ``expression``."""
        return self.model_text(adapter, expression)[0]

    def is_cut(self, adapter, expression: str) -> bool:
        """Whether ``expression`` had to be cut to the model's text limit."""
        return self.model_text(adapter, expression)[1]

    def represent(self, adapter, examples: Sequence[Example]):
        """Candidate representations (B, N, 2H+7), their validity (B, N) and which candidates took
        the nearest-patch pooling fallback (B, N) for a batch (with gradients when enabled)."""
        import torch

        prepared, sizes = zip(*(self.image(adapter, ex) for ex in examples))
        images = adapter.collate(list(prepared))
        texts = [self.text(adapter, ex.expression) for ex in examples]
        feats = adapter.region_features(images, texts, list(sizes))
        patches = feats.patches.float()
        device = patches.device
        boxes, valid = pad_boxes([ex.boxes for ex in examples], device)
        weights, fallback = overlap_weights(feats.patch_boxes, feats.patch_valid, boxes, valid)
        region = pool_patches(patches, weights)
        cls = feats.pooled.float()[:, None, :].expand(-1, region.shape[1], -1)
        geom = box_geometry(boxes, torch.tensor(sizes, dtype=torch.float32, device=device))
        return torch.cat([region, cls, geom], dim=-1), valid, fallback

    def frozen(self, adapter, examples: Sequence[Example], stage: str, batch_size: int) -> list:
        """A frozen backbone's ``(n_i, 2H+7)`` representation of each example, computed under
        ``no_grad`` in batches of ``batch_size`` and cached per (image, expression, candidate boxes);
        its pooling fallbacks are counted under ``stage`` once per example asked for."""
        import torch

        slots = [self.features.get_or_create(feature_key(ex), _Slot) for ex in examples]
        todo, seen = [], set()
        for i, slot in enumerate(slots):
            if slot.value is None and id(slot) not in seen:
                seen.add(id(slot))
                todo.append(i)
        bs = max(1, int(batch_size))
        with torch.no_grad():
            for start in range(0, len(todo), bs):
                chunk = todo[start:start + bs]
                reps, _, fallback = self.represent(adapter, [examples[i] for i in chunk])
                for row, i in enumerate(chunk):
                    n = examples[i].n_candidates
                    slots[i].fallbacks = int(fallback[row, :n].sum())
                    slots[i].value = reps[row, :n].detach().clone()  # not a view: the batch is freed
        self.fallbacks[stage] += sum(slot.fallbacks for slot in slots)
        return [slot.value for slot in slots]

    def stats(self) -> dict[str, Any]:
        """Cache hits and misses (performance facts)."""
        return {"image_cache_hits": self.images.hits, "image_cache_misses": self.images.misses,
                "feature_cache_hits": self.features.hits, "feature_cache_misses": self.features.misses}
