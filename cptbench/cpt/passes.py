"""CPT's passes and the two paths they take to the model.

A pass is one (example, candidate group): the example's image with that group painted, paired with
the expression's prompt. Painted copies reach the model through the device pipeline
(:mod:`.pipeline`, chosen by :func:`device_pipeline` for an adapter that has one) or through the
reference path (the host painter and the adapter's own image processor).

Prediction: :func:`schedule_passes` sorts the passes of all expressions of a predict call by
(image, candidate set, group), so a painted copy is prepared once and reused by every expression
of its image. :func:`device_batches` and :func:`reference_batches` give the ``build`` and
``forward`` steps of :func:`cptbench.methods.numerics.run_batches` on either path;
:func:`write_scores` turns a batch's logits at the palette words and ``none`` into candidate
scores (:mod:`.score_rules`).

Under ``--batch-size auto`` the prediction batch is probed once per input shape:
:func:`autobatch_key_of` names the probe and :func:`probe_passes` is its worst-case forward.

Few-shot training: :func:`training_caches` keeps every training copy for the fit, so each is
painted once.

torch is imported inside the functions: this module loads with :mod:`cptbench.cpt.method`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from cptbench.data.examples import Example
from cptbench.methods.base import ConfigError
from cptbench.cpt.painting import Painter, n_groups
from cptbench.cpt.score_rules import score_rows
from cptbench.methods.numerics import precision_context

#: (example index, group) of one pass in a predict call
Pass = tuple[int, int]
#: the prompt texts of a chunk of passes
TextsOf = Callable[[Sequence[Pass]], list[str]]


def has_device_path(adapter: Any) -> bool:
    """Whether ``adapter`` offers what the device pipeline needs (the Hugging Face adapters do;
    stand-in adapters may not)."""
    return callable(getattr(adapter, "image_spec", None)) and callable(getattr(adapter, "mask_logits_encoded", None))


def device_pipeline(adapter: Any, painter: Painter, device: str, precision: str, method: str):
    """The device pipeline for ``adapter``, or None (the reference path) for an adapter without
    one; a :class:`ConfigError` naming ``method`` when its image processor cannot be reproduced."""
    if not has_device_path(adapter):
        return None
    from cptbench.models.image_processing import UnsupportedImageSpec
    from cptbench.cpt.pipeline import DevicePipeline

    try:
        return DevicePipeline(adapter, painter, device, precision)
    except UnsupportedImageSpec as exc:
        raise ConfigError(f"method {method!r}: pipeline=device: {exc}") from None


def schedule_passes(examples: Sequence[Example], n_colours: int) -> list[Pass]:
    """Every pass of ``examples``, ordered so that the passes sharing a painted copy run back to back."""
    items = [(i, g) for i, ex in enumerate(examples) for g in range(n_groups(ex.n_candidates, n_colours))]
    # one painted copy serves every expression of its image: run those passes back to back
    items.sort(key=lambda t: (examples[t[0]].image_key, examples[t[0]].candidate_key, t[1], t[0]))
    return items


def prefetch_images(examples: Iterable[Example]) -> None:
    """Start decoding the images of ``examples`` (in this order) in the harness's threads."""
    from cptbench.data.images import prefetch_handles

    prefetch_handles(ex.image_handle for ex in examples)


def device_batches(pipe: Any, examples: Sequence[Example], columns: Sequence[int], texts_of: TextsOf):
    """``(build, forward)`` of a predict call on the device pipeline ``pipe``: distinct painted
    copies and token ids on the device, logits of the vocabulary ``columns`` only."""
    on_device = pipe.columns(columns)

    def build(chunk):
        return pipe.images([(examples[i], g) for i, g in chunk]), pipe.text(texts_of(chunk))

    def forward(inputs):
        return pipe.forward(inputs[0], inputs[1], on_device)

    return build, forward


def reference_batches(adapter: Any, painter: Any, examples: Sequence[Example], columns: Sequence[int],
                      texts_of: TextsOf):
    """``(build, forward)`` of a predict call on the reference path: copies painted on the host and
    prepared by the adapter's image processor, full-vocabulary logits cut to ``columns``."""
    import torch

    index = None  # the columns as a tensor on the logits' device, made once (not a list per batch)

    def build(chunk):
        return adapter.collate([painter.prepared(examples[i], g) for i, g in chunk]), texts_of(chunk)

    def forward(inputs):
        nonlocal index
        logits = torch.as_tensor(adapter.mask_logits(inputs[0], inputs[1]))
        if index is None or index.device != logits.device:
            index = torch.as_tensor(list(columns), dtype=torch.long).to(logits.device)
        return logits.index_select(1, index)

    return build, forward


def write_scores(scores: list[np.ndarray], examples: Sequence[Example], chunk: Sequence[Pass], logits: np.ndarray,
                 n_colours: int, rule: str) -> None:
    """Fill the candidates of each pass of ``chunk`` in ``scores`` from its row of ``logits``
    (palette words, then ``none``) with the score ``rule``."""
    rows = score_rows(logits[:len(chunk)], n_colours, rule) if len(chunk) else None
    for row, (i, g) in enumerate(chunk):
        n = examples[i].n_candidates
        lo, hi = g * n_colours, min((g + 1) * n_colours, n)
        scores[i][lo:hi] = rows[row, :hi - lo]


def autobatch_key_of(pipe: Any, hw: tuple[int, int]) -> str:
    """The auto batch size cache key of the pipeline's model, device, precision and image spec for
    inputs of ``hw`` (H, W) pixels."""
    from cptbench.methods.numerics import autobatch_key as key  # looked up per call (tests replace it)

    return key(getattr(pipe.adapter, "model_name", "?"), pipe.device, f"{hw[0]}x{hw[1]}", pipe.precision,
               f"cpt/{pipe.spec.name}")


def probe_passes(adapter: Any, pipe: Any, text: str, hw: tuple[int, int], n: int, columns: Sequence[int]) -> None:
    """One forward of ``n`` worst-case passes (distinct images of ``hw`` pixels, ``text``'s first
    token repeated to the longest text the model takes), as the auto batch size probe."""
    import torch

    from cptbench.models.hf_adapter import EncodedText

    e = adapter.encode_text(text)
    length = adapter.max_text_length
    fake = EncodedText((e.ids[0],) * length, None if e.type_ids is None else (0,) * length, 0)
    tokens = {k: pipe.upload(v, copy=True) for k, v in adapter.text_arrays([fake] * n).items()}
    images = {"pixel_values": torch.zeros(n, 3, *hw, device=pipe.device),
              "pass_index": torch.arange(n, device=pipe.device), "image_hw": np.tile(np.array([hw]), (n, 1))}
    with torch.no_grad(), precision_context(pipe.device, pipe.precision):
        pipe.forward(images, tokens, pipe.columns(columns))


@contextmanager
def training_caches(pipe: Any, painter: Painter, examples: Sequence[Example]):
    """Inside the block, caches sized to the k-shot set, so each training copy is painted once per
    fit: the device pipeline keeps its copies; the reference path's prepared-copy cache grows to
    hold them. Both are back to their own size after the block."""
    if pipe is not None:
        pipe.keep_for_training(examples)
        try:
            yield
        finally:
            pipe.release_training()
        return
    copies = {painter._key(ex, g) for ex in examples for g in range(len(painter.groups(ex)))}
    cache = painter.prepared_cache
    capacity = cache.capacity
    cache.capacity = max(capacity, len(copies))
    try:
        yield
    finally:
        cache.capacity = capacity
