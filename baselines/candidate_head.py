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


#: the logit the release gives a padded candidate slot (Oscar's refcoco fine-tuning pads the region
#: logits with this constant, so padded slots enter the softmax)
RELEASE_PAD_LOGIT = 1e-4
#: how padded candidate slots of a batch enter the loss: ``release`` (a constant logit of
#: :data:`RELEASE_PAD_LOGIT`), ``mask`` (left out of the softmax)
PADDED_SLOT_RULES = ("release", "mask")


def candidate_loss(logits, valid, targets, padded: str = "release"):
    """Mean softmax cross-entropy over each row's candidates toward ``targets`` (computed in fp32).

    Rows of a batch are padded to its largest candidate count; ``padded`` says how those slots
    enter the softmax (:data:`PADDED_SLOT_RULES`)."""
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    if padded == "release":
        filled = logits.masked_fill(~valid, RELEASE_PAD_LOGIT)
    elif padded == "mask":
        filled = logits.masked_fill(~valid, torch.finfo(logits.dtype).min)
    else:
        raise ValueError(f"padded must be one of {', '.join(PADDED_SLOT_RULES)}, got {padded!r}")
    return F.cross_entropy(filled, targets)
