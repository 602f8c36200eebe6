"""Tiny randomly initialised backbones for tests, written like hub models.

``build_tiny_model(kind, out_dir, words)`` writes a folder holding a config, random weights
(safetensors), an image processor config and a tokenizer built on the fly, so that
``load_adapter(str(out_dir))`` loads it exactly like a downloaded model. Nothing is fetched.

* ``vilt``: ``ViltForMaskedLM`` (hidden 32, 2 layers), BERT WordPiece tokenizer, ViLT image
  processor (shortest edge ``image_size``, sides rounded down to a multiple of the patch size).
* ``flava``: ``FlavaForPreTraining`` without image codebook (image/text/multimodal encoders of
  hidden 32, 2 layers each), BERT WordPiece tokenizer, FLAVA image processor (square resize).
* ``bridgetower``: ``BridgeTowerForMaskedLM`` (vision hidden 64: its attention uses 64-wide heads,
  text and cross-modal hidden 32, 2 layers), byte-level BPE (RoBERTa) tokenizer, BridgeTower image
  processor (shortest edge ``image_size`` then a square centre crop).

The WordPiece vocabulary holds the special tokens, the CPT words (colour words, ``none``, the
template words), the caller's ``words``, and single characters with their ``##`` continuations
(so an unknown word splits into pieces, as with a real BERT vocabulary). The BPE vocabulary holds
the 256 byte symbols and one merge chain per word, so `` red`` (with its leading space, as inside
a sentence) is the single token ``Ġred``.

The same ``(kind, words, image_size, seed)`` always writes the same weights; the global torch RNG is
left as it was.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Sequence

KINDS = ("vilt", "flava", "bridgetower")

#: colour words of the CPT palettes and the few-shot negative word
CPT_WORDS = ("red", "blue", "yellow", "purple", "green", "none")
#: template words and a few common referring-expression words
BASE_WORDS = (
    "is", "in", "color", "colour", ".", ",", "the", "a", "an", "of", "on", "with", "and", "to",
    "left", "right", "top", "bottom", "middle", "front", "back", "near", "far", "big", "small",
    "man", "woman", "person", "people", "guy", "girl", "boy", "shirt", "dog", "cat", "car",
    "white", "black", "one", "two",
)

_PIECE_RE = re.compile(r"\w+|[^\w\s]", re.UNICODE)
_TEXT_MAX_LENGTH = 40  # ViLT's real text length; the tiny models use it for all kinds


def _pieces(words: Sequence[str], lowercase: bool) -> list[str]:
    """Unique word pieces in first-seen order (CPT words first, then base words, then ``words``)."""
    seen: dict[str, None] = {}
    for word in (*CPT_WORDS, *BASE_WORDS, *words):
        if not isinstance(word, str):
            raise TypeError(f"words must be strings, got {word!r}")
        text = word.lower() if lowercase else word
        for piece in _PIECE_RE.findall(text):
            seen.setdefault(piece, None)
    return list(seen)


def _wordpiece_vocab(words: Sequence[str]) -> dict[str, int]:
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    punct = list(string.punctuation)
    tokens = specials + _pieces(words, lowercase=True) + chars + punct + [f"##{c}" for c in chars]
    vocab: dict[str, int] = {}
    for tok in tokens:
        vocab.setdefault(tok, len(vocab))
    return vocab


def _byte_symbols() -> dict[int, str]:
    """The byte-level BPE alphabet: every byte maps to one printable unicode character.

    Printable latin-1 bytes map to themselves; the others (controls, space, ...) are shifted past
    255 in byte order, which is the convention GPT-2 / RoBERTa tokenizers use (space becomes 'Ġ').
    """
    keep = [b for b in range(256) if (0x21 <= b <= 0x7E) or (0xA1 <= b <= 0xAC) or (0xAE <= b <= 0xFF)]
    keep_set = set(keep)
    table = {b: chr(b) for b in keep}
    shift = 0
    for b in range(256):
        if b not in keep_set:
            table[b] = chr(256 + shift)
            shift += 1
    return table


def _bpe_vocab_and_merges(words: Sequence[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    table = _byte_symbols()
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    vocab: dict[str, int] = {}
    for tok in specials + [table[b] for b in range(256)]:
        vocab.setdefault(tok, len(vocab))
    spaced_merges: list[tuple[str, str]] = []
    plain_merges: list[tuple[str, str]] = []
    for piece in _pieces(words, lowercase=False):
        encoded = "".join(table[b] for b in piece.encode("utf-8"))
        # Chains that start with the space symbol come first: at any step the only such pair in a
        # word is its leftmost one, so " word" always merges fully into one token.
        for symbols, merges in (((table[0x20],) + tuple(encoded), spaced_merges), (tuple(encoded), plain_merges)):
            prefix = symbols[0]
            for sym in symbols[1:]:
                pair = (prefix, sym)
                prefix = prefix + sym
                if prefix not in vocab:
                    vocab[prefix] = len(vocab)
                    merges.append(pair)
    return vocab, spaced_merges + plain_merges


def _bert_tokenizer(words: Sequence[str]):
    from cptbench.models.compat import wordpiece_tokenizer

    return wordpiece_tokenizer(_wordpiece_vocab(words), do_lower_case=True, model_max_length=_TEXT_MAX_LENGTH)


def _roberta_tokenizer(words: Sequence[str]):
    from transformers import AddedToken

    from cptbench.models.compat import byte_bpe_tokenizer

    vocab, merges = _bpe_vocab_and_merges(words)
    return byte_bpe_tokenizer(
        vocab,
        merges,
        # as in the real RoBERTa tokenizer: "<mask>" absorbs the space before it
        mask_token=AddedToken("<mask>", lstrip=True, rstrip=False),
        model_max_length=_TEXT_MAX_LENGTH,
    )


def _check_args(kind: str, image_size: int) -> int:
    if kind not in KINDS:
        raise ValueError(f"unknown tiny model kind {kind!r}; choose one of {', '.join(KINDS)}")
    if int(image_size) != image_size or image_size < 8 or image_size % 4:
        raise ValueError(f"image_size must be an integer >= 8 and a multiple of 4, got {image_size!r}")
    return int(image_size) // 4  # patch size: a 4x4 patch grid at the nominal size


def build_tiny_model(kind: str, out_dir: Path, words: Sequence[str] = (), image_size: int = 32, seed: int = 0) -> Path:
    """Write a tiny random ``kind`` model (vilt | flava | bridgetower) with its image processor and
    tokenizer into ``out_dir`` (created if needed) and return the folder."""
    patch = _check_args(kind, image_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = list(words)
    build = {"vilt": _build_vilt, "flava": _build_flava}.get(kind, _build_bridgetower)
    return save_tiny(out, build, kind, words, image_size, seed, words, image_size, patch)


def _build_vilt(words, image_size, patch):
    from transformers import ViltConfig, ViltForMaskedLM

    from cptbench.models.vilt import image_processor_class

    tokenizer = _bert_tokenizer(words)
    config = ViltConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=_TEXT_MAX_LENGTH,
        image_size=image_size,
        patch_size=patch,
        max_image_length=-1,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = ViltForMaskedLM(config)
    processor = image_processor_class()(size={"shortest_edge": image_size}, size_divisor=patch)
    return model, processor, tokenizer


def _build_flava(words, image_size, patch):
    from transformers import FlavaConfig, FlavaForPreTraining

    from cptbench.models.flava import image_processor_class

    tokenizer = _bert_tokenizer(words)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    config = FlavaConfig(
        image_config=dict(small, image_size=image_size, patch_size=patch, vocab_size=16),
        text_config=dict(small, vocab_size=len(tokenizer), max_position_embeddings=_TEXT_MAX_LENGTH,
                         pad_token_id=tokenizer.pad_token_id),
        multimodal_config=dict(small),
        image_codebook_config=dict(hidden_size=8, num_groups=1, num_blocks_per_group=1, vocab_size=16),
        hidden_size=32,
        projection_dim=32,
        init_codebook=False,
    )
    model = FlavaForPreTraining(config)
    square = {"height": image_size, "width": image_size}
    processor = image_processor_class()(size=dict(square), crop_size=dict(square))
    return model, processor, tokenizer


def _build_bridgetower(words, image_size, patch):
    from transformers import BridgeTowerConfig, BridgeTowerForMaskedLM

    from cptbench.models.bridgetower import image_processor_class

    tokenizer = _roberta_tokenizer(words)
    pad = tokenizer.pad_token_id
    config = BridgeTowerConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
            intermediate_size=64, max_position_embeddings=_TEXT_MAX_LENGTH + pad + 1,
            pad_token_id=pad, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        ),
        # BridgeTower's vision attention uses heads of width 64: the hidden size must be a multiple of 64
        vision_config=dict(hidden_size=64, num_hidden_layers=2, image_size=image_size, patch_size=patch),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
    )
    model = BridgeTowerForMaskedLM(config)
    processor = image_processor_class()(
        size={"shortest_edge": image_size}, crop_size={"shortest_edge": image_size}, size_divisor=patch,
    )
    return model, processor, tokenizer


def save_tiny(out: Path, build, kind: str, words: Sequence[str], image_size: int, seed: int, *build_args) -> Path:
    """Build a tiny random model with ``build(*build_args)`` -> (model, processor, tokenizer) under
    torch seed ``seed`` (the global RNG left as it was), and write it to ``out`` as a model folder
    with ``cptbench_tiny.json`` saying how it was made: the one tail of every tiny builder."""
    import torch

    from cptbench.models.loading import quiet_progress

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor, tokenizer = build(*build_args)
    model.eval()
    with quiet_progress():
        model.save_pretrained(out)
    processor.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "cptbench_tiny.json").write_text(
        json.dumps({"kind": kind, "image_size": image_size, "seed": seed, "words": list(words)}, indent=1) + "\n")
    return out
