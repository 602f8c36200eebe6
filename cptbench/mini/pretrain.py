"""Pretraining the bundled miniature ViLT (``cptbench pretrain-mini``).

A ``ViltForMaskedLM`` with a small config and its own WordPiece vocabulary, trained from scratch
with masked-language modelling on the captioned scenes of :mod:`cptbench.mini.corpus`:

* masking by word class: every colour word with probability ``p_colour``, shape / size / position
  words with ``p_content``, the other words with ``p_other`` (at least one masked word per caption);
  the loss is the cross-entropy over the vocabulary at the masked words;
* curriculum: scenes with few objects first; the largest object count allowed grows linearly from
  ``curriculum_start`` to the corpus' maximum over the first ``curriculum`` fraction of the steps;
* AdamW (betas 0.9 / 0.98, no weight decay on biases and LayerNorm), linear warm-up then linear decay.

Image tokens are built the way :class:`cptbench.models.vilt.ViltAdapter` builds them at evaluation
time (patches in row-major order with their position embeddings, no patch sampling), so training
sees exactly what CPT's forward passes see and no step draws from the global torch RNG.

Deterministic for a seed and a thread count: data come from local generators, the model is
initialised under a forked, seeded torch RNG, there is no dropout.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from cptbench.data.scenes import SHAPES, SIZES
from cptbench.data.scene_expressions import POSITIONS
from cptbench.mini.corpus import COLOUR_WORDS, CorpusSettings, sample_item, vocabulary

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
CONTENT_WORDS = (*SHAPES, *SIZES, *POSITIONS)
CORPUS_STREAM = "pretrain"


@dataclass(frozen=True)
class PretrainSettings:
    """Everything that decides the bundled model: corpus, model size, schedule, masking, threads."""

    seed: int = 0
    steps: int = 12000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: float = 0.04
    weight_decay: float = 0.01
    corpus_size: int = 30000
    p_colour: float = 0.8
    p_content: float = 0.25
    p_other: float = 0.1
    curriculum: float = 0.3
    curriculum_start: int = 2
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 256
    patch: int = 16
    #: the image processor's normalisation; a mean at the light grey background makes background
    #: pixels ~0 so objects dominate their patches
    image_mean: float = 0.83
    image_std: float = 0.25
    max_text: int = 40
    threads: int = 2
    log_every: int = 25
    val_every: int = 2000  # 0: validate once, after training
    val_examples: int = 240
    corpus: CorpusSettings = field(default_factory=CorpusSettings)

    def with_overrides(self, **kw: Any) -> "PretrainSettings":
        """A copy with ``kw`` applied (``corpus.<key>`` keys go to the corpus settings)."""
        corpus_kw = {k[len("corpus."):]: v for k, v in kw.items() if k.startswith("corpus.")}
        own = {k: v for k, v in kw.items() if not k.startswith("corpus.")}
        s = replace(self, **own)
        return replace(s, corpus=replace(s.corpus, **corpus_kw)) if corpus_kw else s


# ------------------------------------------------------------------------------ tokenizer, processor
def write_tokenizer_and_processor(out: Path, settings: PretrainSettings):
    """Write ``vocab.txt`` + tokenizer files and the image processor config; return both objects."""
    from cptbench.models.compat import wordpiece_tokenizer
    from cptbench.models.vilt import image_processor_class

    out.mkdir(parents=True, exist_ok=True)
    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + vocabulary()) + "\n")
    tok = wordpiece_tokenizer(vocab, do_lower_case=True, model_max_length=settings.max_text)
    tok.save_pretrained(out)
    size = settings.corpus.image_size
    processor = image_processor_class()(size={"shortest_edge": size}, size_divisor=settings.patch,
                                        image_mean=[settings.image_mean] * 3, image_std=[settings.image_std] * 3)
    processor.save_pretrained(out)
    return tok, processor


def word_ids() -> dict[str, int]:
    """Token id of every word (the vocabulary file's order): captions are whole words, so encoding
    is a lookup (the tests check it equals the BERT tokenizer's output)."""
    return {w: i for i, w in enumerate(SPECIAL + vocabulary())}


def encode(captions: list[str], max_text: int) -> tuple[np.ndarray, np.ndarray]:
    """``[CLS] words [SEP]`` ids padded to ``max_text`` (int16), and the lengths."""
    ids = word_ids()
    out = np.zeros((len(captions), max_text), dtype=np.int16)
    lengths = np.zeros(len(captions), dtype=np.int16)
    for r, cap in enumerate(captions):
        words = cap.split()
        if len(words) + 2 > max_text:
            raise ValueError(f"caption longer than {max_text - 2} words: {cap!r}")
        row = [ids["[CLS]"], *(ids[w] for w in words), ids["[SEP]"]]
        out[r, : len(row)] = row
        lengths[r] = len(row)
    return out, lengths


# ----------------------------------------------------------------------------------------- corpus
@dataclass
class Corpus:
    """The encoded pretraining corpus: images, object counts, caption token ids and lengths."""

    images: np.ndarray  # (N, H, W, 3) uint8
    n_objects: np.ndarray  # (N,)
    ids: np.ndarray  # (N, C, L) int16
    lengths: np.ndarray  # (N, C)


def build_corpus(settings: PretrainSettings, progress: Callable[[str, int, int], None] = lambda *a: None) -> Corpus:
    """Draw and encode the corpus (deterministic for ``settings.seed``)."""
    cs = settings.corpus
    n = settings.corpus_size
    # the two variants of a pair (items 2p, 2p + 1) have the same number of objects
    counts = np.repeat(np.random.default_rng([settings.seed, 2]).integers(cs.min_objects, cs.max_objects + 1,
                                                                          size=(n + 1) // 2), 2)[:n]
    images = np.empty((n, cs.image_size, cs.image_size, 3), dtype=np.uint8)
    captions: list[list[str]] = []
    for i in range(n):
        images[i], caps, _ = sample_item(settings.seed, i, cs, int(counts[i]), stream=CORPUS_STREAM)
        captions.append(caps)
        if (i + 1) % 500 == 0 or i + 1 == n:
            progress("corpus", i + 1, n)
    flat, lengths = encode([c for caps in captions for c in caps], settings.max_text)
    c = cs.captions_per_image
    return Corpus(images, counts, flat.reshape(n, c, -1), lengths.reshape(n, c))


# ------------------------------------------------------------------------------------------ model
def build_model(settings: PretrainSettings, vocab_size: int):
    """A freshly initialised ViltForMaskedLM of the settings' size (seeded)."""
    import torch
    from transformers import ViltConfig, ViltForMaskedLM

    config = ViltConfig(
        vocab_size=vocab_size, hidden_size=settings.hidden, num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads, intermediate_size=settings.intermediate,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, image_size=settings.corpus.image_size,
        patch_size=settings.patch, max_position_embeddings=settings.max_text, max_image_length=-1,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = ViltForMaskedLM(config)
    return model


def image_tokens(model, pixel_values):
    """Image token embeddings ``(B, 1 + P, D)`` of full (unpadded) images, [CLS] first, patches in
    row-major order: what ``ViltAdapter`` builds for images without padding."""
    import torch

    emb = model.vilt.embeddings
    x = emb.patch_embeddings(pixel_values)  # (B, D, GH, GW)
    b, d, gh, gw = x.shape
    pos_dim = emb.config.image_size // emb.config.patch_size
    pos = emb.position_embeddings[:, 1:, :].transpose(1, 2).reshape(1, d, pos_dim, pos_dim)
    if (gh, gw) != (pos_dim, pos_dim):
        pos = torch.nn.functional.interpolate(pos, size=(gh, gw), mode="bilinear", align_corners=True)
    patches = (x + pos).flatten(2).transpose(1, 2)
    cls = (emb.cls_token[0, 0] + emb.position_embeddings[0, 0]).expand(b, 1, d)
    return emb.dropout(torch.cat([cls, patches], dim=1))


def normalise(images_uint8: np.ndarray, mean: float = 0.5, std: float = 0.5):
    """uint8 (B, H, W, 3) -> the processor's pixel values (rescale, normalise), (B, 3, H, W)."""
    import torch

    return torch.from_numpy(images_uint8).permute(0, 3, 1, 2).float().div(255.0).sub(mean).div(std)


# -------------------------------------------------------------------------------------- training
def _mask_batch(ids: np.ndarray, rng: np.random.Generator, settings: PretrainSettings, classes: np.ndarray,
                mask_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Masked ids and a boolean array of the masked positions."""
    prob = np.array([0.0, settings.p_colour, settings.p_content, settings.p_other])[classes[ids]]
    u = rng.random(ids.shape)
    chosen = u < prob
    # at least one masked word per caption: the most likely one by the same draw
    none = ~chosen.any(axis=1)
    if none.any():
        ratio = np.where(prob > 0, u / np.maximum(prob, 1e-9), np.inf)
        pick = ratio[none].argmin(axis=1)
        chosen[np.flatnonzero(none), pick] = True
    out = ids.copy()
    out[chosen] = mask_id
    return out, chosen


def word_classes() -> np.ndarray:
    """Per token id: 0 never masked (special), 1 colour, 2 content, 3 other."""
    ids = word_ids()
    cls = np.full(len(ids), 3, dtype=np.int64)
    for w in SPECIAL:
        cls[ids[w]] = 0
    for w in COLOUR_WORDS:
        cls[ids[w]] = 1
    for w in CONTENT_WORDS:
        cls[ids[w]] = 2
    return cls


def allowed_objects(step: int, settings: PretrainSettings) -> int:
    """The curriculum: the most objects a training scene may hold at ``step``."""
    cs = settings.corpus
    span = settings.curriculum * settings.steps
    if span <= 0 or step >= span:
        return cs.max_objects
    start = max(cs.min_objects, min(settings.curriculum_start, cs.max_objects))
    return int(min(cs.max_objects, start + math.floor((cs.max_objects - start + 1) * step / span)))


def pretrain(out: str | Path, settings: PretrainSettings = PretrainSettings(),
             progress: Callable[[str, int, int], None] = lambda *a: None,
             validation: Callable[[Any, int], dict] | None = None) -> dict:
    """Train and save the model (weights, vocabulary, processor, loss log, summary) into ``out``.

    ``validation(adapter, step)``, if given, is called every ``val_every`` steps and after the last
    one; what it returns is written to the log (``{"step": ..., "val": {...}}``).
    """
    import torch

    from cptbench.models.loading import quiet_progress
    from cptbench.models.vilt import ViltAdapter
    from cptbench.methods.optim import adamw_with_schedule, parameter_groups

    out = Path(out)
    t_start = time.perf_counter()
    old_threads = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        tok, processor = write_tokenizer_and_processor(out, settings)
        corpus = build_corpus(settings, progress)
        corpus_seconds = time.perf_counter() - t_start
        model = build_model(settings, len(tok))
        model.train()
        optimizer, scheduler = adamw_with_schedule(parameter_groups(model, settings.weight_decay), settings.lr,
                                                   settings.steps, settings.warmup)
        classes = word_classes()
        mask_id = word_ids()["[MASK]"]
        rng = np.random.default_rng([settings.seed, 1])
        first = np.arange(0, len(corpus.n_objects) - 1, 2)  # complete pairs only
        by_count = {k: first[corpus.n_objects[first] <= k] for k in range(1, settings.corpus.max_objects + 1)}
        n_caps = corpus.ids.shape[1]
        log = open(out / "pretrain_log.jsonl", "w")
        t0 = time.perf_counter()
        ema, window = None, []
        val_records = []

        def run_validation(step: int):
            if validation is None:
                return
            model.eval()
            adapter = ViltAdapter(model, tok, processor, "mini-vilt (training)")
            r = validation(adapter, step)
            model.train()
            val_records.append({"step": step, **r})
            log.write(json.dumps({"step": step, "val": r, "seconds": round(time.perf_counter() - t0, 1)}) + "\n")
            log.flush()

        for step in range(settings.steps):
            pool = by_count[max(k for k in by_count if k <= allowed_objects(step, settings) and len(by_count[k]))]
            # whole pairs (both variants, the same caption slot): the contrast between them is the
            # signal that ties a colour word to the described object
            half = settings.batch_size // 2
            pairs = np.sort(rng.choice(pool, size=half, replace=len(pool) < half))
            idx = np.stack([pairs, pairs + 1], axis=1).reshape(-1)
            which = np.repeat(rng.integers(n_caps, size=half), 2)
            lengths = corpus.lengths[idx, which]
            width = int(lengths.max())
            ids = corpus.ids[idx, which, :width].astype(np.int64)
            masked, chosen = _mask_batch(ids, rng, settings, classes, mask_id)
            input_ids = torch.from_numpy(masked)
            attn = torch.from_numpy((np.arange(width)[None, :] < lengths[:, None]).astype(np.int64))
            pix = normalise(corpus.images[idx], settings.image_mean, settings.image_std)
            seq = image_tokens(model, pix)
            outputs = model.vilt(input_ids=input_ids, attention_mask=attn, token_type_ids=torch.zeros_like(input_ids),
                                 image_embeds=seq, pixel_mask=torch.ones(seq.shape[:2], dtype=torch.int64), return_dict=True)
            sel = torch.from_numpy(chosen)
            states = outputs.last_hidden_state[:, :width][sel]
            logits = model.mlm_score(states)
            loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(ids[chosen]))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            value = float(loss.detach())
            window.append(value)
            ema = value if ema is None else 0.98 * ema + 0.02 * value
            if (step + 1) % settings.log_every == 0 or step == 0 or step + 1 == settings.steps:
                log.write(json.dumps({"step": step + 1, "loss": round(float(np.mean(window)), 5), "loss_ema": round(ema, 5),
                                      "lr": scheduler.get_last_lr()[0], "max_objects": allowed_objects(step, settings),
                                      "seconds": round(time.perf_counter() - t0, 1)}) + "\n")
                log.flush()
                window = []
            progress("pretrain", step + 1, settings.steps)
            if settings.val_every and (step + 1) % settings.val_every == 0 and step + 1 < settings.steps:
                run_validation(step + 1)
        train_seconds = time.perf_counter() - t0
        model.eval()
        run_validation(settings.steps)
        log.close()
        with quiet_progress():
            model.save_pretrained(out)
        summary = {"settings": asdict(settings), "steps": settings.steps, "final_loss_ema": ema,
                   "corpus_seconds": round(corpus_seconds, 1), "train_seconds": round(train_seconds, 1),
                   "seconds": round(time.perf_counter() - t_start, 1),
                   "parameters": sum(p.numel() for p in model.parameters()),
                   "validation": val_records[-1] if val_records else None}
        (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
        return summary
    finally:
        torch.set_num_threads(old_threads)
