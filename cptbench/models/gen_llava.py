"""LLaVA-1.5 (``LlavaForConditionalGeneration``, model_type ``llava``) behind the generative adapter.

Facts of the family this adapter follows:

* Chat format (LLaVA-1.5's ``vicuna_v1`` conversation, the form of the llava-hf model cards):
  ``USER: <image>\\n{question} ASSISTANT: {answer}</s>`` per turn, turns joined without a
  separator, the asking turn ending in ``ASSISTANT:``; the tokenizer adds BOS.
* Images: LLaVA-1.5 pads every image to a square with the image processor's mean colour before the
  CLIP processor (``image_aspect_ratio = pad``), so the processor's centre crop cuts nothing off; on
  its own the processor would crop the long side and could cut painted candidates away. The
  processed square is ``(S / patch)^2`` image tokens (one more with the ``full`` feature strategy,
  which keeps the CLS state).
* Positions: one axis, 0 .. L-1.

Imported only when a model is needed (torch at module level).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from cptbench.models.gen_loading import load_parts
from cptbench.models.generative import GenerativeAdapter, PreparedImage, Turn
from cptbench.models.image_processing import image_processor_class


def pad_to_square(image: np.ndarray, fill: Sequence[int]) -> np.ndarray:
    """``image`` centred on a square canvas of colour ``fill`` (its longer side; LLaVA-1.5's
    ``expand2square``: the offset of the shorter side is ``(long - short) // 2``)."""
    h, w = image.shape[:2]
    if h == w:
        return image
    side = max(h, w)
    out = np.empty((side, side, 3), dtype=np.uint8)
    out[:] = np.asarray(fill, dtype=np.uint8)
    top, left = (side - h) // 2, (side - w) // 2
    out[top:top + h, left:left + w] = image
    return out


class LlavaAdapter(GenerativeAdapter):
    """LLaVA-1.5 (module doc)."""

    family = "llava"
    generation_tag = "ASSISTANT:"
    answer_prefix = " "

    def __init__(self, model, tokenizer, image_processor, model_name: str, pad_square: bool = True):
        super().__init__(model, tokenizer, image_processor, model_name)
        self.pad_square = bool(pad_square)
        cfg = model.config
        self._image_token = int(cfg.image_token_index if hasattr(cfg, "image_token_index") else cfg.image_token_id)
        self._patch = int(cfg.vision_config.patch_size)
        self._extra = 1 if getattr(cfg, "vision_feature_select_strategy", "default") == "full" else 0
        mean = getattr(image_processor, "image_mean", None) or (0.5, 0.5, 0.5)
        self._fill = tuple(int(v * 255) for v in mean)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu") -> "LlavaAdapter":
        """Model, tokenizer and CLIP image processor of a LLaVA folder or hub id."""
        from transformers import LlavaForConditionalGeneration

        model, tokenizer, processor = load_parts(LlavaForConditionalGeneration, path, device, image_processor_class("CLIP"))
        return cls(model, tokenizer, processor, path)

    @property
    def placeholder_id(self) -> int:
        """The ``<image>`` token id (the config's ``image_token_index``)."""
        return self._image_token

    @property
    def end_of_answer(self) -> str:
        """The end-of-sequence token, ``</s>``, that closes every assistant turn."""
        return str(self.tokenizer.eos_token)

    def prepare_image(self, image: np.ndarray) -> PreparedImage:
        """Padded to a square (module doc), then the CLIP processor: ``pixel_values (3, S, S)``."""
        arr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB image (H, W, 3), got shape {arr.shape}")
        if self.pad_square:
            arr = pad_to_square(arr, self._fill)
        pixels = self.image_processor(images=[arr], return_tensors="pt", input_data_format="channels_last")["pixel_values"][0]
        h, w = int(pixels.shape[-2]), int(pixels.shape[-1])
        n = (h // self._patch) * (w // self._patch) + self._extra
        return PreparedImage({"pixel_values": pixels}, n, (1, h // self._patch, w // self._patch))

    def render(self, turns: Sequence[Turn]) -> str:
        """``USER: <image>\\n{q} ASSISTANT: {a}</s>`` per turn; the asking turn ends at ``ASSISTANT:``."""
        image = self.tokenizer.convert_ids_to_tokens(self._image_token)
        parts = []
        for t in turns:
            parts.append(f"USER: {image}\n{t.question} {self.generation_tag}")
            if t.answer is not None:
                parts.append(f"{self.answer_prefix}{t.answer}{self.end_of_answer}")
        return "".join(parts)

    def image_token_ids(self, image: PreparedImage) -> list[int]:
        """``n_tokens`` copies of the image token."""
        return [self._image_token] * image.n_tokens

    def positions(self, ids: Sequence[int], images: Sequence[PreparedImage]) -> np.ndarray:
        """``0 .. L-1`` on one axis."""
        return np.arange(len(ids), dtype=np.int64)[None, :]

    def collate_images(self, images: Sequence[PreparedImage]) -> dict[str, Any]:
        """``pixel_values`` stacked ``(N, 3, S, S)``."""
        return {"pixel_values": torch.stack([im.tensors["pixel_values"] for im in images])}
