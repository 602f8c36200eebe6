"""Dual encoders (CLIP, BLIP's image-text retrieval model) behind one small interface, and the
embedding cache the visual-prompt methods share.

A :class:`DualEncoder` embeds images and texts apart, into one space: ``encode_images`` and
``encode_texts`` give unit vectors whose dot product is the model's image-text similarity (CLIP's
cosine, BLIP's image-text contrastive (ITC) cosine). A model with an image-text matching head
(BLIP) also scores (image, text) pairs jointly (``match_logits``). Images are uint8 RGB arrays
``(H, W, 3)`` (already cropped, blurred or painted by the method); ``prepare_image`` turns one into
the model's pixel tensor through the model's own image processor.

:class:`EmbeddingCache` keys an image embedding by a digest of the exact pixels it was computed
from (:func:`image_digest`: shape, dtype and bytes of the prepared array) and a text embedding by
the exact text, so a crop or painted copy shared by several expressions of an image is encoded
once; it counts hits and misses.

:func:`load_dual_encoder` picks the adapter by the config's ``model_type`` (``clip``, ``blip``).
This module imports neither torch nor transformers; the adapters (``dual_clip``, ``dual_blip``)
do, when a model is loaded.
"""

from __future__ import annotations

import hashlib
import importlib
from collections import OrderedDict
from typing import Any, Hashable, Sequence

import numpy as np

from cptbench.core.errors import ModelError

#: model_type -> (module, adapter class)
DUAL_ENCODERS: dict[str, tuple[str, str]] = {
    "clip": ("cptbench.models.dual_clip", "ClipDualEncoder"),
    "blip": ("cptbench.models.dual_blip", "BlipDualEncoder"),
}


class UnsupportedDualEncoderError(ModelError):
    """The model's ``model_type`` has no dual-encoder adapter."""


def image_digest(image: np.ndarray) -> str:
    """A digest of an image array's exact pixels: its shape, dtype and bytes (sha1, hex)."""
    arr = np.ascontiguousarray(image)
    h = hashlib.sha1(f"{arr.shape}|{arr.dtype.str}|".encode())
    h.update(arr.tobytes())
    return h.hexdigest()


class EmbeddingCache:
    """Image embeddings by pixel digest and text embeddings by text, each in a bounded LRU
    (``capacity`` entries per kind), with hit and miss counts per kind.

    Values are float32 numpy vectors (host memory: an embedding of 512 floats is 2 KB). A lookup
    of a key stored earlier is a hit; :meth:`put` after a failed :meth:`get` completes a miss."""

    KINDS = ("image", "text", "match")

    def __init__(self, capacity: int = 50_000):
        self.capacity = max(1, int(capacity))
        self._data: dict[str, OrderedDict] = {k: OrderedDict() for k in self.KINDS}
        self.hits = {k: 0 for k in self.KINDS}
        self.misses = {k: 0 for k in self.KINDS}

    def get(self, kind: str, key: Hashable) -> np.ndarray | None:
        """The value stored under ``key`` (a hit), or None (a miss)."""
        store = self._data[kind]
        if key in store:
            store.move_to_end(key)
            self.hits[kind] += 1
            return store[key]
        self.misses[kind] += 1
        return None

    def peek(self, kind: str, key: Hashable) -> np.ndarray | None:
        """The value under ``key`` without counting or reordering (None when absent)."""
        return self._data[kind].get(key)

    def put(self, kind: str, key: Hashable, value: np.ndarray) -> None:
        """Store ``value`` under ``key`` (the least recently used entry goes when full)."""
        store = self._data[kind]
        store[key] = np.asarray(value, dtype=np.float32)
        store.move_to_end(key)
        while len(store) > self.capacity:
            store.popitem(last=False)

    def __len__(self) -> int:
        return sum(len(s) for s in self._data.values())

    def stats(self) -> dict[str, int]:
        """``{image,text,match}_cache_{hits,misses}`` (for ``perf_info``)."""
        out: dict[str, int] = {}
        for kind in self.KINDS:
            if self.hits[kind] or self.misses[kind]:
                out[f"{kind}_cache_hits"] = self.hits[kind]
                out[f"{kind}_cache_misses"] = self.misses[kind]
        return out


