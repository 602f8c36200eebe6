"""The adapter contract between methods and vision-language backbones.

Methods (CPT, fine-tuning) talk to a :class:`VLAdapter`, never to model classes. An adapter wraps
one Hugging Face model plus its processor and tokenizer and offers two things:

* masked-LM logits at the single ``[MASK]`` of each text, for a batch of (image, text) pairs;
* region features: the final hidden states of the image patches with their boxes in the original
  image's pixel coordinates, plus the pooled multimodal state, for (image, text) pairs.

Images are given as ``uint8`` arrays ``(H, W, 3)`` in RGB (already painted where a method paints).
``prepare_image`` turns one into model-ready tensors (cacheable by the caller); ``collate`` stacks
prepared images into a batch (padding where the model needs it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from cptbench.core.errors import ModelError


class ModelVocabularyError(ModelError):
    """A word the method needs is not a single token of the model's vocabulary."""


class TextTooLongError(ValueError):
    """A text is longer than ``max_text_length`` tokens; adapters never truncate silently."""


@dataclass
class RegionFeatures:
    """Final-layer states for a batch of B (image, text) pairs.

    ``patches``: tensor (B, P, H) of patch-token states (padding patches zeroed);
    ``patch_boxes``: tensor (B, P, 4) of each patch's box in the ORIGINAL image's pixel xyxy
    (all zeros for padding patches); ``patch_valid``: bool tensor (B, P);
    ``pooled``: tensor (B, H), the model's pooled multimodal ([CLS]) state.
    """

    patches: Any
    patch_boxes: Any
    patch_valid: Any
    pooled: Any


class VLAdapter(ABC):
    """A masked-LM vision-language backbone behind the small interface methods use."""

    #: the name or local path the model was loaded from (goes into every record)
    model_name: str
    #: the underlying ``torch.nn.Module`` (trainable by methods)
    model: Any
    tokenizer: Any
    #: the longest text, in tokens including special tokens, the model accepts
    max_text_length: int
    hidden_size: int

    @property
    def mask_token(self) -> str:
        """The tokenizer's mask token as text (``[MASK]``, ``<mask>``)."""
        return self.tokenizer.mask_token

    @property
    def mask_token_id(self) -> int:
        """The vocabulary id of :attr:`mask_token`."""
        return int(self.tokenizer.mask_token_id)

    def word_id(self, word: str) -> int:
        """The vocabulary id of ``word``; refuses words that are not exactly one token."""
        pieces = self._word_pieces(word)
        unk = getattr(self.tokenizer, "unk_token", None)
        if len(pieces) != 1 or (unk is not None and pieces[0] == unk and word != unk):
            what = "unknown (it maps to the unknown token)" if len(pieces) == 1 else f"{len(pieces)} tokens {pieces}"
            raise ModelVocabularyError(
                f"the word {word!r} is {what} in the vocabulary of model "
                f"{self.model_name!r}; CPT needs every colour word and 'none' to be a single token. "
                f"Choose another palette word or another model."
            )
        return int(self.tokenizer.convert_tokens_to_ids(pieces[0]))

    def _word_pieces(self, word: str) -> list[str]:
        """The tokens of ``word`` as it appears inside a sentence (adapters with byte-level BPE
        vocabularies override this: there a word after a space is a different token)."""
        return list(self.tokenizer.tokenize(word))

    @property
    def num_special_tokens(self) -> int:
        """Tokens the tokenizer adds to one text ([CLS], [SEP], ...): a text fits when
        ``count_tokens(text) + num_special_tokens <= max_text_length``."""
        return int(self.tokenizer.num_special_tokens_to_add(pair=False))

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` without the special tokens (see :attr:`num_special_tokens`)."""
        return len(self.tokenizer.tokenize(text))

    @abstractmethod
    def prepare_image(self, image: np.ndarray) -> dict[str, Any]:
        """Model-ready tensors for one uint8 RGB image (H, W, 3); the caller may cache the result."""

    @abstractmethod
    def collate(self, prepared: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Stack prepared images into one batch dict (padding as the model needs)."""

    @abstractmethod
    def mask_logits(self, images: dict[str, Any], texts: Sequence[str]):
        """Vocabulary logits (B, V) at the ``[MASK]`` of each text; each text holds exactly one
        ``[MASK]`` and must fit ``max_text_length`` (callers truncate the free part first)."""

    @abstractmethod
    def region_features(self, images: dict[str, Any], texts: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> RegionFeatures:
        """Patch states with their boxes in original-image pixels (``image_sizes`` = (W, H) each)."""

    def to(self, device) -> "VLAdapter":
        """Move the model to ``device`` in place; returns the adapter."""
        self.model.to(device)
        return self

    @property
    def device(self):
        """The device of the model's first parameter."""
        return next(self.model.parameters()).device
