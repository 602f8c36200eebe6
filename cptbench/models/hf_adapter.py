"""The common base of the Hugging Face adapters (:class:`HFAdapter`): text encoding and its checks,
[MASK] lookup, image checks and preparation through the model's own image processor, plus the
batch helpers the ViLT, FLAVA and BridgeTower adapters share.

Imported only when a model is needed (torch at module level).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import numpy as np
import torch

from cptbench.models.base import TextTooLongError, VLAdapter
from cptbench.models.image_processing import ImageSpec, UnsupportedImageSpec


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
    """The processor's tensors for one channels-last image, without the batch dimension."""
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
    """``image_sizes`` as int (W, H) pairs, one per image of the batch, all positive and equal to the
    ``original_size`` the images were prepared from when the batch carries it."""
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


class EncodedText(NamedTuple):
    """One tokenised text: its ids, token-type ids (None when the tokenizer gives none) and the
    position of its single mask token (None for texts without one)."""

    ids: tuple[int, ...]
    type_ids: tuple[int, ...] | None
    mask_col: int | None


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
        is_mask = ids == self.mask_token_id if need_mask else None
        self._check_texts(texts, enc["attention_mask"].sum(dim=1).tolist(),
                          None if is_mask is None else is_mask.sum(dim=1).tolist())
        if not need_mask:
            return {k: _to_device(v, self.device) for k, v in enc.items()}, None
        mask_col = is_mask.to(torch.int64).argmax(dim=1)
        device = self.device
        enc = {k: _to_device(v, device) for k, v in enc.items()}
        return enc, _to_device(mask_col, device)

    def encode_text(self, text: str, need_mask: bool = True) -> EncodedText:
        """One text tokenised exactly as :meth:`_encode_texts` tokenises it in a batch, with the same
        checks and errors: for callers that tokenise each distinct text once and batch the ids
        themselves (:meth:`text_arrays`; the device pipeline)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a string, got {type(text).__name__}")
        enc = self.tokenizer(text, truncation=False)
        ids = tuple(int(i) for i in enc["input_ids"])
        mask_id = self.mask_token_id
        cols = [i for i, t in enumerate(ids) if t == mask_id] if need_mask else None
        self._check_texts([text], [len(ids)], None if cols is None else [len(cols)])
        type_ids = tuple(int(i) for i in enc["token_type_ids"]) if "token_type_ids" in enc else None
        return EncodedText(ids, type_ids, cols[0] if need_mask else None)

    def _check_texts(self, texts: Sequence[str], lengths: Sequence[int], mask_counts: Sequence[int] | None) -> None:
        """The checks of :meth:`_encode_texts` and :meth:`encode_text`: every text within
        ``max_text_length`` tokens (``lengths``, special tokens included) and, unless
        ``mask_counts`` is None, exactly one mask token in each."""
        too_long = [(i, int(n)) for i, n in enumerate(lengths) if n > self.max_text_length]
        if too_long:
            i, n = too_long[0]
            raise TextTooLongError(
                f"{len(too_long)} text(s) exceed the {self.max_text_length}-token limit of model "
                f"{self.model_name!r} (special tokens included); text {i} has {n} tokens: {texts[i]!r}. "
                f"Shorten the free part of the text (the expression) before calling the model."
            )
        bad = [] if mask_counts is None else [i for i, c in enumerate(mask_counts) if c != 1]
        if bad:
            i = bad[0]
            raise ValueError(
                f"each text needs exactly one {self.mask_token} token; text {i} has {int(mask_counts[i])}: {texts[i]!r}"
            )

    def text_arrays(self, encoded: Sequence[EncodedText], out: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """int64 arrays ``input_ids``, ``attention_mask`` (and ``token_type_ids``) of shape (B, T),
        padded to the longest text as the tokenizer pads a batch, and ``mask_col`` (B,). ``out``:
        arrays of at least that size to fill (reused buffers); the result views them."""
        n = len(encoded)
        if n == 0:
            raise ValueError("no texts given")
        length = max(len(e.ids) for e in encoded)
        with_types = encoded[0].type_ids is not None
        names = ("input_ids", "attention_mask", "token_type_ids") if with_types else ("input_ids", "attention_mask")
        arrays = {}
        for name in names:
            buf = None if out is None else out.get(name)
            if buf is None or buf.shape[0] < n or buf.shape[1] < length:
                buf = np.empty((max(n, 1), max(length, 1)), dtype=np.int64)
                if out is not None:
                    out[name] = buf
            arrays[name] = buf[:n, :length]
        pad = int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        ids, att = arrays["input_ids"], arrays["attention_mask"]
        ids.fill(pad)
        att.fill(0)
        if with_types:
            arrays["token_type_ids"].fill(0)
        mask_col = np.zeros(n, dtype=np.int64)
        for row, e in enumerate(encoded):
            k = len(e.ids)
            sl = slice(length - k, length) if left else slice(0, k)
            ids[row, sl] = e.ids
            att[row, sl] = 1
            if with_types:
                arrays["token_type_ids"][row, sl] = e.type_ids
            if e.mask_col is not None:
                mask_col[row] = e.mask_col + (length - k if left else 0)
        arrays["mask_col"] = mask_col
        return arrays

    def mask_logits(self, images: dict[str, Any], texts: Sequence[str]):
        """Full-vocabulary logits (B, V) at each text's mask token: the texts are encoded and checked
        (:meth:`_encode_texts`), then :meth:`mask_logits_encoded` runs."""
        enc, mask_col = self._encode_texts(texts, batch_size(images))
        return self.mask_logits_encoded(images, {**enc, "mask_col": mask_col})

    def mask_logits_encoded(self, images: dict[str, Any], text: dict[str, Any], columns=None):
        """Masked-LM logits at ``text["mask_col"]`` of each row for token tensors already on the
        model's device (``input_ids``, ``attention_mask``, optional ``token_type_ids``), only the
        vocabulary ``columns`` (a LongTensor on the device) when given. ``images`` may carry
        ``pass_index`` (B,): row ``i`` of the batch uses image ``pass_index[i]``, so a painted copy
        shared by several texts is sent once."""
        raise NotImplementedError(f"{type(self).__name__} has no encoded masked-LM path")

    def image_spec(self) -> ImageSpec:
        """How this model's image processor prepares an image (:class:`ImageSpec`), for the device
        pipeline; :class:`UnsupportedImageSpec` when a setting cannot be reproduced."""
        raise UnsupportedImageSpec(f"model {self.model_name!r}: no device image pipeline for {type(self).__name__}")

    # -- images ----------------------------------------------------------------------------------
    def prepare_image(self, image: np.ndarray) -> dict[str, Any]:
        """``pixel_values`` (float) by the model's own image processor, ``pixel_mask`` where the model
        uses one, and ``original_size`` (H, W) of the checked uint8 RGB image."""
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
        """Stack prepared images of one processed size (fixed-size models; ViLT pads instead)."""
        return stack_same_size(prepared, self.model_name)

    def _pixel_values(self, images: dict[str, Any]) -> torch.Tensor:
        pv = images["pixel_values"]
        if pv.ndim == 3:
            pv = pv[None]
        dtype = next(self.model.parameters()).dtype
        return pv.to(self.device, dtype=dtype if dtype.is_floating_point else torch.float32)


def batch_size(images: dict[str, Any]) -> int:
    """Rows of a batch: ``len(pass_index)`` when images are shared by index, else the images."""
    index = images.get("pass_index")
    if index is not None:
        return int(index.shape[0])
    pv = images["pixel_values"]
    return int(pv.shape[0]) if pv.ndim == 4 else 1


def expand_images(pixel_values: torch.Tensor, images: dict[str, Any]) -> torch.Tensor:
    """``pixel_values`` per row of the batch (indexed by ``pass_index`` when present)."""
    index = images.get("pass_index")
    return pixel_values if index is None else pixel_values.index_select(0, index.to(pixel_values.device))


def head_logits(head, states: torch.Tensor, columns=None, head_bias: bool = False) -> torch.Tensor:
    """A masked-LM head (``transform`` then ``decoder``, plus ``head.bias`` when ``head_bias``) on
    ``states``; with ``columns`` only those vocabulary columns are computed."""
    if columns is None:
        return head(states)
    hidden = head.transform(states)
    decoder = head.decoder
    bias = decoder.bias.index_select(0, columns) if decoder.bias is not None else None
    out = torch.nn.functional.linear(hidden, decoder.weight.index_select(0, columns), bias)
    if head_bias:
        out = out + head.bias.index_select(0, columns)
    return out


def _to_device(tensor, device):
    """A host tensor on ``device``: pinned and copied without waiting on CUDA, moved plainly elsewhere."""
    if torch.device(device).type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)
