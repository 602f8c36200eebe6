"""Pretraining the bundled miniature ViLT (``cptbench pretrain-mini``).

A ``ViltForMaskedLM`` with a small config and its own WordPiece vocabulary, trained with masked
language modelling on the corpus of :mod:`cptbench.mini.corpus`: every colour word is masked with
probability ``p_colour``, other words with probability ``p_mask``. Deterministic for a seed (local
generators, fixed thread count, the global torch RNG seeded once: ViLT's patch sampling draws from it).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .corpus import CorpusSettings, sample_item, vocabulary

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@dataclass(frozen=True)
class PretrainSettings:
    seed: int = 0
    steps: int = 6000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: float = 0.05
    weight_decay: float = 0.01
    corpus_size: int = 16000
    p_colour: float = 0.8
    p_mask: float = 0.15
    hidden: int = 128
    layers: int = 4
    heads: int = 4
    intermediate: int = 256
    patch: int = 16
    max_text: int = 40
    threads: int = 2
    corpus: CorpusSettings = field(default_factory=CorpusSettings)


def write_tokenizer_and_processor(out: Path, settings: PretrainSettings):
    from transformers import BertTokenizer, ViltImageProcessorPil

    out.mkdir(parents=True, exist_ok=True)
    vocab = out / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + vocabulary()) + "\n")
    tok = BertTokenizer(vocab=str(vocab), do_lower_case=True, model_max_length=settings.max_text)
    tok.save_pretrained(out)
    size = settings.corpus.image_size
    ViltImageProcessorPil(size={"shortest_edge": size}, size_divisor=settings.patch,
                          image_mean=[0.5] * 3, image_std=[0.5] * 3).save_pretrained(out)
    return tok


def build_corpus(settings: PretrainSettings, progress: Callable[[str, int, int], None]):
    n = settings.corpus_size
    images = np.empty((n, settings.corpus.image_size, settings.corpus.image_size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        images[i], cap = sample_item(settings.seed, i, settings.corpus)
        captions.append(cap)
        if (i + 1) % 500 == 0 or i + 1 == n:
            progress("corpus", i + 1, n)
    return images, captions


def pretrain(out: str | Path, settings: PretrainSettings = PretrainSettings(),
             progress: Callable[[str, int, int], None] = lambda *a: None) -> dict:
    """Train and save the model (weights, vocabulary, processor, loss log) into ``out``."""
    import torch
    from transformers import ViltConfig, ViltForMaskedLM

    out = Path(out)
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    tok = write_tokenizer_and_processor(out, settings)
    images, captions = build_corpus(settings, progress)
    enc = tok(captions, padding="max_length", truncation=True, max_length=settings.max_text, return_tensors="pt")
    ids_all, attn_all = enc["input_ids"], enc["attention_mask"]
    colour_ids = torch.tensor(tok.convert_tokens_to_ids([w for w in vocabulary() if w in
                              ("red", "blue", "green", "yellow", "purple", "gray", "black")]))
    special = torch.tensor(tok.convert_tokens_to_ids(SPECIAL))

    config = ViltConfig(
        vocab_size=len(tok), hidden_size=settings.hidden, num_hidden_layers=settings.layers,
        num_attention_heads=settings.heads, intermediate_size=settings.intermediate,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, image_size=settings.corpus.image_size,
        patch_size=settings.patch, max_position_embeddings=settings.max_text, max_image_length=-1,
    )
    model = ViltForMaskedLM(config)
    model.train()
    from ..optim import adamw_with_schedule, parameter_groups

    optimizer, scheduler = adamw_with_schedule(parameter_groups(model, settings.weight_decay), settings.lr,
                                               settings.steps, settings.warmup)
    rng = np.random.default_rng([settings.seed, 1])
    log_path = out / "pretrain_log.jsonl"
    log = open(log_path, "w")
    t0 = time.perf_counter()
    n = len(captions)
    order = np.concatenate([rng.permutation(n) for _ in range(math.ceil(settings.steps * settings.batch_size / n))])
    ema = None
    for step in range(settings.steps):
        idx = order[step * settings.batch_size:(step + 1) * settings.batch_size]
        attn = attn_all[idx]
        width = int(attn.sum(dim=1).max())  # pad to the longest caption of the batch only
        ids, attn = ids_all[idx, :width].clone(), attn[:, :width]
        u = torch.from_numpy(rng.random(ids.shape)).float()
        is_colour = torch.isin(ids, colour_ids)
        maskable = (attn == 1) & ~torch.isin(ids, special)
        chosen = maskable & (u < torch.where(is_colour, settings.p_colour, settings.p_mask))
        labels = torch.where(chosen, ids, torch.full_like(ids, -100))
        ids[chosen] = tok.mask_token_id
        pix = torch.from_numpy(images[idx]).permute(0, 3, 1, 2).float().div(255).sub(0.5).div(0.5)
        outputs = model(input_ids=ids, attention_mask=attn, pixel_values=pix,
                        pixel_mask=torch.ones(pix.shape[0], pix.shape[2], pix.shape[3], dtype=torch.long), labels=labels)
        optimizer.zero_grad(set_to_none=True)
        outputs.loss.backward()
        optimizer.step()
        scheduler.step()
        loss = float(outputs.loss.detach())
        ema = loss if ema is None else 0.98 * ema + 0.02 * loss
        if step % 25 == 0 or step + 1 == settings.steps:
            log.write(json.dumps({"step": step + 1, "loss": round(loss, 5), "loss_ema": round(ema, 5),
                                  "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 1)}) + "\n")
            log.flush()
        progress("pretrain", step + 1, settings.steps)
    log.close()
    model.eval()
    model.save_pretrained(out)
    summary = {"settings": asdict(settings), "steps": settings.steps, "final_loss_ema": ema,
               "seconds": round(time.perf_counter() - t0, 1),
               "parameters": sum(p.numel() for p in model.parameters())}
    (out / "pretrain_summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    return summary
