"""ViLT adapter (``ViltForMaskedLM``, e.g. ``dandelin/vilt-b32-mlm``).

Patch order and determinism
---------------------------
transformers' ``ViltEmbeddings.visual_embed`` draws the image tokens with ``torch.multinomial``
on every forward: the largest image of a batch gets its patches in a random order, smaller images
get their patches in row-major order followed by randomly drawn padding patches, and with
``config.max_image_length > 0`` a random subset is kept. The token order is therefore unknown to
the caller and every forward consumes the global RNG.

This adapter builds the image tokens itself from the model's own modules (patch projection,
[CLS] token, position embeddings interpolated per image exactly as ``visual_embed`` does, dropout)
and hands them to ``ViltModel`` through its ``image_embeds`` argument (the ``pixel_mask`` argument
is then the per-token image mask). Image tokens are the valid patches of each image in row-major
order; padding tokens are zero and masked out of attention. The transformer is permutation
equivariant over tokens with their position embeddings added, and masked tokens take no part in
attention, so the result equals the native forward up to float rounding (the tests check this),
while the token -> patch map is known and no RNG is consumed: the same input always gives the
same output. When ``max_image_length`` forces subsampling, the subset is drawn with a local
generator seeded with ``patch_sample_seed`` on every call (deterministic, global RNG untouched).
Gradients flow into every embedding parameter as in the native path, so methods can train.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from ._common import HFAdapter, load_hf_parts, check_image_sizes, grid_boxes, image_processor_class as _ipc
from .base import RegionFeatures


def image_processor_class():
    return _ipc("Vilt")


class ViltAdapter(HFAdapter):
    model_type = "vilt"
    _uses_pixel_mask = True

    def __init__(self, model, tokenizer, image_processor, model_name: str, patch_sample_seed: int = 0):
        cfg = model.config
        max_len = int(cfg.max_position_embeddings)
        tok_max = getattr(tokenizer, "model_max_length", None)
        if isinstance(tok_max, int) and 0 < tok_max < max_len:
            max_len = tok_max
        super().__init__(model, tokenizer, image_processor, model_name, max_len, cfg.hidden_size)
        self.patch_sample_seed = int(patch_sample_seed)

    @classmethod
    def from_pretrained(cls, path: str, device: str = "cpu", trust_remote_code: bool = False, **kwargs) -> "ViltAdapter":
        from transformers import ViltForMaskedLM

        model, tokenizer, processor = load_hf_parts(ViltForMaskedLM, path, device, trust_remote_code,
                                                    "mlm_score.transform.dense.weight", image_processor_class())
        return cls(model, tokenizer, processor, path, **kwargs)

    # -- images ----------------------------------------------------------------------------------
    def collate(self, prepared: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Pad every image to the batch's largest height and width (zeros, as ViLT's processor
        pads after normalising) and stack; ``pixel_mask`` marks the real pixels."""
        if not prepared:
            raise ValueError("collate needs at least one prepared image")
        height = max(int(p["pixel_values"].shape[-2]) for p in prepared)
        width = max(int(p["pixel_values"].shape[-1]) for p in prepared)
        values, masks = [], []
        for p in prepared:
            pv = p["pixel_values"]
            h, w = pv.shape[-2:]
            mask = p.get("pixel_mask")
            if mask is None:
                mask = torch.ones(h, w, dtype=torch.int64)
            values.append(nn.functional.pad(pv, (0, width - w, 0, height - h)))
            masks.append(nn.functional.pad(mask.to(torch.int64), (0, width - w, 0, height - h)))
        batch = {"pixel_values": torch.stack(values), "pixel_mask": torch.stack(masks)}
        if all("original_size" in p for p in prepared):
            batch["original_size"] = torch.stack([p["original_size"] for p in prepared])
        return batch

    @property
    def patch_size(self) -> int:
        return int(self.model.vilt.embeddings.patch_embeddings.projection.kernel_size[0])

    def _image_tokens(self, images: dict[str, Any]):
        """Image token embeddings (B, 1 + P, D) with [CLS] first, their mask (B, 1 + P), and for
        each of the P patch slots its grid cell (row, col) (-1 for padding) plus each image's grid."""
        emb = self.model.vilt.embeddings
        cfg = emb.config
        pixel_values = self._pixel_values(images)
        pixel_mask = images.get("pixel_mask")
        if pixel_mask is None:
            pixel_mask = torch.ones(pixel_values.shape[0], *pixel_values.shape[-2:], dtype=torch.int64)
        pixel_mask = pixel_mask.to(pixel_values.device)
        if pixel_mask.ndim == 2:
            pixel_mask = pixel_mask[None]

        x = emb.patch_embeddings(pixel_values)  # (B, D, GH, GW)
        batch, dim, grid_h, grid_w = x.shape
        # which patch cells hold image (not padding): the same nearest-neighbour rule as visual_embed
        cell_mask = nn.functional.interpolate(pixel_mask[:, None].float(), size=(grid_h, grid_w)).long()[:, 0]
        rows_valid = cell_mask[:, :, 0].sum(dim=1)  # valid rows (first column)
        cols_valid = cell_mask[:, 0, :].sum(dim=1)  # valid columns (first row)
        pos_dim = cfg.image_size // cfg.patch_size
        spatial_pos = emb.position_embeddings[:, 1:, :].transpose(1, 2).reshape(1, dim, pos_dim, pos_dim)
        limit = cfg.max_image_length if isinstance(cfg.max_image_length, int) and cfg.max_image_length > 0 else None

        tokens, cells, grids = [], [], []
        for b in range(batch):
            h, w = int(rows_valid[b]), int(cols_valid[b])
            if h == 0 or w == 0:
                raise ValueError(f"image {b} of the batch has no valid patch (pixel_mask is empty)")
            pos = nn.functional.interpolate(spatial_pos, size=(h, w), mode="bilinear", align_corners=True)
            patches = x[b, :, :h, :w] + pos[0]  # (D, h, w)
            patches = patches.flatten(1).transpose(0, 1)  # (h*w, D), row-major
            index = torch.arange(h * w, device=x.device)
            if limit is not None and h * w > limit:
                gen = torch.Generator().manual_seed(self.patch_sample_seed)
                keep = torch.randperm(h * w, generator=gen)[:limit].sort().values.to(x.device)
                patches, index = patches[keep], index[keep]
            tokens.append(patches)
            grids.append((h, w))
            cells.append(torch.stack([index // w, index % w], dim=1))
        n_max = max(t.shape[0] for t in tokens)
        cls = emb.cls_token[0, 0] + emb.position_embeddings[0, 0]
        seq = torch.stack([
            torch.cat([cls[None], nn.functional.pad(t, (0, 0, 0, n_max - t.shape[0]))], dim=0) for t in tokens
        ])
        seq = emb.dropout(seq)
        token_mask = torch.zeros(batch, 1 + n_max, dtype=torch.int64, device=x.device)
        cell = torch.full((batch, n_max, 2), -1, dtype=torch.int64)
        for b, c in enumerate(cells):
            token_mask[b, : 1 + c.shape[0]] = 1
            cell[b, : c.shape[0]] = c.cpu()
        return seq, token_mask, cell, grids, pixel_mask

    def _run(self, images: dict[str, Any], texts: Sequence[str], need_mask: bool = True):
        batch = int(images["pixel_values"].shape[0]) if images["pixel_values"].ndim == 4 else 1
        enc, mask_col = self._encode_texts(texts, batch, need_mask=need_mask)
        seq, token_mask, cell, grids, pixel_mask = self._image_tokens(images)
        out = self.model.vilt(
            input_ids=enc["input_ids"],
            attention_mask=enc["attention_mask"],
            token_type_ids=enc.get("token_type_ids"),
            image_embeds=seq,
            pixel_mask=token_mask,
            return_dict=True,
        )
        return out, enc, mask_col, token_mask, cell, grids, pixel_mask

    def mask_logits(self, images: dict[str, Any], texts: Sequence[str]):
        out, enc, mask_col, *_ = self._run(images, texts)
        rows = torch.arange(mask_col.shape[0], device=mask_col.device)
        states = out.last_hidden_state[rows, mask_col]  # text positions come first
        return self.model.mlm_score(states)

    def region_features(self, images: dict[str, Any], texts: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> RegionFeatures:
        out, enc, _, token_mask, cell, grids, pixel_mask = self._run(images, texts, need_mask=False)
        batch = token_mask.shape[0]
        sizes = check_image_sizes(images, image_sizes, batch)
        text_len = enc["input_ids"].shape[1]
        n_max = token_mask.shape[1] - 1
        patches = out.last_hidden_state[:, text_len + 1: text_len + 1 + n_max]
        valid = token_mask[:, 1:].bool()
        patches = patches * valid[..., None].to(patches.dtype)
        ps = self.patch_size
        boxes = torch.zeros(batch, n_max, 4)
        pm = pixel_mask.cpu().bool()
        for b in range(batch):
            valid_h = int(pm[b].any(dim=1).sum())  # resized image height in pixels
            valid_w = int(pm[b].any(dim=0).sum())
            w0, h0 = sizes[b]
            grid_h, grid_w = grids[b]
            full, _ = grid_boxes(grid_h, grid_w, ps, left=0, top=0, scale_x=w0 / valid_w, scale_y=h0 / valid_h,
                                 valid_w=valid_w, valid_h=valid_h)
            n = int(valid[b].sum())
            boxes[b, :n] = full[cell[b, :n, 0] * grid_w + cell[b, :n, 1]]
        return RegionFeatures(
            patches=patches,
            patch_boxes=boxes.to(patches.device),
            patch_valid=valid,
            pooled=out.pooler_output,
        )
