"""CLIP (``CLIPModel``, e.g. ``openai/clip-vit-base-patch32``) as a dual encoder.

Embeddings are what ``CLIPModel``'s forward returns as ``image_embeds`` and ``text_embeds``: the
pooled vision state through ``visual_projection`` and the pooled text state (at the end-of-text
token) through ``text_projection``, each scaled to unit length; computed from the submodules
directly, since ``get_image_features`` returns a tensor in transformers 4.57 and an output object in
5.x. ``logit_scale`` is the model's learned ``logit_scale.exp()``.
"""

from __future__ import annotations

from typing import Any, Sequence

from cptbench.models.dual_hf import HFDualEncoder, load_dual_parts, processor_side, unit


class ClipDualEncoder(HFDualEncoder):
    """``CLIPModel`` behind :class:`~cptbench.models.dual_encoder.DualEncoder` (module doc)."""

    family = "clip"

    def __init__(self, model, tokenizer, image_processor, model_name: str):
        cfg = model.config
        super().__init__(model, tokenizer, image_processor, model_name,
                         max_text_length=int(cfg.text_config.max_position_embeddings),
                         image_size=processor_side(image_processor, int(cfg.vision_config.image_size)))

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", trust_remote_code: bool = False) -> "ClipDualEncoder":
        """Load model, tokenizer and image processor from a folder or hub id."""
        from transformers import CLIPModel

        model, tokenizer, processor = load_dual_parts(CLIPModel, "CLIP", path, device, trust_remote_code,
                                                      "a CLIPModel checkpoint with both projections")
        return cls(model, tokenizer, processor, path)

    @property
    def logit_scale(self) -> float:
        """CLIP's learned temperature, ``logit_scale.exp()``."""
        return float(self.model.logit_scale.detach().exp())

    def encode_images(self, prepared: Sequence[Any]):
        """Unit image embeddings (B, D)."""
        out = self.model.vision_model(pixel_values=self._pixels(prepared))
        return unit(self.model.visual_projection(out.pooler_output))

    def encode_texts(self, texts: Sequence[str]):
        """Unit text embeddings (B, D)."""
        out = self.model.text_model(**self._tokens(texts))
        return unit(self.model.text_projection(out.pooler_output))
