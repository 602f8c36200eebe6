"""Tiny randomly initialised dual encoders for tests and smoke runs, written like hub models.

``build_tiny_dual_model(kind, out_dir, words)`` writes a folder with a config, random weights
(safetensors), an image processor config and a tokenizer built on the fly, so that
``load_dual_encoder(str(out_dir))`` loads it exactly like a downloaded model. Nothing is fetched.

* ``clip``: ``CLIPModel`` (vision and text hidden 32, 2 layers, projection 16, 77 text positions),
  a CLIP byte-level BPE tokenizer (lower-casing, ``</w>`` word ends) written from a hand-made
  ``vocab.json`` + ``merges.txt``, CLIP's image processor (shortest edge ``image_size``, square
  centre crop).
* ``blip``: ``BlipForImageTextRetrieval`` (vision and text hidden 32, 2 layers, ITC projection 16),
  a BERT WordPiece tokenizer (BLIP's tokenizer is BERT's), BLIP's image processor (square resize).

The CLIP vocabulary holds the 256 byte symbols, each also with ``</w>``, one merge chain per word
(the word's bytes merged left to right, the last one carrying ``</w>``) and the two special tokens
last, as CLIP's does; an unknown word splits into byte pieces. The same ``(kind, words,
image_size, seed)`` always writes the same weights; the global torch RNG is left as it was.
"""

from __future__ import annotations

import inspect
import json
import tempfile
from pathlib import Path
from typing import Sequence

from cptbench.models.tiny import _byte_symbols, _pieces, _wordpiece_vocab, save_tiny

KINDS = ("clip", "blip")

#: words of the visual-prompt templates and of synthref's expressions (known as whole tokens)
DUAL_WORDS = ("photo", "circle", "square", "triangle", "diamond", "gray", "purple", "green", "blue", "yellow",
              "black", "small", "big", "red", "color")

_CLIP_TEXT_POSITIONS = 77
_BLIP_TEXT_POSITIONS = 40
_START, _END = "<|startoftext|>", "<|endoftext|>"


def clip_vocab_and_merges(words: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP BPE vocabulary (token -> id) and its merges in priority order (module doc)."""
    table = _byte_symbols()
    vocab: dict[str, int] = {}
    for tok in [table[b] for b in range(256)] + [table[b] + "</w>" for b in range(256)]:
        vocab.setdefault(tok, len(vocab))
    merges: list[tuple[str, str]] = []
    for piece in _pieces(list(words), lowercase=True):
        symbols = [table[b] for b in piece.encode("utf-8")]
        symbols[-1] += "</w>"
        prefix = symbols[0]
        for sym in symbols[1:]:
            pair = (prefix, sym)
            prefix = prefix + sym
            if prefix not in vocab:
                vocab[prefix] = len(vocab)
                merges.append(pair)
    for tok in (_START, _END):
        vocab[tok] = len(vocab)
    return vocab, merges


def clip_tokenizer(vocab: dict[str, int], merges: Sequence[tuple[str, str]], **kwargs):
    """A CLIP tokenizer from a vocabulary and merges: transformers 5.x's tokenizer takes them in
    memory; 4.x's fast tokenizer reads ``vocab.json`` + ``merges.txt`` (written to a temporary
    folder here). Detected on the installed class's signature, as :mod:`cptbench.models.compat`
    detects its differences."""
    from transformers import CLIPTokenizer

    params = inspect.signature(CLIPTokenizer.__init__).parameters
    if "vocab" in params and "merges" in params:  # 5.x
        return CLIPTokenizer(vocab=dict(vocab), merges=[(a, b) for a, b in merges], **kwargs)
    from transformers import CLIPTokenizerFast  # 4.x

    with tempfile.TemporaryDirectory(prefix="cptbench-clip-bpe-") as tmp:
        vocab_file, merges_file = Path(tmp) / "vocab.json", Path(tmp) / "merges.txt"
        vocab_file.write_text(json.dumps(dict(vocab), ensure_ascii=False), encoding="utf-8")
        merges_file.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
        return CLIPTokenizerFast(vocab_file=str(vocab_file), merges_file=str(merges_file), **kwargs)


def _check_args(kind: str, image_size: int) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny dual-encoder kind {kind!r}; choose one of {', '.join(KINDS)}")
    if int(image_size) != image_size or image_size < 8 or image_size % 4:
        raise ValueError(f"image_size must be an integer >= 8 and a multiple of 4, got {image_size!r}")
    return int(image_size) // 4  # a 4 x 4 patch grid


def build_tiny_dual_model(kind: str, out_dir: Path, words: Sequence[str] = (), image_size: int = 32,
                          seed: int = 0) -> Path:
    """Write a tiny random ``kind`` (clip | blip) dual encoder with its image processor and
    tokenizer into ``out_dir`` (created if needed) and return the folder."""
    patch = _check_args(kind, image_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = [*DUAL_WORDS, *words]

    build = _build_clip if kind == "clip" else _build_blip
    return save_tiny(out, build, kind, words, image_size, seed, words, image_size, patch)


def _build_clip(words, image_size, patch):
    from transformers import CLIPConfig, CLIPModel

    from cptbench.models.image_processing import image_processor_class

    vocab, merges = clip_vocab_and_merges(words)
    tokenizer = clip_tokenizer(vocab, merges, model_max_length=_CLIP_TEXT_POSITIONS)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = CLIPConfig(
        text_config=dict(small, vocab_size=len(vocab), max_position_embeddings=_CLIP_TEXT_POSITIONS,
                         bos_token_id=vocab[_START], eos_token_id=vocab[_END], pad_token_id=vocab[_END]),
        vision_config=dict(small, image_size=image_size, patch_size=patch),
        projection_dim=16,
    )
    model = CLIPModel(config)
    processor = image_processor_class("CLIP")(size={"shortest_edge": image_size},
                                             crop_size={"height": image_size, "width": image_size})
    return model, processor, tokenizer


def _build_blip(words, image_size, patch):
    from transformers import BlipConfig, BlipForImageTextRetrieval

    from cptbench.models.compat import wordpiece_tokenizer
    from cptbench.models.image_processing import image_processor_class

    tokenizer = wordpiece_tokenizer(_wordpiece_vocab(words), do_lower_case=True,
                                    model_max_length=_BLIP_TEXT_POSITIONS)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = BlipConfig(
        # initial scales: BlipVisionConfig's default is 1e-10 (the real checkpoints are trained), at
        # which a random vision tower embeds every image alike; at the text default (0.02) the tiny
        # text tower's [CLS] embeds every text alike (cosines 0.99997+). 0.02 and 0.1 keep them apart
        text_config=dict(small, vocab_size=len(tokenizer), max_position_embeddings=_BLIP_TEXT_POSITIONS,
                         pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id,
                         sep_token_id=tokenizer.sep_token_id, encoder_hidden_size=32, initializer_range=0.1),
        vision_config=dict(small, image_size=image_size, patch_size=patch, initializer_range=0.02),
        image_text_hidden_size=16,
    )
    model = BlipForImageTextRetrieval(config)
    processor = image_processor_class("Blip")(size={"height": image_size, "width": image_size})
    return model, processor, tokenizer
