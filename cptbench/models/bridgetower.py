"""BridgeTower adapter (``BridgeTowerForMaskedLM``, e.g. ``BridgeTower/bridgetower-base-itm-mlm``).

Text: RoBERTa byte-level BPE with ``<mask>`` (which absorbs the space before it). A word inside a
sentence is the token of `` word`` (``Ġword``), not of ``word``: :meth:`word_id` looks up the
spaced form, which is what the model predicts at ``... is in <mask> color.``.

Image: the processor resizes the shortest edge to ``size`` (sides rounded down to ``size_divisor``,
long side capped at 1333/800 of the short one) and centre-crops a ``crop_size`` square; the CLIP
vision tower sees a fixed row-major grid of ``crop / patch`` patches. The patch boxes are exact for
the part of the image the crop keeps: a non-square image loses the ends of its long side, which no
patch covers (the boxes then do not tile the whole image). ``pixel_mask`` is ignored by the model
(its image stream is never padded), so images are stacked at the crop size.

Region features: the final cross-modal image stream (``image_features``); ``pooled`` is the pooled
text-side [CLS] state (``cross_modal_text_pooler``, size ``hidden_size``). BridgeTower's own heads
(ITM) use the concatenation of the text and image pooled states; that is not what ``pooled`` gives.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from cptbench.models.base import RegionFeatures
from cptbench.models.hf_adapter import HFAdapter, batch_size, check_image_sizes, expand_images, head_logits
from cptbench.models.image_processing import (
    ImageSpec, UnsupportedImageSpec, center_crop_offset, fixed_grid_boxes, image_processor_class as _ipc,
    processor_normalisation, processor_resample, shortest_edge_size, size_get as _size_get,
)
from cptbench.models.loading import load_hf_parts


def image_processor_class():
    """BridgeTower's image processor class (the PIL one where transformers has it)."""
    return _ipc("BridgeTower")


def processed_geometry(processor, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resized_h, resized_w), (top, left)) for BridgeTower's resize + square centre crop."""
    rh, rw = height, width
    if getattr(processor, "do_resize", True):
        shorter = _size_get(processor.size, "shortest_edge")
        if not shorter:
            raise NotImplementedError(f"patch boxes: unsupported image processor size {processor.size!r}")
        rh, rw = shortest_edge_size(height, width, int(shorter), int(getattr(processor, "size_divisor", 32) or 1))
    top = left = 0
    if getattr(processor, "do_center_crop", False):
        crop = _size_get(processor.crop_size, "shortest_edge")
        if not crop:
            ch, cw = _size_get(processor.crop_size, "height"), _size_get(processor.crop_size, "width")
            if not (ch and cw):
                raise NotImplementedError(f"patch boxes: unsupported crop_size {processor.crop_size!r}")
        else:
            ch = cw = crop
        top, left = center_crop_offset(rh, int(ch)), center_crop_offset(rw, int(cw))
    return (rh, rw), (top, left)


