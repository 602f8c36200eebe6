"""The common code of the Hugging Face dual encoders (:class:`HFDualEncoder`): loading a model with
its tokenizer and image processor (refusing a checkpoint that leaves a tensor unfilled), the
model's own image processor for pixels, tokenisation without silent truncation, batched stacking.

Imported only when a model is needed (torch at module level).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from cptbench.core.errors import ModelError
from cptbench.models.base import TextTooLongError
from cptbench.models.dual_encoder import DualEncoder
from cptbench.models.hf_adapter import check_image, run_image_processor
from cptbench.models.image_processing import image_processor_class, size_get


def load_dual_parts(model_cls, processor_stem: str, path: str, device: str, trust_remote_code: bool, what: str):
    """(model in eval mode on ``device``, tokenizer, image processor) from one folder or hub id.

    A checkpoint that does not fill every weight of ``model_cls`` is refused (a captioning BLIP
    loaded as a retrieval model would get random projection and matching heads): ``what`` names
    the checkpoint kind the error asks for."""
    from transformers import AutoTokenizer

    from cptbench.models.loading import check_all_filled, quiet_progress

    config = model_cls.config_class.from_pretrained(path)  # the adapter's own class: no remote code
    with quiet_progress(enabled=Path(path).is_dir()):
        model, info = model_cls.from_pretrained(path, config=config, output_loading_info=True,
                                                trust_remote_code=trust_remote_code)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        raise ModelError(f"model {path!r}: {len(missing)} weight(s) of {model_cls.__name__} are not in the checkpoint "
                         f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); they would be random. "
                         f"The visual-prompt methods need {what}.")
    check_all_filled(path, model)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    processor = image_processor_class(processor_stem).from_pretrained(path)
    model.to(device).eval()
    return model, tokenizer, processor


def processor_side(processor, fallback: int) -> int:
    """The side of the square pixel input an image processor produces (its crop size when it
    crops, else its fixed height), ``fallback`` when it says neither."""
    if getattr(processor, "do_center_crop", False):
        side = size_get(getattr(processor, "crop_size", None), "height")
        if side:
            return int(side)
    side = size_get(getattr(processor, "size", None), "height") or size_get(getattr(processor, "size", None), "shortest_edge")
    return int(side) if side else int(fallback)


class HFDualEncoder(DualEncoder):
    """A transformers dual encoder: pixels through the model's image processor, texts through its
    tokenizer (never truncated: a text over :attr:`max_text_length` is refused; the methods cut the
    expression first), batches stacked on the model's device."""

    def __init__(self, model, tokenizer, image_processor, model_name: str, max_text_length: int, image_size: int):
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.model_name = str(model_name)
        tok_max = getattr(tokenizer, "model_max_length", None)
        limit = int(max_text_length)
        if isinstance(tok_max, int) and 0 < tok_max < limit:
            limit = tok_max
        self.max_text_length = limit
        self.image_size = int(image_size)

    # -- images ----------------------------------------------------------------------------------
    def prepare_image(self, image: np.ndarray) -> torch.Tensor:
        """``pixel_values`` (3, S, S), float32, by the model's own image processor."""
        arr = check_image(image)
        out = run_image_processor(self.image_processor, arr)
        return out["pixel_values"].float()

    def _pixels(self, prepared: Sequence[Any]) -> torch.Tensor:
        if not len(prepared):
            raise ValueError("no images given")
        shapes = {tuple(p.shape) for p in prepared}
        if len(shapes) != 1:
            raise ValueError(f"model {self.model_name!r} expects every image at one processed size, got {sorted(shapes)}")
        dtype = next(self.model.parameters()).dtype
        return torch.stack(list(prepared)).to(self.device, dtype=dtype if dtype.is_floating_point else torch.float32)

    # -- texts -----------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` with the special tokens the tokenizer adds."""
        return len(self.tokenizer(text, truncation=False)["input_ids"])

    def _tokens(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        if not texts:
            raise ValueError("no texts given")
        enc = self.tokenizer(texts, padding=True, truncation=False, return_tensors="pt")
        lengths = enc["attention_mask"].sum(dim=1).tolist()
        too_long = [(i, int(n)) for i, n in enumerate(lengths) if n > self.max_text_length]
        if too_long:
            i, n = too_long[0]
            raise TextTooLongError(f"{len(too_long)} text(s) exceed the {self.max_text_length}-token limit of model "
                                   f"{self.model_name!r}; text {i} has {n} tokens: {texts[i]!r}")
        keep = ("input_ids", "attention_mask")
        return {k: enc[k].to(self.device) for k in keep}


def unit(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` scaled to unit length (as the models normalise their embeddings)."""
    return x / x.norm(p=2, dim=-1, keepdim=True)
