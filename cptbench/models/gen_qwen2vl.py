"""Qwen2-VL (``Qwen2VLForConditionalGeneration``, model_type ``qwen2_vl``) behind the generative
adapter.

Facts of the family this adapter follows:

* Chat format (the Qwen2-VL chat template with its default system turn):
  ``<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n`` then per turn
  ``<|im_start|>user\\n<|vision_start|><|image_pad|><|vision_end|>{question}<|im_end|>\\n
  <|im_start|>assistant\\n{answer}<|im_end|>\\n``, the asking turn ending after
  ``<|im_start|>assistant\\n``. No BOS.
* Images keep their aspect ratio: the image processor resizes each side to a multiple of
  ``patch * merge`` within its pixel budget and returns flattened patches with ``image_grid_thw``
  (t, h, w in patches); the image takes ``t * h * w / merge^2`` tokens, laid out ``(t, h / merge,
  w / merge)``.
* Multimodal RoPE (M-RoPE): every token has a (temporal, height, width) position. A text token's
  three positions are equal and one more than the largest position before it; an image's tokens sit
  at ``start + (t, h, w)`` over their grid, ``start`` being the position the next text token would
  have had, and the text after the image continues from the largest of them plus one.
  :meth:`Qwen2VLAdapter.positions` computes exactly this; the tests check it against the model's own
  computation (the brute-force path lets the model compute positions).

The combined ``Qwen2VLProcessor`` is not used: in transformers 5 it needs a video processor, which
needs torchvision. The tokenizer and the image processor are used directly and the image
placeholder is expanded here, as that processor does.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from cptbench.models.gen_loading import load_parts
from cptbench.models.generative import GenerativeAdapter, PreparedImage, Turn
from cptbench.models.image_processing import image_processor_class

SYSTEM = "You are a helpful assistant."


class Qwen2VLAdapter(GenerativeAdapter):
    """Qwen2-VL (module doc)."""

    family = "qwen2_vl"
    generation_tag = "<|im_start|>assistant\n"
    answer_prefix = ""

    def __init__(self, model, tokenizer, image_processor, model_name: str):
        super().__init__(model, tokenizer, image_processor, model_name)
        cfg = model.config
        self._image_token = int(cfg.image_token_id)
        self._merge = int(getattr(image_processor, "merge_size", None) or cfg.vision_config.spatial_merge_size)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu") -> "Qwen2VLAdapter":
        """Model, tokenizer and Qwen2-VL image processor of a folder or hub id."""
        from transformers import Qwen2VLForConditionalGeneration

        model, tokenizer, processor = load_parts(Qwen2VLForConditionalGeneration, path, device, image_processor_class("Qwen2VL"))
        return cls(model, tokenizer, processor, path)

    @property
    def placeholder_id(self) -> int:
        """The ``<|image_pad|>`` token id."""
        return self._image_token

    @property
    def end_of_answer(self) -> str:
        """``<|im_end|>``, which closes every turn."""
        return "<|im_end|>"

    def prepare_image(self, image: np.ndarray) -> PreparedImage:
        """Flattened patches and their grid (module doc)."""
        arr = np.ascontiguousarray(np.asarray(image, dtype=np.uint8))
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected a uint8 RGB image (H, W, 3), got shape {arr.shape}")
        out = self.image_processor(images=[arr], return_tensors="pt", input_data_format="channels_last")
        thw = out["image_grid_thw"][0]
        t, h, w = (int(v) for v in thw.tolist())
        m = self._merge
        return PreparedImage({"pixel_values": out["pixel_values"], "image_grid_thw": thw},
                             t * h * w // (m * m), (t, h // m, w // m))

    def render(self, turns: Sequence[Turn]) -> str:
        """The chat template's text (module doc), one ``<|image_pad|>`` per image."""
        parts = [f"<|im_start|>system\n{SYSTEM}<|im_end|>\n"]
        for t in turns:
            parts.append(f"<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>{t.question}<|im_end|>\n"
                         f"{self.generation_tag}")
            if t.answer is not None:
                parts.append(f"{self.answer_prefix}{t.answer}{self.end_of_answer}\n")
        return "".join(parts)

    def image_token_ids(self, image: PreparedImage) -> list[int]:
        """``n_tokens`` copies of ``<|image_pad|>`` (the vision start and end tokens are in the text)."""
        return [self._image_token] * image.n_tokens

    def positions(self, ids: Sequence[int], images: Sequence[PreparedImage]) -> np.ndarray:
        """M-RoPE positions ``(3, L)`` (module doc)."""
        ids = np.asarray(ids, dtype=np.int64)
        out = np.empty((3, len(ids)), dtype=np.int64)
        nxt, i, k = 0, 0, 0
        while i < len(ids):
            if ids[i] != self._image_token:
                out[:, i] = nxt
                nxt += 1
                i += 1
                continue
            t, h, w = images[k].grid
            n = t * h * w
            tt, hh, ww = np.meshgrid(np.arange(t), np.arange(h), np.arange(w), indexing="ij")
            out[:, i:i + n] = nxt + np.stack([tt.ravel(), hh.ravel(), ww.ravel()])
            nxt += max(t, h, w)
            i += n
            k += 1
        return out

    def collate_images(self, images: Sequence[PreparedImage]) -> dict[str, Any]:
        """Every image's patches concatenated, and their grids stacked ``(N, 3)``."""
        return {"pixel_values": torch.cat([im.tensors["pixel_values"] for im in images]),
                "image_grid_thw": torch.stack([im.tensors["image_grid_thw"] for im in images])}

    def reference_extra(self, ids: Any) -> dict[str, Any]:
        """``mm_token_type_ids`` (1 at image tokens) where the installed model takes it (transformers 5
        computes M-RoPE only with it)."""
        from cptbench.models.gen_compat import takes_argument

        if takes_argument(self.model.model.forward, "mm_token_type_ids"):
            return {"mm_token_type_ids": (ids == self._image_token).to(torch.int32)}
        return {}