class BridgeTowerAdapter(HFAdapter):
    """``BridgeTowerForMaskedLM`` behind :class:`~cptbench.models.base.VLAdapter`, with words looked
    up in their spaced byte-level BPE form (module doc)."""

    model_type = "bridgetower"

    def __init__(self, model, tokenizer, image_processor, model_name: str):
        tcfg = model.config.text_config
        # RoBERTa-style positions start after the padding index
        max_len = int(tcfg.max_position_embeddings) - (int(tcfg.pad_token_id or 0) + 1)
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < max_len:
            max_len = tok_max
        super().__init__(model, tokenizer, image_processor, model_name, max_len, model.config.hidden_size)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", trust_remote_code: bool = False) -> "BridgeTowerAdapter":
        """Load model, tokenizer and image processor from a folder or hub id (:func:`load_hf_parts`)."""
        from transformers import BridgeTowerForMaskedLM

        model, tokenizer, processor = load_hf_parts(BridgeTowerForMaskedLM, path, device, trust_remote_code,
                                                    "mlm_score.transform.dense.weight", image_processor_class())
        return cls(model, tokenizer, processor, path)

    def _word_pieces(self, word: str) -> list[str]:
        # inside "... is in <mask> color." the word follows a space: its token is "Ġword"
        return list(self.tokenizer.tokenize(" " + word.strip()))

    @property
    def patch_size(self) -> int:
        """Pixels per side of one patch of the CLIP vision tower."""
        ps = self.model.config.vision_config.patch_size
        return int(ps[0] if isinstance(ps, (tuple, list)) else ps)

    def image_spec(self) -> ImageSpec:
        """BridgeTower's processor: shortest edge (long edge capped, rounded to ``size_divisor``),
        square centre crop, rescale, normalise; every image comes out at the crop size."""
        proc = self.image_processor
        resample = processor_resample(proc)
        scale, mean, std = processor_normalisation(proc)
        try:
            processed_geometry(proc, 64, 48)
        except NotImplementedError as exc:
            raise UnsupportedImageSpec(f"BridgeTower image processor: {exc}") from None
        if not getattr(proc, "do_center_crop", False):
            raise UnsupportedImageSpec("BridgeTower image processor without a centre crop gives images of "
                                       "different sizes; use --set pipeline=reference")
        side = _size_get(proc.crop_size, "shortest_edge")
        crop = (int(side), int(side)) if side else (int(_size_get(proc.crop_size, "height")),
                                                     int(_size_get(proc.crop_size, "width")))
        return ImageSpec(lambda h, w: processed_geometry(proc, h, w), crop, resample, scale, mean, std, False,
                         f"bridgetower:{proc.size}/{crop}/{resample}/{scale}/{mean}/{std}")

    def _run(self, images: dict[str, Any], text: dict[str, Any]):
        pixel_values = expand_images(self._pixel_values(images), images)
        size = self.model.config.vision_config.image_size
        out = self.model.bridgetower(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            pixel_values=pixel_values,
            interpolate_pos_encoding=tuple(pixel_values.shape[-2:]) != (size, size),
        )
        return out

    def mask_logits_encoded(self, images: dict[str, Any], text: dict[str, Any], columns=None):
        """See :meth:`HFAdapter.mask_logits_encoded`; the [MASK] state is read from the final
        cross-modal text stream, and the head adds its own bias."""
        out = self._run(images, text)
        states = out.text_features
        rows = torch.arange(states.shape[0], device=states.device)
        return head_logits(self.model.mlm_score, states[rows, text["mask_col"]], columns, head_bias=True)

    def region_features(self, images: dict[str, Any], texts: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> RegionFeatures:
        """The final cross-modal image stream's patch states on the crop's grid (boxes by the
        processor's resize and crop; patches over crop padding invalid and zeroed) and the text-side
        pooled state."""
        if images.get("pass_index") is not None:
            raise ValueError("region_features takes one image per text (no pass_index)")
        enc, _ = self._encode_texts(texts, batch_size(images), need_mask=False)
        out = self._run(images, enc)
        image = out.image_features  # (B, 1 + N, H): image [CLS] then the patch grid
        batch = image.shape[0]
        sizes = check_image_sizes(images, image_sizes, batch)
        patches = image[:, 1:]
        ps = self.patch_size
        in_h, in_w = images["pixel_values"].shape[-2:]
        grid_h, grid_w = int(in_h) // ps, int(in_w) // ps
        if grid_h * grid_w != patches.shape[1]:
            raise RuntimeError(f"BridgeTower returned {patches.shape[1]} patch tokens for a {grid_h}x{grid_w} grid")
        boxes, valid = fixed_grid_boxes(self.image_processor, sizes, grid_h, grid_w, ps, processed_geometry)
        valid_t = valid.to(image.device)
        pooled = out.pooler_output[:, : self.hidden_size]  # text-side half of [text CLS; image CLS]
        return RegionFeatures(
            patches=patches * valid_t[..., None].to(patches.dtype),
            patch_boxes=boxes.to(image.device),
            patch_valid=valid_t,
            pooled=pooled,
        )
