"""FLAVA adapter (``FlavaForPreTraining``, e.g. ``facebook/flava-full``).

The masked-LM logits are the ones ``FlavaForPreTraining`` returns as ``mmm_text_logits`` (its
multimodal masked-modelling text head applied to the text part of the multimodal encoder's output).
``FlavaForPreTraining.forward`` runs the image and text encoders twice (unmasked and masked input)
and evaluates every head over every position; this adapter runs ``FlavaModel`` once on the masked
text and applies ``mmm_text_head`` at the [MASK] position only, which gives the same numbers
(the tests compare with ``FlavaForPreTraining(..., input_ids_masked=..., return_loss=False)``).

The multimodal sequence is ``[MM-CLS] [IMG-CLS] patches... [CLS] text...`` (no [MM-CLS] when the
config has ``use_cls_token=False``): text positions are the last ``T``; patch ``j`` (row-major on
the fixed ``image_size / patch_size`` grid) sits right after the image [CLS].

Patch boxes follow the image processor: resize (to a fixed height x width, or shortest edge), then
centre crop. With the default processor (224 x 224 resize, 224 x 224 crop) the grid covers the whole
image, each patch an axis-scaled rectangle. When a crop cuts part of the image away, patches cover
only the kept centre and the boxes are exact for it (the cut parts have no patch). The image codebook
(only needed for FLAVA's own MIM pre-training losses) is not loaded.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from cptbench.models.base import RegionFeatures
from cptbench.models.hf_adapter import HFAdapter, batch_size, check_image_sizes, expand_images, head_logits
from cptbench.models.image_processing import (
    ImageSpec, UnsupportedImageSpec, center_crop_offset, fixed_grid_boxes, image_processor_class as _ipc,
    processor_normalisation, processor_resample, size_get as _size_get,
)
from cptbench.models.loading import load_hf_parts


def image_processor_class():
    """FLAVA's image processor class (the PIL one where transformers has it)."""
    return _ipc("Flava")


