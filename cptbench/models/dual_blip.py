"""BLIP's image-text retrieval model (``BlipForImageTextRetrieval``, e.g.
``Salesforce/blip-itm-base-coco``) as a dual encoder.

The embeddings are its image-text contrastive (ITC) features, exactly as its forward computes them
with ``use_itm_head=False``: the vision encoder's first (``[CLS]``) state through ``vision_proj``
and the text encoder's first state (run without the image) through ``text_proj``, each scaled to
unit length; the forward's ``itm_score`` is their dot product. ``match_logits`` runs the
image-text matching (ITM) head, the forward with ``use_itm_head=True``: the text encoder
cross-attending to the image states, ``itm_head`` on its first state, returned as the log-odds
``logit(match) - logit(no match)`` (a monotone map of BLIP's match probability).

The retrieval model holds no learned temperature; ``logit_scale`` is the config's initial value
``exp(logit_scale_init_value)`` (1 / 0.07 by default).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from cptbench.models.dual_hf import HFDualEncoder, load_dual_parts, processor_side, unit


class BlipDualEncoder(HFDualEncoder):
    """``BlipForImageTextRetrieval`` behind :class:`~cptbench.models.dual_encoder.DualEncoder`
    (module doc)."""

    family = "blip"
    has_match_head = True

    def __init__(self, model, tokenizer, image_processor, model_name: str):
        cfg = model.config
        super().__init__(model, tokenizer, image_processor, model_name,
                         max_text_length=int(cfg.text_config.max_position_embeddings),
                         image_size=processor_side(image_processor, int(cfg.vision_config.image_size)))
        self._logit_scale = math.exp(float(getattr(cfg, "logit_scale_init_value", math.log(1 / 0.07))))

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", trust_remote_code: bool = False) -> "BlipDualEncoder":
        """Load model, tokenizer and image processor from a folder or hub id."""
        from transformers import BlipForImageTextRetrieval

        model, tokenizer, processor = load_dual_parts(
            BlipForImageTextRetrieval, "Blip", path, device, trust_remote_code,
            "a BlipForImageTextRetrieval checkpoint (e.g. Salesforce/blip-itm-base-coco), not a captioning or VQA one")
        return cls(model, tokenizer, processor, path)

    @property
    def logit_scale(self) -> float:
        """The config's initial temperature (the retrieval model learns none)."""
        return self._logit_scale

    def _image_states(self, prepared: Sequence[Any]) -> torch.Tensor:
        return self.model.vision_model(pixel_values=self._pixels(prepared)).last_hidden_state

    def encode_images(self, prepared: Sequence[Any]):
        """Unit ITC image embeddings (B, D)."""
        return unit(self.model.vision_proj(self._image_states(prepared)[:, 0, :]))

    def encode_texts(self, texts: Sequence[str]):
        """Unit ITC text embeddings (B, D)."""
        states = self.model.text_encoder(**self._tokens(texts)).last_hidden_state
        return unit(self.model.text_proj(states[:, 0, :]))

    def match_logits(self, prepared: Sequence[Any], texts: Sequence[str]):
        """ITM log-odds (B,) of each (image, text) pair."""
        if len(prepared) != len(texts):
            raise ValueError(f"got {len(texts)} texts for {len(prepared)} images")
        image_states = self._image_states(prepared)
        image_mask = torch.ones(image_states.shape[:-1], dtype=torch.long, device=image_states.device)
        states = self.model.text_encoder(**self._tokens(texts), encoder_hidden_states=image_states,
                                         encoder_attention_mask=image_mask).last_hidden_state
        logits = self.model.itm_head(states[:, 0, :])
        return logits[:, 1] - logits[:, 0]
