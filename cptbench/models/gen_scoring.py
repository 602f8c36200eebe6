"""Constrained answer scoring for generative models: the log-likelihood of each candidate answer.

For a batch of prompts (each an image and a question, possibly after earlier turns) and a list of
candidate answers per prompt (colour words, mark numbers), :func:`answer_loglik` returns
``log p(answer | prompt)`` summed over the answer's tokens, its end-of-turn token included, and
the number of tokens, without generating anything:

1. one forward over the left-padded prompts (the shared prefix: images and question) keeps the
   key-value cache and the log-probabilities of each prompt's next token (which score every
   answer's first token);
2. the cache rows are repeated, one per (prompt, answer), and one forward over all answers but
   their last token (right-padded, positions continuing each prompt's) scores the answers' other
   tokens from the cached prefix. Answers of a single token need no second forward.

So the prefix is computed once per prompt however many answers it has. :func:`reference_loglik`
is the brute force the cached path is checked against: one full forward of prompt + answer per
candidate, without cache or padding, positions computed by the model itself.
"""

from __future__ import annotations

from typing import Sequence

from cptbench.models.generative import GenerativeAdapter, Prompt


def answer_loglik(adapter: GenerativeAdapter, prompts: Sequence[Prompt], answers: Sequence[Sequence[Sequence[int]]]):
    """``(loglik, n_tokens)``: float tensors ``(P, K)`` (K = most answers of a prompt; NaN and 0
    past a prompt's answers) of the summed log-probability of each answer's ids (``answers[p][j]``,
    from :meth:`GenerativeAdapter.answer_ids`) after prompt ``p``, by the cached path (module doc)."""
    import torch

    if len(prompts) != len(answers):
        raise ValueError(f"got answers for {len(answers)} prompts, but {len(prompts)} prompts")
    width = max((len(a) for a in answers), default=0)
    device = adapter.device
    loglik = torch.full((len(prompts), max(width, 1)), float("nan"), device=device)
    counts = torch.zeros((len(prompts), max(width, 1)), device=device)
    if not prompts or width == 0:
        return loglik, counts
    batch = adapter.collate(prompts)
    logits, cache = adapter.forward(batch.inputs, last_only=True)
    first = torch.log_softmax(logits[:, -1].float(), dim=-1)  # (P, V)
    rows, cols, tails = [], [], []
    for p, row in enumerate(answers):
        for j, ids in enumerate(row):
            if not ids:
                raise ValueError(f"answer {j} of prompt {p} has no tokens")
            loglik[p, j] = first[p, ids[0]]
            counts[p, j] = len(ids)
            if len(ids) > 1:
                rows.append(p)
                cols.append(j)
                tails.append(tuple(ids))
    if rows:
        cache = adapter.select_rows(cache, rows)
        cont = adapter.continuation(batch, rows, [t[:-1] for t in tails])
        logits2, _ = adapter.forward(cont, cache=cache)
        logp = torch.log_softmax(logits2.float(), dim=-1)  # (A, La, V)
        length = max(len(t) for t in tails) - 1
        targets = torch.zeros((len(tails), length), dtype=torch.long, device=logp.device)
        valid = torch.zeros((len(tails), length), dtype=torch.bool, device=logp.device)
        for a, t in enumerate(tails):
            targets[a, :len(t) - 1] = torch.tensor(t[1:], device=logp.device)
            valid[a, :len(t) - 1] = True
        picked = logp[:, :length].gather(-1, targets[..., None])[..., 0]
        rest = torch.where(valid, picked, torch.zeros_like(picked)).sum(dim=1)
        index = (torch.as_tensor(rows, device=device), torch.as_tensor(cols, device=device))
        loglik[index] = loglik[index] + rest.to(device)
    return loglik, counts


def reference_loglik(adapter: GenerativeAdapter, prompt: Prompt, answers: Sequence[Sequence[int]]) -> list[float]:
    """The summed log-probability of each answer after ``prompt``, one full forward per answer
    (no cache, no padding, the model's own positions): the brute force of :func:`answer_loglik`."""
    import torch

    out = []
    start = len(prompt)
    for ids in answers:
        logits, _ = adapter.forward(adapter.reference_inputs(prompt, ids))
        logp = torch.log_softmax(logits[0].float(), dim=-1)
        out.append(float(sum(logp[start - 1 + t, tok] for t, tok in enumerate(ids))))
    return out
