"""Embeddings of prompt images and texts: through the dual encoder, the embedding cache and the
run's device policy (:mod:`cptbench.methods.numerics`).

A method asks for what it needs (:meth:`PromptEncoder.want_image`, :meth:`~PromptEncoder.want_text`,
:meth:`~PromptEncoder.want_match`) and gets a key back. A request the cache (or an earlier request
of the same call) already answers is a hit; a miss is queued, and the queue is encoded in batches
of the run's batch size (``--batch-size``, or ``auto``: probed once per model and input size on
CUDA) under the run's precision, halving the batch on out-of-memory (:func:`run_batches`), as soon
as it holds :attr:`PromptEncoder.flush_at` items (so only that many prompt images are ever held)
and at :meth:`~PromptEncoder.flush`. After a flush every key of the call can be read back
(:meth:`~PromptEncoder.image`, ...); :meth:`~PromptEncoder.end_call` forgets the call's keys (the
cache keeps its entries).
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import numpy as np

from cptbench.methods.base import MethodContext
from cptbench.methods.numerics import BatchSizer, autobatch_key, precision_context, run_batches
from cptbench.models.dual_encoder import EmbeddingCache, image_digest


class PromptEncoder:
    """Cached, batched embeddings of one dual encoder for one method object (module doc)."""

    #: queued misses that trigger an encoding round
    flush_at = 256

    def __init__(self, adapter, context: MethodContext, cache: EmbeddingCache, tag: str):
        self.adapter = adapter
        self.context = context
        self.cache = cache
        self.tag = tag
        self.sizer = BatchSizer(context.eval_batch_size, adapter.device)
        self._ready: dict[tuple[str, Hashable], np.ndarray] = {}
        self._queue: dict[str, dict[Hashable, Any]] = {"image": {}, "text": {}, "match": {}}
        self.encoded = {"image": 0, "text": 0, "match": 0}

    # -- requests ---------------------------------------------------------------------------------
    def _want(self, kind: str, key: Hashable, payload: Callable[[], Any]) -> Hashable:
        if (kind, key) in self._ready or key in self._queue[kind]:
            self.cache.hits[kind] += 1
            return key
        value = self.cache.get(kind, key)
        if value is not None:
            self._ready[(kind, key)] = value
        else:
            self._queue[kind][key] = payload()
            if len(self._queue[kind]) >= self.flush_at:
                self._encode(kind)
        return key

    def want_image(self, image: np.ndarray) -> str:
        """The key (pixel digest) of a prompt image's embedding, queued when not cached."""
        return self._want("image", image_digest(image), lambda: image)

    def want_text(self, text: str) -> str:
        """The key of a text's embedding (the text itself), queued when not cached."""
        return self._want("text", text, lambda: text)

    def want_match(self, image: np.ndarray, text: str) -> tuple[str, str]:
        """The key of an (image, text) pair's matching score, queued when not cached."""
        return self._want("match", (image_digest(image), text), lambda: (image, text))

    def flush(self) -> None:
        """Encode every queued request."""
        for kind in self._queue:
            if self._queue[kind]:
                self._encode(kind)

    def image(self, key: str) -> np.ndarray:
        """The embedding (D,) under an image key of this call."""
        return self._ready[("image", key)]

    def text(self, key: str) -> np.ndarray:
        """The embedding (D,) under a text key of this call."""
        return self._ready[("text", key)]

    def match(self, key: tuple[str, str]) -> float:
        """The matching log-odds under a pair key of this call."""
        return float(self._ready[("match", key)])

    def end_call(self) -> None:
        """Forget this call's keys (nothing may be queued)."""
        if any(self._queue.values()):
            raise RuntimeError("end_call with requests still queued: call flush first")
        self._ready.clear()

    # -- encoding ---------------------------------------------------------------------------------
    def _encode(self, kind: str) -> None:
        import torch

        items = list(self._queue[kind].items())
        self._queue[kind] = {}
        adapter = self.adapter
        if kind == "image":
            def build(chunk):
                return [adapter.prepare_image(a) for _, a in chunk]

            forward = adapter.encode_images
        elif kind == "text":
            def build(chunk):
                return [t for _, t in chunk]

            forward = adapter.encode_texts
        else:
            def build(chunk):
                return [adapter.prepare_image(a) for _, (a, _) in chunk], [t for _, (_, t) in chunk]

            def forward(batch):
                return adapter.match_logits(*batch)[:, None]

        def finish(chunk, out):
            for (key, _), row in zip(chunk, out):
                value = np.asarray(row, dtype=np.float32)
                value = value[0] if kind == "match" else value
                self.cache.put(kind, key, value)
                self._ready[(kind, key)] = value

        with torch.no_grad():
            size = self.sizer.size(*self._auto_probe())
            run_batches(items, size, build, forward, finish, device=adapter.device, precision=self.context.precision,
                        on_batch_size=self.sizer.on_oom)
        self.encoded[kind] += len(items)

    def _auto_probe(self):
        """(key, probe) for ``--batch-size auto``: a forward of ``n`` prompt images at the model's
        input size (the images are the larger half of the work)."""
        adapter = self.adapter
        side = int(adapter.image_size)

        def key() -> str:
            return autobatch_key(getattr(adapter, "model_name", "?"), adapter.device, f"{side}x{side}",
                                 self.context.precision, self.tag)

        def probe(n: int) -> None:
            blank = adapter.prepare_image(np.zeros((side, side, 3), dtype=np.uint8))
            with precision_context(adapter.device, self.context.precision):
                adapter.encode_images([blank] * n)

        return key, probe

    def stats(self) -> dict[str, Any]:
        """Cache hits and misses, what was encoded, the batch size used."""
        out = {**self.cache.stats(), **{f"encoded_{k}s": v for k, v in self.encoded.items() if v}}
        if self.sizer.used is not None:
            out["eval_batch_size"] = self.sizer.used
        return out
