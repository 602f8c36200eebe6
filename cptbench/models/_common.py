"""Shared pieces of the Hugging Face adapters (imported only when a model is needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .base import TextTooLongError, VLAdapter


def image_processor_class(stem: str):
    """The PIL image processor of a model family (``Vilt`` -> ``ViltImageProcessorPil``).

    transformers 5 offers a PIL backend beside the torchvision one; using it directly avoids the
    "torchvision not available" warning. transformers 4 only has the plain class.
    """
    import transformers

    cls = getattr(transformers, f"{stem}ImageProcessorPil", None)
    return cls if cls is not None else getattr(transformers, f"{stem}ImageProcessor")


def check_image(image: Any) -> np.ndarray:
    """A uint8 RGB array (H, W, 3), or a clear error."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"expected an RGB image array of shape (H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got dtype {arr.dtype}")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"empty image of shape {arr.shape}")
    return np.ascontiguousarray(arr)


def run_image_processor(processor, image: np.ndarray) -> dict[str, Any]:
    out = processor(images=[image], return_tensors="pt", input_data_format="channels_last")
    return {k: v[0] for k, v in out.items()}


def stack_same_size(prepared: Sequence[dict[str, Any]], model_name: str) -> dict[str, Any]:
    """Stack prepared images that all have the same pixel size (fixed-size models)."""
    if not prepared:
        raise ValueError("collate needs at least one prepared image")
    shapes = {tuple(p["pixel_values"].shape) for p in prepared}
    if len(shapes) != 1:
        raise ValueError(
            f"model {model_name!r} expects every image at the same processed size, got {sorted(shapes)}; "
            f"its image processor should resize and crop to one fixed size"
        )
    batch = {"pixel_values": torch.stack([p["pixel_values"] for p in prepared])}
    if all("original_size" in p for p in prepared):
        batch["original_size"] = torch.stack([p["original_size"] for p in prepared])
    return batch


def check_image_sizes(images: dict[str, Any], image_sizes: Sequence[tuple[int, int]], batch: int) -> list[tuple[int, int]]:
    sizes = [(int(w), int(h)) for w, h in image_sizes]
    if len(sizes) != batch:
        raise ValueError(f"got {len(sizes)} image sizes for a batch of {batch} images")
    if any(w <= 0 or h <= 0 for w, h in sizes):
        raise ValueError(f"image sizes must be positive (W, H), got {sizes}")
    known = images.get("original_size")
    if known is not None:
        for i, ((w, h), (kh, kw)) in enumerate(zip(sizes, known.tolist())):
            if (w, h) != (kw, kh):
                raise ValueError(
                    f"image_sizes[{i}] = (W={w}, H={h}) but image {i} was prepared from a "
                    f"{kw}x{kh} (WxH) array; image_sizes must be the original (W, H)"
                )
    return sizes


def grid_boxes(grid_h: int, grid_w: int, patch: int, *, left: float, top: float, scale_x: float, scale_y: float,
               valid_w: float, valid_h: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes (N, 4) xyxy of a row-major ``grid_h x grid_w`` patch grid in original-image pixels.

    Patch (r, c) covers ``[c*patch, (c+1)*patch) x [r*patch, (r+1)*patch)`` of the model's input;
    ``left``/``top`` shift that into the resized image (a centre crop's offset), whose valid part is
    ``valid_w x valid_h`` pixels; ``scale_x``/``scale_y`` map resized pixels to original ones.
    Parts outside the valid area are clipped; a patch with nothing left is invalid (zero box).
    """
    cols = torch.arange(grid_w, dtype=torch.float64)
    rows = torch.arange(grid_h, dtype=torch.float64)
    x0 = (cols * patch + left).clamp(0, valid_w)
    x1 = ((cols + 1) * patch + left).clamp(0, valid_w)
    y0 = (rows * patch + top).clamp(0, valid_h)
    y1 = ((rows + 1) * patch + top).clamp(0, valid_h)
    boxes = torch.stack(
        [
            x0[None, :].expand(grid_h, -1) * scale_x,
            y0[:, None].expand(-1, grid_w) * scale_y,
            x1[None, :].expand(grid_h, -1) * scale_x,
            y1[:, None].expand(-1, grid_w) * scale_y,
        ],
        dim=-1,
    ).reshape(-1, 4)
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    boxes[~valid] = 0
    return boxes.float(), valid


def center_crop_offset(size: int, crop: int) -> int:
    """Offset of a centre crop of ``crop`` pixels in a side of ``size`` pixels (negative when the
    image is padded), as transformers' ``center_crop`` does it."""
    if crop <= size:
        return (size - crop) // 2
    return -math.ceil((crop - size) / 2)


class HFAdapter(VLAdapter):
    """Common code of the Hugging Face adapters: text encoding, [MASK] lookup, image checks."""

    #: the ``model_type`` of the configs this adapter serves
    model_type: str = ""

    def __init__(self, model, tokenizer, image_processor, model_name: str, max_text_length: int, hidden_size: int):
        self.model = model
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.model_name = str(model_name)
        self.max_text_length = int(max_text_length)
        self.hidden_size = int(hidden_size)
        if self.tokenizer.mask_token is None:
            raise ValueError(f"the tokenizer of model {self.model_name!r} has no mask token")

    # -- text ------------------------------------------------------------------------------------
    def _encode_texts(self, texts: Sequence[str], batch: int | None = None, need_mask: bool = True):
        """Token tensors (padded to the longest text) on the model's device, and the [MASK] column
        of each row. Refuses texts longer than ``max_text_length`` and texts without exactly one
        mask token (truncating would silently drop words or the mask: that is the caller's call).
        ``need_mask=False`` (region features of plain text) skips the mask check; the column is None."""
        if isinstance(texts, str):
            raise TypeError("texts must be a sequence of strings, not one string")
        texts = list(texts)
        if not texts:
            raise ValueError("no texts given")
        if batch is not None and len(texts) != batch:
            raise ValueError(f"got {len(texts)} texts for a batch of {batch} images")
        enc = self.tokenizer(texts, padding=True, truncation=False, return_tensors="pt")
        ids = enc["input_ids"]
        lengths = enc["attention_mask"].sum(dim=1)
        too_long = [(i, int(n)) for i, n in enumerate(lengths.tolist()) if n > self.max_text_length]
        if too_long:
            i, n = too_long[0]
            raise TextTooLongError(
                f"{len(too_long)} text(s) exceed the {self.max_text_length}-token limit of model "
                f"{self.model_name!r} (special tokens included); text {i} has {n} tokens: {texts[i]!r}. "
                f"Shorten the free part of the text (the expression) before calling the model."
            )
        if not need_mask:
            return {k: v.to(self.device) for k, v in enc.items()}, None
        is_mask = ids == self.mask_token_id
        counts = is_mask.sum(dim=1)
        bad = (counts != 1).nonzero().flatten().tolist()
        if bad:
            i = bad[0]
            raise ValueError(
                f"each text needs exactly one {self.mask_token} token; text {i} has {int(counts[i])}: {texts[i]!r}"
            )
        mask_col = is_mask.to(torch.int64).argmax(dim=1)
        device = self.device
        enc = {k: v.to(device) for k, v in enc.items()}
        return enc, mask_col.to(device)

    # -- images ----------------------------------------------------------------------------------
    def prepare_image(self, image: np.ndarray) -> dict[str, Any]:
        arr = check_image(image)
        try:
            out = run_image_processor(self.image_processor, arr)
        except ValueError as exc:
            raise ValueError(
                f"the image processor of model {self.model_name!r} cannot process an image of shape "
                f"{arr.shape} (an extreme aspect ratio resizes one side to 0 pixels): {exc}"
            ) from exc
        if min(out["pixel_values"].shape[-2:]) == 0:
            raise ValueError(f"the image processor of model {self.model_name!r} turned an image of shape {arr.shape} into an empty one")
        prepared = {"pixel_values": out["pixel_values"].float()}
        if "pixel_mask" in out and self._uses_pixel_mask:
            prepared["pixel_mask"] = out["pixel_mask"].to(torch.int64)
        prepared["original_size"] = torch.tensor(arr.shape[:2], dtype=torch.int64)  # (H, W)
        return prepared

    _uses_pixel_mask = False

    def collate(self, prepared: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return stack_same_size(prepared, self.model_name)

    def _pixel_values(self, images: dict[str, Any]) -> torch.Tensor:
        pv = images["pixel_values"]
        if pv.ndim == 3:
            pv = pv[None]
        dtype = next(self.model.parameters()).dtype
        return pv.to(self.device, dtype=dtype if dtype.is_floating_point else torch.float32)


def local_or_hub(path: str) -> str:
    p = Path(path).expanduser()
    return str(p) if p.exists() else path


class quiet_progress:
    """Turn transformers' tqdm bars ("Loading weights", "Writing model shards") off inside the
    block and restore the previous setting after it (the library never prints; the CLI decides)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._was_on = False

    def __enter__(self):
        if self.enabled:
            from transformers.utils import logging as hf_logging

            self._was_on = hf_logging.is_progress_bar_enabled()
            if self._was_on:
                hf_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        if self.enabled and self._was_on:
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()
        return False


def load_hf_parts(model_cls, path: str, device: str, trust_remote_code: bool, head_param: str,
                  processor_cls, **model_kwargs):
    """Model (eval mode, on ``device``), tokenizer and image processor from one folder or hub id,
    refusing a checkpoint whose masked-LM head (``head_param``) was not in the file."""
    from transformers import AutoTokenizer

    from .loading import check_head_loaded

    # a local folder loads without progress bars; a hub download keeps its own
    with quiet_progress(enabled=Path(path).is_dir()):
        model, info = model_cls.from_pretrained(path, output_loading_info=True, trust_remote_code=trust_remote_code,
                                                **model_kwargs)
    check_head_loaded(path, info, head_param)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    processor = processor_cls.from_pretrained(path)
    model.to(device).eval()
    return model, tokenizer, processor
