"""Stand-in adapters for tests and dry runs of CPT: no download, no transformers import.

* :class:`WordTokenizer` - a whitespace/punctuation tokenizer with a fixed vocabulary (BERT-style
  special tokens), enough of the tokenizer interface the adapter contract and CPT use.
* :class:`OracleAdapter` - answers the colour painted over a known ground-truth region by reading
  the painted pixels it is given (bookkeeping checks: grouping, colour words, scoring, arg-max).
* :class:`TinyTorchAdapter` - a few-thousand-parameter masked-LM (text bag + image pixels, with a
  LayerNorm, biases and dropout) that trains in milliseconds on CPU.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from cptbench.models.base import RegionFeatures, VLAdapter
from cptbench.cpt.painting import DEFAULT_ALPHA, Palette, blend_color
from cptbench.cpt.prompts import clean_expression

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_TOKEN_RE = re.compile(r"\[[A-Z]+\]|\w+|[^\w\s]")


class WordTokenizer:
    """Lower-cased words and punctuation marks are tokens; ``[MASK]``-style specials stay whole."""

    is_fast = False
    pad_token, unk_token, cls_token, sep_token, mask_token = SPECIALS

    def __init__(self, words: Sequence[str] = ()):
        vocab = list(SPECIALS)
        for w in words:
            for piece in self._split(w):
                if piece not in vocab:
                    vocab.append(piece)
        self.vocab = {w: i for i, w in enumerate(vocab)}

    def __len__(self) -> int:
        return len(self.vocab)

    @staticmethod
    def _split(text: str) -> list[str]:
        return [t if t in SPECIALS else t.lower() for t in _TOKEN_RE.findall(text)]

    def tokenize(self, text: str) -> list[str]:
        """Words and marks; a word outside the vocabulary becomes ``[UNK]`` (as BERT's does)."""
        return [t if t in self.vocab else self.unk_token for t in self._split(text)]

    @property
    def unk_token_id(self) -> int:
        return self.vocab[self.unk_token]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.vocab.get(tokens, self.vocab["[UNK]"])
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_tokens_to_string(self, tokens: Sequence[str]) -> str:
        return re.sub(r" ([^\w\s\[])", r"\1", " ".join(tokens))

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return 3 if pair else 2

    @property
    def mask_token_id(self) -> int:
        return self.vocab["[MASK]"]

    def encode(self, text: str) -> list[int]:
        return [self.vocab["[CLS]"]] + self.convert_tokens_to_ids(self.tokenize(text)) + [self.vocab["[SEP]"]]


class OracleAdapter(VLAdapter):
    """Puts logit ``high`` on the colour whose blend covers the registered ground-truth region of
    the text's expression, or on ``none`` when that region is unpainted. It sees only what a model
    sees (painted pixels and texts); the ground truth comes from :meth:`register`."""

    hidden_size = 8

    def __init__(self, palette: Palette, alpha: float = DEFAULT_ALPHA, words: Sequence[str] = (),
                 max_text_length: int = 40, high: float = 10.0, strict: bool = True):
        import torch

        self.model = torch.nn.Module()  # nothing to train
        self.palette = palette
        self.alpha = alpha
        self.high = high
        self.strict = strict  # unknown texts: KeyError (strict) or all-zero logits
        self.tokenizer = WordTokenizer(list(palette.words) + ["none", "is", "in", "color", "."] + list(words))
        self.model_name = "oracle"
        self.max_text_length = max_text_length
        self._truth: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.calls: list[int] = []  # batch size of every mask_logits call

    def register(self, expression: str, image: np.ndarray, region: np.ndarray) -> None:
        """The unpainted image and the boolean ground-truth region of ``expression``."""
        self._truth[clean_expression(expression)] = (np.asarray(image), np.asarray(region, dtype=bool))

    def prepare_image(self, image: np.ndarray) -> dict[str, Any]:
        return {"pixels": np.asarray(image).copy()}

    def collate(self, prepared: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return {"pixels": [p["pixels"] for p in prepared]}

    def _answer(self, pixels: np.ndarray, text: str) -> str | None:
        expression = max((q for q in self._truth if text.startswith(q + " ")), key=len, default=None)
        if expression is None:
            if not self.strict:
                return None
            raise KeyError(f"no registered expression for text {text!r}")
        image, region = self._truth[expression]
        seen = pixels[region]
        for word, rgb in zip(self.palette.words, self.palette.rgb):
            if np.array_equal(seen, blend_color(image[region], rgb, self.alpha)):
                return word
        return "none"

    def mask_logits(self, images: Mapping[str, Any], texts: Sequence[str]):
        import torch

        self.calls.append(len(texts))
        out = torch.zeros(len(texts), len(self.tokenizer))
        for b, (pixels, text) in enumerate(zip(images["pixels"], texts)):
            answer = self._answer(pixels, text)
            if answer is not None:
                out[b, self.word_id(answer)] = self.high
        return out

    def region_features(self, images, texts, image_sizes) -> RegionFeatures:  # pragma: no cover
        raise NotImplementedError("the oracle adapter has no region features")


class TinyTorchAdapter(VLAdapter):
    """A tiny trainable masked-LM: ``vocab(LayerNorm(tanh(E_text + W_img(image))))``."""

    def __init__(self, words: Sequence[str] = (), image_side: int = 8, hidden: int = 16,
                 max_text_length: int = 40, seed: int = 0, dropout: float = 0.1):
        import torch
        from torch import nn

        base = ["red", "blue", "yellow", "purple", "green", "none", "is", "in", "color", "."]
        self.tokenizer = WordTokenizer(base + list(words))
        self.model_name = "tiny-torch"
        self.max_text_length = max_text_length
        self.hidden_size = hidden
        self.image_side = image_side
        gen = torch.Generator().manual_seed(seed)
        v = len(self.tokenizer)

        class TinyMLM(nn.Module):
            def __init__(self):
                super().__init__()
                self.text = nn.EmbeddingBag(v, hidden, mode="mean")
                self.image = nn.Linear(3 * image_side * image_side, hidden)
                self.norm = nn.LayerNorm(hidden)
                self.drop = nn.Dropout(dropout)
                self.head = nn.Linear(hidden, v)

            def forward(self, ids, offsets, pixels):
                h = torch.tanh(self.text(ids, offsets) + self.image(pixels.flatten(1)))
                return self.head(self.drop(self.norm(h)))

        with torch.random.fork_rng(devices=[]):  # nn default inits draw from the global RNG
            model = TinyMLM()
        with torch.no_grad():
            for p in model.parameters():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        self.model = model.eval()

    def prepare_image(self, image: np.ndarray) -> dict[str, Any]:
        import torch
        from PIL import Image

        small = Image.fromarray(np.asarray(image, dtype=np.uint8)).resize((self.image_side, self.image_side), Image.BILINEAR)
        return {"pixel_values": torch.from_numpy(np.asarray(small, dtype=np.float32) / 255.0).permute(2, 0, 1)}

    def collate(self, prepared: Sequence[dict[str, Any]]) -> dict[str, Any]:
        import torch

        return {"pixel_values": torch.stack([p["pixel_values"] for p in prepared])}

    def mask_logits(self, images: Mapping[str, Any], texts: Sequence[str]):
        import torch

        encoded = [self.tokenizer.encode(t) for t in texts]
        for t, ids in zip(texts, encoded):
            if len(ids) > self.max_text_length or ids.count(self.mask_token_id) != 1:
                raise ValueError(f"bad text for the tiny model: {t!r}")
        offsets = torch.tensor([0] + [len(ids) for ids in encoded[:-1]]).cumsum(0)
        flat = torch.tensor([i for ids in encoded for i in ids])
        return self.model(flat, offsets, images["pixel_values"])

    def region_features(self, images, texts, image_sizes) -> RegionFeatures:  # pragma: no cover
        raise NotImplementedError("the tiny torch adapter has no region features")