def processed_geometry(processor, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """((resized_h, resized_w), (top, left)) of the crop in the resized image, for a FLAVA-style
    processor (plain resize to height x width or shortest edge, then optional centre crop)."""
    rh, rw = height, width
    if getattr(processor, "do_resize", True):
        size = processor.size
        h, w, short = _size_get(size, "height"), _size_get(size, "width"), _size_get(size, "shortest_edge")
        if h and w:
            rh, rw = int(h), int(w)
        elif short and not _size_get(size, "longest_edge"):
            if height <= width:
                rh, rw = int(short), int(short * width / height)
            else:
                rh, rw = int(short * height / width), int(short)
        else:
            raise NotImplementedError(f"patch boxes: unsupported image processor size setting {size!r}")
    top = left = 0
    if getattr(processor, "do_center_crop", False):
        crop = processor.crop_size
        ch, cw = _size_get(crop, "height"), _size_get(crop, "width")
        if not (ch and cw):
            raise NotImplementedError(f"patch boxes: unsupported crop_size setting {crop!r}")
        top, left = center_crop_offset(rh, int(ch)), center_crop_offset(rw, int(cw))
    return (rh, rw), (top, left)


class FlavaAdapter(HFAdapter):
    """``FlavaForPreTraining`` behind :class:`~cptbench.models.base.VLAdapter`: one ``FlavaModel``
    pass and the multimodal masked-modelling text head at [MASK] (module doc)."""

    model_type = "flava"

    def __init__(self, model, tokenizer, image_processor, model_name: str):
        cfg = model.config
        max_len = int(cfg.text_config.max_position_embeddings)
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < max_len:
            max_len = tok_max
        super().__init__(model, tokenizer, image_processor, model_name, max_len, cfg.multimodal_config.hidden_size)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", trust_remote_code: bool = False) -> "FlavaAdapter":
        """Load model (without the image codebook), tokenizer and image processor from a folder or hub
        id (:func:`load_hf_parts`)."""
        from transformers import FlavaForPreTraining

        model, tokenizer, processor = load_hf_parts(FlavaForPreTraining, path, device, trust_remote_code,
                                                    "mmm_text_head.transform.dense.weight", image_processor_class(), init_codebook=False)
        return cls(model, tokenizer, processor, path)

    @property
    def patch_size(self) -> int:
        """Pixels per side of one image patch."""
        ps = self.model.config.image_config.patch_size
        return int(ps[0] if isinstance(ps, (tuple, list)) else ps)

    def image_spec(self) -> ImageSpec:
        """FLAVA's processor: resize (fixed height x width, or shortest edge), optional centre crop,
        rescale, normalise; every image comes out at one size."""
        proc = self.image_processor
        resample = processor_resample(proc)
        scale, mean, std = processor_normalisation(proc)
        crop = None
        if getattr(proc, "do_center_crop", False):
            ch, cw = _size_get(proc.crop_size, "height"), _size_get(proc.crop_size, "width")
            if not (ch and cw):
                raise UnsupportedImageSpec(f"FLAVA crop_size {proc.crop_size!r} has no height and width")
            crop = (int(ch), int(cw))
        try:
            processed_geometry(proc, 64, 48)
        except NotImplementedError as exc:
            raise UnsupportedImageSpec(f"FLAVA image processor: {exc}") from None
        if crop is None and not (_size_get(proc.size, "height") and _size_get(proc.size, "width")) \
                and getattr(proc, "do_resize", True):
            raise UnsupportedImageSpec("FLAVA image processor with a shortest-edge resize and no crop gives images "
                                       "of different sizes; use --set pipeline=reference")
        return ImageSpec(lambda h, w: processed_geometry(proc, h, w), crop, resample, scale, mean, std, False,
                         f"flava:{proc.size}/{crop}/{resample}/{scale}/{mean}/{std}")

    def _run(self, images: dict[str, Any], text: dict[str, Any]):
        pixel_values = expand_images(self._pixel_values(images), images)
        out = self.model.flava(
            input_ids=text["input_ids"],
            pixel_values=pixel_values,
            attention_mask=text["attention_mask"],
            token_type_ids=text.get("token_type_ids"),
            skip_multimodal_encoder=False,
            output_hidden_states=True,
            return_dict=True,
        )
        return out

    def mask_logits_encoded(self, images: dict[str, Any], text: dict[str, Any], columns=None):
        """See :meth:`HFAdapter.mask_logits_encoded`; the [MASK] state is read from the text part,
        the last T positions of the multimodal sequence."""
        out = self._run(images, text)
        mm = out.multimodal_embeddings
        text_start = mm.shape[1] - text["input_ids"].shape[1]  # text positions are the last T
        rows = torch.arange(mm.shape[0], device=mm.device)
        return head_logits(self.model.mmm_text_head, mm[rows, text_start + text["mask_col"]], columns)

    def region_features(self, images: dict[str, Any], texts: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> RegionFeatures:
        """The multimodal encoder's patch states on the fixed grid (boxes by the processor's resize and
        crop; patches over crop padding invalid and zeroed) and its pooled state (the first
        multimodal state when there is no pooler output)."""
        if images.get("pass_index") is not None:
            raise ValueError("region_features takes one image per text (no pass_index)")
        enc, _ = self._encode_texts(texts, batch_size(images), need_mask=False)
        out = self._run(images, enc)
        mm = out.multimodal_embeddings
        batch = mm.shape[0]
        sizes = check_image_sizes(images, image_sizes, batch)
        offset = 1 if self.model.flava.multimodal_model.use_cls_token else 0
        n_image = out.image_embeddings.shape[1]  # image [CLS] + patches
        patches = mm[:, offset + 1: offset + n_image]
        ps = self.patch_size
        in_h, in_w = images["pixel_values"].shape[-2:]
        grid_h, grid_w = int(in_h) // ps, int(in_w) // ps
        if grid_h * grid_w != patches.shape[1]:
            raise RuntimeError(f"FLAVA returned {patches.shape[1]} patch tokens for a {grid_h}x{grid_w} grid")
        boxes, valid = fixed_grid_boxes(self.image_processor, sizes, grid_h, grid_w, ps, processed_geometry)
        valid_t = valid.to(mm.device)
        boxes = boxes.to(mm.device)
        pooled = out.multimodal_output.pooler_output
        if pooled is None:
            pooled = mm[:, 0]
        return RegionFeatures(
            patches=patches * valid_t[..., None].to(patches.dtype),
            patch_boxes=boxes,
            patch_valid=valid_t,
            pooled=pooled,
        )
