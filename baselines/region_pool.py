"""Candidate representations from patch states: overlap-weighted pooling and box geometry.

All functions are batched tensor code (no Python loop over patches or candidates).

Pooling weights
---------------
For candidate box ``b`` and valid patch ``p`` (both original-image pixel ``xyxy``)::

    w[b, p] = area(p ∩ b) / area(p)          (the fraction of the patch the box covers)

normalised to sum 1 over the patches. A box covering a whole patch gives that patch weight 1
before normalisation, a box covering half of two patches 0.5 / 0.5, and so on.

Fallback: a box that covers no patch area at all (zero width or height, or entirely outside the
patches, e.g. outside the image or over patches a model dropped) takes the *nearest* valid
patch(es) instead: the patches at the smallest distance from the box's centre (0 for every patch
that contains or touches the centre), ties weighted equally. A zero-area box on the border of two
patches gets 0.5 / 0.5, one on a corner of four patches 0.25 each; a box right of the image gets
the last-column patch level with its centre.

Zero vector: only a candidate that is padding (``box_valid`` False), has a non-finite coordinate,
or belongs to an image with no valid patch at all gets all-zero weights (and so a zero pooled
vector).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:  # torch is imported where it is used: listing methods loads this module
    import torch

#: number of geometry features appended to each candidate representation
N_GEOMETRY = 7


def overlap_weights(patch_boxes: torch.Tensor, patch_valid: torch.Tensor, boxes: torch.Tensor,
                    box_valid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pooling weights ``(B, N, P)`` of N candidate boxes over P patches, and a ``(B, N)`` bool
    tensor saying which candidates used the nearest-patch fallback.

    ``patch_boxes`` (B, P, 4), ``patch_valid`` (B, P), ``boxes`` (B, N, 4), ``box_valid`` (B, N)
    (default: all valid). Computed in float64 without gradient (pure geometry); every row sums to
    1 except the zero rows described in the module docstring.
    """
    import torch

    with torch.no_grad():
        pb = patch_boxes.detach().to(torch.float64)[:, None, :, :]  # (B, 1, P, 4)
        bb = boxes.detach().to(device=pb.device, dtype=torch.float64)[:, :, None, :]  # (B, N, 1, 4)
        pvalid = patch_valid.detach().to(device=pb.device, dtype=torch.bool)[:, None, :]  # (B, 1, P)
        finite = torch.isfinite(bb).all(dim=-1)  # (B, N, 1)
        bb = torch.where(finite[..., None], bb, torch.zeros_like(bb))
        ok = finite[..., 0]
        if box_valid is not None:
            ok = ok & box_valid.detach().to(device=pb.device, dtype=torch.bool)

        # covered fraction of each patch
        iw = (torch.minimum(bb[..., 2], pb[..., 2]) - torch.maximum(bb[..., 0], pb[..., 0])).clamp(min=0)
        ih = (torch.minimum(bb[..., 3], pb[..., 3]) - torch.maximum(bb[..., 1], pb[..., 1])).clamp(min=0)
        parea = ((pb[..., 2] - pb[..., 0]) * (pb[..., 3] - pb[..., 1])).clamp(min=1e-12)
        frac = torch.where(pvalid, iw * ih / parea, torch.zeros_like(iw))  # (B, N, P)
        covered = frac.sum(dim=-1) > 0

        # nearest valid patch(es) to the box centre (squared point-to-rectangle distance)
        cx = (bb[..., 0] + bb[..., 2]) / 2
        cy = (bb[..., 1] + bb[..., 3]) / 2
        gx = torch.maximum(pb[..., 0] - cx, cx - pb[..., 2]).clamp(min=0)
        gy = torch.maximum(pb[..., 1] - cy, cy - pb[..., 3]).clamp(min=0)
        dist = torch.where(pvalid, gx * gx + gy * gy, torch.full_like(gx, float("inf")))
        dmin = dist.min(dim=-1, keepdim=True).values
        near = (dist <= dmin + 1e-9 * (1.0 + dmin)) & pvalid
        near = near.to(torch.float64)

        raw = torch.where(covered[..., None], frac, near)
        raw = raw * ok[..., None].to(raw.dtype)
        total = raw.sum(dim=-1, keepdim=True)
        weights = torch.where(total > 0, raw / total.clamp(min=1e-300), torch.zeros_like(raw))
        fallback = ok & ~covered & (total[..., 0] > 0)
    return weights, fallback


def pool_patches(patches: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``(B, N, H)``: the weighted sum of the patch states ``(B, P, H)`` per candidate
    (differentiable with respect to ``patches``)."""
    import torch

    return torch.einsum("bnp,bph->bnh", weights.to(device=patches.device, dtype=patches.dtype), patches)


def box_geometry(boxes: torch.Tensor, image_sizes: torch.Tensor) -> torch.Tensor:
    """``(B, N, 7)`` geometry features: x1/W, y1/H, x2/W, y2/H, w/W, h/H, area/(W*H).

    ``boxes`` (B, N, 4) pixel ``xyxy``, ``image_sizes`` (B, 2) as (W, H). Widths and heights are
    clamped at 0; coordinates are not clipped (a box may reach past the image). Non-finite values
    become 0.
    """
    import torch

    b = boxes.to(torch.float32)
    size = image_sizes.to(device=b.device, dtype=torch.float32)
    iw, ih = size[:, None, 0], size[:, None, 1]  # (B, 1)
    w = (b[..., 2] - b[..., 0]).clamp(min=0)
    h = (b[..., 3] - b[..., 1]).clamp(min=0)
    feats = torch.stack([b[..., 0] / iw, b[..., 1] / ih, b[..., 2] / iw, b[..., 3] / ih,
                         w / iw, h / ih, (w * h) / (iw * ih)], dim=-1)
    return torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)


def pad_boxes(box_list: Sequence, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack per-example candidate boxes (each ``(n_i, 4)``) into ``(B, N, 4)`` float32 with a
    ``(B, N)`` validity mask (N = the largest n_i, at least 1)."""
    import torch

    n_max = max([1] + [len(b) for b in box_list])
    out = torch.zeros(len(box_list), n_max, 4, dtype=torch.float32)
    valid = torch.zeros(len(box_list), n_max, dtype=torch.bool)
    for i, b in enumerate(box_list):
        n = len(b)
        if n:
            out[i, :n] = torch.as_tensor(b, dtype=torch.float32).reshape(n, 4)
            valid[i, :n] = True
    return out.to(device), valid.to(device)
