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

Batched, without host syncs
---------------------------
The token builder works on the whole batch at once: one patch projection, one gather that puts
each image's valid patches first (row-major), one position-embedding interpolation per distinct
patch grid of the batch (not per image). The bookkeeping (valid grid of each image, gather
indices, the token -> cell map) is host arithmetic on host values: the images' pixel sizes from
``images["image_hw"]`` (what the device pipeline sends instead of a pixel mask) or from a
``pixel_mask`` that is still on the host (``collate``'s), so nothing waits for the device.
``images["pass_index"]`` (B,) lets several texts share one image: the tokens of each distinct
image are built once and indexed per row.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from cptbench.models.base import RegionFeatures
from cptbench.models.hf_adapter import HFAdapter, batch_size, check_image_sizes, head_logits
from cptbench.models.image_processing import (
    ImageSpec, UnsupportedImageSpec, cell_boxes, image_processor_class as _ipc, processor_normalisation,
    processor_resample, shortest_edge_size, size_get as _size_get,
)
from cptbench.models.loading import load_hf_parts


def image_processor_class():
    """ViLT's image processor class (the PIL one where transformers has it)."""
    return _ipc("Vilt")


@lru_cache(maxsize=4096)
def _nearest_count(valid: int, padded: int, cells: int) -> int:
    """How many of ``cells`` grid cells see a valid pixel when a ``padded``-long mask whose first
    ``valid`` entries are 1 is resized to ``cells`` by nearest neighbour (``visual_embed``'s rule),
    computed by the same torch kernel on the host."""
    profile = torch.zeros(1, 1, padded, 1)
    profile[0, 0, :valid] = 1
    return int(nn.functional.interpolate(profile, size=(cells, 1)).sum())


class ViltAdapter(HFAdapter):
    """``ViltForMaskedLM`` behind :class:`~cptbench.models.base.VLAdapter`, with image tokens built
    in row-major order and no RNG (module doc); ``patch_sample_seed`` seeds the subset kept when
    ``max_image_length`` forces one."""

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
        """Load model, tokenizer and image processor from a folder or hub id (:func:`load_hf_parts`);
        ``kwargs`` go to the adapter (``patch_sample_seed``)."""
        from transformers import ViltForMaskedLM

        model, tokenizer, processor = load_hf_parts(ViltForMaskedLM, path, device, trust_remote_code,
                                                    "mlm_score.transform.dense.weight", image_processor_class())
        return cls(model, tokenizer, processor, path, **kwargs)

    # -- images ----------------------------------------------------------------------------------
    def image_spec(self) -> ImageSpec:
        """ViLT's processor: shortest edge to ``size["shortest_edge"]`` (long edge capped at
        1333/800 of it, sides rounded down to ``size_divisor``), rescale, normalise, then the batch
        padded to its largest image with a pixel mask."""
        proc = self.image_processor
        resample = processor_resample(proc)
        scale, mean, std = processor_normalisation(proc)
        if getattr(proc, "do_resize", True):
            shorter = _size_get(proc.size, "shortest_edge")
            if not shorter:
                raise UnsupportedImageSpec(f"ViLT image processor size {proc.size!r} has no shortest_edge")
            shorter, divisor = int(shorter), int(getattr(proc, "size_divisor", 32) or 1)

            def geometry(h: int, w: int):
                return shortest_edge_size(h, w, shorter, divisor), (0, 0)

            name = f"vilt:short{shorter}/div{divisor}/{resample}"
        else:
            def geometry(h: int, w: int):
                return (h, w), (0, 0)

            name = f"vilt:noresize/{resample}"
        return ImageSpec(geometry, None, resample, scale, mean, std, True, f"{name}/{scale}/{mean}/{std}")

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
        """Pixels per side of one image patch (the patch projection's kernel)."""
        return int(self.model.vilt.embeddings.patch_embeddings.projection.kernel_size[0])

    def _image_hw(self, images: dict[str, Any], n: int, height: int, width: int) -> np.ndarray:
        """(n, 2) valid pixel height and width of each image, from host values."""
        hw = images.get("image_hw")
        if hw is not None:
            return np.asarray(hw, dtype=np.int64).reshape(n, 2)
        mask = images.get("pixel_mask")
        if mask is None:
            return np.tile(np.array([[height, width]], dtype=np.int64), (n, 1))
        mask = torch.as_tensor(mask)
        if mask.ndim == 2:
            mask = mask[None]
        mask = mask.detach().bool().cpu()  # collate's mask is on the host; a device mask is read once
        return torch.stack([mask.any(dim=2).sum(dim=1), mask.any(dim=1).sum(dim=1)], dim=1).numpy()

    def _token_layout(self, image_hw: np.ndarray, height: int, width: int, grid_h: int, grid_w: int):
        """Host bookkeeping of the image tokens: valid grid (h, w) per image, gather index (n, N)
        into the padded grid, validity (n, N) and cell (row, col) per token (-1 for padding)."""
        grids = np.array([(_nearest_count(int(h), height, grid_h), _nearest_count(int(w), width, grid_w))
                          for h, w in image_hw], dtype=np.int64).reshape(-1, 2)
        if (grids == 0).any():
            b = int(np.flatnonzero((grids == 0).any(axis=1))[0])
            raise ValueError(f"image {b} of the batch has no valid patch (pixel_mask is empty)")
        counts = grids[:, 0] * grids[:, 1]
        limit = self.model.config.max_image_length
        limit = limit if isinstance(limit, int) and limit > 0 else None
        n_tokens = int(counts.max()) if limit is None else min(int(counts.max()), limit)
        t = np.arange(n_tokens)
        order = np.broadcast_to(t, (len(grids), n_tokens)).copy()
        if limit is not None and (counts > limit).any():
            for b in np.flatnonzero(counts > limit):  # rare: subsampling configs only
                gen = torch.Generator().manual_seed(self.patch_sample_seed)
                order[b] = torch.randperm(int(counts[b]), generator=gen)[:limit].sort().values.numpy()
        valid = order < counts[:, None]
        rows = np.where(valid, order // grids[:, 1:2], -1)
        cols = np.where(valid, order % grids[:, 1:2], -1)
        index = np.where(valid, rows * grid_w + cols, 0)
        return grids, index, valid, np.stack([rows, cols], axis=-1)

    def _image_tokens(self, images: dict[str, Any]):
        """Image token embeddings (n, 1 + N, D) with [CLS] first and their mask (n, 1 + N) for the
        n distinct images, plus the host layout: cell (row, col) of each of the N patch slots (-1
        for padding), each image's grid (h, w) and valid pixel size (h, w)."""
        emb = self.model.vilt.embeddings
        cfg = emb.config
        pixel_values = self._pixel_values(images)
        device = pixel_values.device
        x = emb.patch_embeddings(pixel_values)  # (n, D, GH, GW)
        n, dim, grid_h, grid_w = x.shape
        height, width = pixel_values.shape[-2:]
        image_hw = self._image_hw(images, n, int(height), int(width))
        grids, index, valid, cells = self._token_layout(image_hw, int(height), int(width), grid_h, grid_w)

        # position embeddings: one interpolation per distinct grid of the batch, exactly as visual_embed
        pos_dim = cfg.image_size // cfg.patch_size
        spatial = emb.position_embeddings[:, 1:, :].transpose(1, 2).reshape(1, dim, pos_dim, pos_dim)
        n_tokens = index.shape[1]
        distinct = {g: i for i, g in enumerate(dict.fromkeys(map(tuple, grids.tolist())))}
        table = []
        for h, w in distinct:
            pos = nn.functional.interpolate(spatial, size=(h, w), mode="bilinear", align_corners=True)
            pos = pos.flatten(2).transpose(1, 2)[0]  # (h*w, D), row-major
            table.append(pos)
        table = torch.nn.utils.rnn.pad_sequence(table, batch_first=True)  # (S, max h*w, D)
        # each slot's row in its image's own row-major grid: the token order
        order = np.where(valid, cells[..., 0] * grids[:, 1:2] + cells[..., 1], 0)
        which = np.array([distinct[tuple(g)] for g in grids.tolist()], dtype=np.int64)
        host = torch.from_numpy(np.concatenate([index, order, valid.astype(np.int64), which[:, None]], axis=1))
        if device.type == "cuda":
            host = host.pin_memory()
        dev = host.to(device, non_blocking=True)
        g_index, g_order, g_valid, g_which = dev[:, :n_tokens], dev[:, n_tokens:2 * n_tokens], \
            dev[:, 2 * n_tokens:3 * n_tokens], dev[:, -1]

        flat = x.flatten(2).transpose(1, 2)  # (n, GH*GW, D)
        patches = torch.gather(flat, 1, g_index[..., None].expand(-1, -1, dim))
        pos = table[g_which[:, None], g_order]  # (n, N, D)
        patches = patches + pos  # type promotion as in visual_embed (bf16 patches + fp32 positions -> fp32)
        patches = patches * g_valid.to(patches.dtype)[..., None]
        cls = (emb.cls_token[0, 0] + emb.position_embeddings[0, 0]).to(patches.dtype)
        seq = torch.cat([cls.expand(n, 1, dim), patches], dim=1)
        seq = emb.dropout(seq)
        token_mask = torch.cat([torch.ones(n, 1, dtype=torch.int64, device=device), g_valid], dim=1)
        return seq, token_mask, cells, grids, image_hw

    def _run(self, images: dict[str, Any], text: dict[str, Any], pooled: bool = False):
        """(last hidden states, pooled state or None, token mask, cells, grids, image sizes).

        The joint encoder is run from ``ViltModel``'s own modules (embeddings, encoder, layer norm,
        pooler) with the additive attention mask built here as ``get_extended_attention_mask``
        builds it: transformers 5's mask factory tests the padding mask with ``.all()`` on every
        forward, which would make the host wait for the device."""
        seq, token_mask, cells, grids, image_hw = self._image_tokens(images)
        index = images.get("pass_index")
        if index is not None:
            index = index.to(seq.device)
            seq, token_mask = seq.index_select(0, index), token_mask.index_select(0, index)
        vilt = self.model.vilt
        embeddings, masks = vilt.embeddings(text["input_ids"], text["attention_mask"], text.get("token_type_ids"),
                                            None, token_mask, None, seq, image_token_type_idx=1)
        dtype = embeddings.dtype
        bias = (1.0 - masks[:, None, None, :].to(dtype)) * torch.finfo(dtype).min
        hidden = vilt.encoder(embeddings, attention_mask=bias, return_dict=True).last_hidden_state
        hidden = vilt.layernorm(hidden)
        pool = vilt.pooler(hidden) if pooled and vilt.pooler is not None else None
        return hidden, pool, token_mask, cells, grids, image_hw

    def mask_logits_encoded(self, images: dict[str, Any], text: dict[str, Any], columns=None):
        """See :meth:`HFAdapter.mask_logits_encoded`; the [MASK] state is read from the text part,
        which comes first in ViLT's joint sequence."""
        hidden, *_ = self._run(images, text)
        mask_col = text["mask_col"]
        rows = torch.arange(mask_col.shape[0], device=mask_col.device)
        states = hidden[rows, mask_col]  # text positions come first
        return head_logits(self.model.mlm_score, states, columns)

    def region_features(self, images: dict[str, Any], texts: Sequence[str], image_sizes: Sequence[tuple[int, int]]) -> RegionFeatures:
        """The valid patch tokens of each image in row-major order (padding slots zero, boxes from the
        token -> cell map scaled to ``image_sizes``) and the pooler's state (None without a pooler)."""
        if images.get("pass_index") is not None:
            raise ValueError("region_features takes one image per text (no pass_index)")
        enc, _ = self._encode_texts(texts, batch_size(images), need_mask=False)
        hidden, pooled, token_mask, cells, grids, image_hw = self._run(images, enc, pooled=True)
        batch = token_mask.shape[0]
        sizes = np.asarray(check_image_sizes(images, image_sizes, batch), dtype=np.float64)  # (W, H)
        text_len = enc["input_ids"].shape[1]
        n_max = token_mask.shape[1] - 1
        patches = hidden[:, text_len + 1: text_len + 1 + n_max]
        valid = token_mask[:, 1:].bool()
        patches = patches * valid[..., None].to(patches.dtype)
        # boxes of the token cells in original pixels, on the host (all images at once)
        valid_h, valid_w = image_hw[:, 0:1].astype(np.float64), image_hw[:, 1:2].astype(np.float64)
        boxes, _ = cell_boxes(cells[..., 0], cells[..., 1], self.patch_size, scale_x=sizes[:, 0:1] / valid_w,
                              scale_y=sizes[:, 1:2] / valid_h, valid_w=valid_w, valid_h=valid_h)
        boxes[cells[..., 0] < 0] = 0  # padding slots
        return RegionFeatures(
            patches=patches,
            patch_boxes=torch.from_numpy(boxes.astype(np.float32)).to(patches.device),
            patch_valid=valid,
            pooled=pooled,
        )
