"""The candidate head of the fine-tuning baselines and its loss.

``Linear(2H + 7, H) - GELU - LayerNorm(H) - Linear(H, 1)`` on each candidate's representation
(the release's head is ``Linear(768, 768) - GELU - LayerNorm - Linear(768, 1)`` on a region token;
here the input is the pooled region, the pooled [CLS] state and 7 geometry features). Initialised
BERT-style from a local generator: weights N(0, 0.02), biases 0, LayerNorm 1 / 0.
"""

from __future__ import annotations

from typing import Any

from .region_pool import N_GEOMETRY

HEAD_INIT_STD = 0.02


def new_head(hidden: int, seed: int, device: Any = "cpu"):
    """The candidate head, initialised from a local generator seeded with ``seed`` (the global
    torch RNG is neither read nor advanced)."""
    import torch
    from torch import nn

    class CandidateHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = nn.Sequential(
                nn.Linear(2 * hidden + N_GEOMETRY, hidden, device="meta"), nn.GELU(),
                nn.LayerNorm(hidden, device="meta"), nn.Linear(hidden, 1, device="meta"),
            )

        def forward(self, reps):
            return self.net(reps).squeeze(-1)

    head = CandidateHead().to_empty(device="cpu")
    gen = torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * HEAD_INIT_STD)
                m.bias.zero_()
            elif isinstance(m, nn.LayerNorm):
                m.weight.fill_(1.0)
                m.bias.zero_()
    return head.to(device)


def candidate_loss(logits, valid, targets):
    """Mean softmax cross-entropy over each row's valid candidates toward ``targets``."""
    import torch
    import torch.nn.functional as F

    masked = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
    return F.cross_entropy(masked, targets)
