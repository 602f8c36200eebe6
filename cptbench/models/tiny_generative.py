"""Tiny randomly initialised generative vision-language models for tests, written like hub models.

``build_tiny_generative(kind, out_dir)`` writes a folder with a config, random weights
(safetensors), an image processor config and a tokenizer built on the fly, so that
``load_generative(str(out_dir))`` loads it exactly as it loads a downloaded model. Nothing is
fetched. Kinds:

* ``llava``: ``LlavaForConditionalGeneration`` (CLIP vision tower of hidden 32, 2 layers, patch
  ``image_size / 4``; Llama language model of hidden 32, 2 layers), CLIP image processor (shortest
  edge and centre crop ``image_size``), a byte-level BPE tokenizer that adds ``<s>`` like Llama's;
  special tokens ``<s> </s> <unk> <pad> <image>``.
* ``qwen2_vl``: ``Qwen2VLForConditionalGeneration`` (vision tower of width 32, 2 blocks, patch
  ``image_size / 8``, merge 2; language model of hidden 32, 2 layers, one key-value head, M-RoPE
  sections (2, 3, 3)), Qwen2-VL image processor (pixel budget ``image_size^2 / 4`` to
  ``4 image_size^2``), a byte-level BPE tokenizer without BOS; special tokens ``<|endoftext|>``,
  ``<|im_start|>``, ``<|im_end|>``, ``<|vision_start|>``, ``<|vision_end|>``, ``<|image_pad|>``,
  ``<|video_pad|>``.

At ``image_size`` (64 by default, synthref's size) both take 16 image tokens and a square image of
that size reaches the model unresampled. The vocabulary is the 256 byte symbols plus one merge chain
per word of :data:`cptbench.models.tiny.CPT_WORDS`, :data:`~cptbench.models.tiny.BASE_WORDS`,
:data:`GENERATIVE_WORDS` and the caller's ``words`` (any other text still tokenises, byte by byte).
Context length 4096. The same ``(kind, words, image_size, seed)`` always writes the same weights;
the global torch RNG is left as it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

KINDS = ("llava", "qwen2_vl")
#: words of the prompts, the chat formats, the mark numbers and synthref's expressions
GENERATIVE_WORDS = (
    "USER", "ASSISTANT", "user", "assistant", "system", "You", "are", "helpful", "Which", "which", "color", "colour",
    "region", "regions", "image", "painted", "marked", "number", "numbers", "Answer", "only", "name", "this",
    "different", "by", "described", "circle", "square", "triangle", "diamond", "gray", "1", "2", "3", "4", "5", "6",
    "7", "8", "9", "10", "11", "12",
)
_LLAVA_SPECIALS = ("<s>", "</s>", "<unk>", "<pad>", "<image>")
_QWEN_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                  "<|image_pad|>", "<|video_pad|>")
_CONTEXT = 4096


def _tokenizer(words: Sequence[str], specials: Sequence[str], bos: str | None, **named: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

    from cptbench.models.gen_compat import fast_tokenizer
    from cptbench.models.tiny import BASE_WORDS, CPT_WORDS, _bpe_vocab_and_merges

    vocab, merges = _bpe_vocab_and_merges([*CPT_WORDS, *BASE_WORDS, *GENERATIVE_WORDS, *words])
    # the BPE vocabulary's own special symbols (<s>, <pad>, ...) stay; ours are added after them
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(list(specials))
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))])
    return fast_tokenizer(tok, **named)


def build_tiny_generative(kind: str, out_dir: Path, words: Sequence[str] = (), image_size: int = 64, seed: int = 0) -> Path:
    """Write a tiny random ``kind`` model (llava | qwen2_vl) with its image processor and tokenizer
    into ``out_dir`` (created if needed) and return the folder."""
    if kind not in KINDS:
        raise ValueError(f"unknown tiny generative model kind {kind!r}; choose one of {', '.join(KINDS)}")
    if int(image_size) != image_size or image_size < 16 or image_size % 16:
        raise ValueError(f"image_size must be an integer >= 16 and a multiple of 16, got {image_size!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    words = [str(w) for w in words]

    from cptbench.models.tiny import save_tiny

    build = _build_llava if kind == "llava" else _build_qwen2_vl
    return save_tiny(out, build, kind, words, image_size, seed, words, int(image_size))


def _small_text(vocab: int, **extra):
    return dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=_CONTEXT, **extra)


def _build_llava(words, image_size):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    from cptbench.models.image_processing import image_processor_class

    tokenizer = _tokenizer(words, _LLAVA_SPECIALS, "<s>", bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                           pad_token="<pad>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _LLAVA_SPECIALS}
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=image_size, patch_size=image_size // 4, projection_dim=32)
    text = LlamaConfig(**_small_text(len(tokenizer), num_key_value_heads=2, pad_token_id=ids["<pad>"],
                                     bos_token_id=ids["<s>"], eos_token_id=ids["</s>"]))
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=ids["<image>"],
                         vision_feature_select_strategy="default", vision_feature_layer=-2, projector_hidden_act="gelu",
                         pad_token_id=ids["<pad>"])
    model = LlavaForConditionalGeneration(config)
    processor = image_processor_class("CLIP")(size={"shortest_edge": image_size},
                                              crop_size={"height": image_size, "width": image_size})
    return model, processor, tokenizer


def _build_qwen2_vl(words, image_size):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    from cptbench.models.gen_compat import rope_config_key
    from cptbench.models.image_processing import image_processor_class

    tokenizer = _tokenizer(words, _QWEN_SPECIALS, None, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in _QWEN_SPECIALS}
    try:
        from transformers import Qwen2VLTextConfig as text_cls
    except ImportError:  # pragma: no cover - both supported lines have it
        text_cls = Qwen2VLConfig
    rope = {rope_config_key(text_cls): {"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0}}
    text = _small_text(len(tokenizer), num_key_value_heads=1, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
                       pad_token_id=ids["<|endoftext|>"], **rope)
    patch = image_size // 8
    vision = dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2, patch_size=patch,
                  spatial_merge_size=2, temporal_patch_size=2, in_chans=3)
    config = Qwen2VLConfig(vision_config=vision, text_config=text, image_token_id=ids["<|image_pad|>"],
                           video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                           vision_end_token_id=ids["<|vision_end|>"], **text)
    model = Qwen2VLForConditionalGeneration(config)
    processor = image_processor_class("Qwen2VL")(
        size={"shortest_edge": image_size * image_size // 4, "longest_edge": 4 * image_size * image_size},
        patch_size=patch, merge_size=2, temporal_patch_size=2)
    return model, processor, tokenizer