class DualEncoder:
    """The interface the visual-prompt methods use (a fake for tests implements the same).

    * ``model_name``: what the model was loaded from (goes into records);
    * ``family``: ``clip`` or ``blip`` (what the records call the model family);
    * ``image_size``: the side of the model's square pixel input;
    * ``max_text_length``: the longest text, in tokens with the special tokens, the model takes;
    * ``logit_scale``: the model's temperature (CLIP's learned ``logit_scale.exp()``; BLIP's
      retrieval model has none and uses its config's initial value), multiplying similarities into
      logits;
    * ``has_match_head``: whether :meth:`match_logits` exists (BLIP's ITM head).
    """

    model_name: str = ""
    family: str = ""
    image_size: int = 224
    max_text_length: int = 77
    logit_scale: float = 1.0
    has_match_head: bool = False

    def prepare_image(self, image: np.ndarray) -> Any:
        """The model's pixel input for one uint8 RGB array (cacheable by the caller)."""
        raise NotImplementedError

    def encode_images(self, prepared: Sequence[Any]):
        """Unit image embeddings (B, D) (a torch tensor on the model's device) of prepared images."""
        raise NotImplementedError

    def encode_texts(self, texts: Sequence[str]):
        """Unit text embeddings (B, D) (a torch tensor on the model's device); every text must fit
        :attr:`max_text_length` (:meth:`count_tokens`)."""
        raise NotImplementedError

    def match_logits(self, prepared: Sequence[Any], texts: Sequence[str]):
        """Image-text matching log-odds (B,) of each (image, text) pair (``has_match_head`` only)."""
        raise NotImplementedError(f"model {self.model_name!r} ({self.family}) has no image-text matching head")

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as the model reads it, special tokens included."""
        raise NotImplementedError

    @property
    def device(self):
        """The device of the model's parameters."""
        return next(self.model.parameters()).device

    def to(self, device) -> "DualEncoder":
        """Move the model to ``device`` in place; returns the adapter."""
        self.model.to(device)
        return self


def supported_dual_types() -> list[str]:
    """The config ``model_type`` values that have a dual-encoder adapter, sorted."""
    return sorted(DUAL_ENCODERS)


def dual_encoder_class(model_type: str) -> type:
    """The adapter class of ``model_type`` (its module imported now), or an error naming the
    supported types."""
    if model_type not in DUAL_ENCODERS:
        raise UnsupportedDualEncoderError(
            f"model type {model_type!r} has no dual-encoder adapter; the visual-prompt methods (clip-crop, "
            f"clip-blur, reclip, clip-circle, clip-cpt) need one of: {', '.join(supported_dual_types())} "
            f"(CLIPModel, BlipForImageTextRetrieval checkpoints)"
        )
    module, cls = DUAL_ENCODERS[model_type]
    return getattr(importlib.import_module(module), cls)


def load_dual_encoder(name_or_path: str, device: str = "cpu", *, trust_remote_code: bool = False) -> DualEncoder:
    """A dual encoder from a hub id or a local folder, chosen by the config's ``model_type``, in
    eval mode on ``device``. Like :func:`cptbench.models.loading.load_adapter`, a process that
    reuses loaded models (``reuse_loaded_models``) reads it from disk once, and the time is counted
    as loading (``load_seconds`` in records)."""
    from cptbench.models.loading import PRISTINE, _stamp, model_type_of, resolve_model_path, timed_as_loading, warm_imports

    def key() -> tuple:
        return ("dual", str(name_or_path), _stamp(name_or_path), bool(trust_remote_code))

    def load(dev: str) -> DualEncoder:
        path = resolve_model_path(name_or_path)
        cls = dual_encoder_class(model_type_of(path, trust_remote_code))
        return cls.from_pretrained(path, device=dev, trust_remote_code=trust_remote_code)

    warm_imports()
    with timed_as_loading():
        return PRISTINE.get(key, load, str(device))
