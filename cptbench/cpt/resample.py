"""PIL's resize as tensor ops, for whole images and for the window a painted region changes.

PIL (what the Hugging Face PIL image processors call) resizes a uint8 image one axis at a time,
each output pixel a normalised filter-weighted sum over its input support (antialiased: the filter
is stretched by the scale when shrinking), rounded half up and clipped to 0..255 after *each*
pass. torch's ``interpolate(..., antialias=True)`` uses the same filters and supports (bicubic
``a = -0.5``, bilinear), so one axis at a time with the same rounding gives PIL's pixels: on random
640x480 noise the mean difference from the HF processor is below 1e-4 grey levels (a float32 sum
now and then lands on the other side of a .5). Which axis goes first is PIL's choice (Pillow 13
runs the vertical pass first for some shapes, e.g. 50x30 -> 48x32; older versions always start
horizontally): :func:`pil_pass_order` asks the installed PIL once per size, with a probe image.

A painted copy differs from its original only inside the painted regions. With the per-axis
weights in band form (:class:`AxisResampler`: input support of each output, outputs of each input)
the resized copy is the resized original except in a window, and only that window is recomputed,
exactly (the same weights, the same rounding): cost grows with the painted area, not the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=256)
def _weights(n_in: int, n_out: int, mode: str) -> np.ndarray:
    """Dense (n_in, n_out) weights of torch's antialiased ``mode`` resize along one axis (CPU),
    obtained by resizing the identity: column j holds output j's weights over the inputs."""
    import torch

    eye = torch.eye(n_in, dtype=torch.float32).view(1, n_in, 1, n_in)
    out = torch.nn.functional.interpolate(eye, size=(1, n_out), mode=mode, antialias=True)
    return out[0, :, 0, :].numpy()


#: outputs per tile of the banded product (CPU), and the fewest window outputs it is used for
#: (below that the dense block is cheaper); measured on 640x480 -> 512x384 windows, one thread
BAND_TILE = 8
BAND_MIN = 96


@dataclass
class Band:
    """The weights of one axis cut into tiles of :data:`BAND_TILE` outputs: tile ``k`` covers
    outputs ``[k*T, (k+1)*T)`` and reads the ``length`` inputs from ``start[k]`` (zero weights
    pad the rest), so a window costs ``outputs * length`` multiply-adds, not ``outputs * inputs``."""

    start: np.ndarray  # (K,) first input of each tile
    length: int
    weights: object  # (K, length, T) float32 torch tensor


@dataclass
class AxisResampler:
    """One axis, ``n_in`` -> ``n_out`` pixels: the dense weights (on the device) and their band
    structure (on the host). A small window is resampled by one matrix product with the block of
    the weights it needs; on a CPU a wide one (or a whole pass) by a banded product over tiles of
    outputs (:class:`Band`), several times fewer multiply-adds with the same weights."""

    n_in: int
    n_out: int
    mode: str
    identity: bool
    dense: object = None  # (n_in, n_out) weights on the device (float64 on CUDA: immune to TF32)
    lo: np.ndarray | None = None  # (n_out,) first input of each output's support
    hi: np.ndarray | None = None  # (n_out,) one past its last input
    first: np.ndarray | None = None  # (n_in,) first output an input contributes to
    last: np.ndarray | None = None  # (n_in,) one past the last such output
    band: Band | None = None  # CPU only: the tiled weights

    @classmethod
    def build(cls, n_in: int, n_out: int, mode: str, device) -> "AxisResampler":
        """The resampler ``n_in`` -> ``n_out`` pixels with filter ``mode``: weights on ``device``, band
        structure on the host; an identity when the lengths are equal."""
        if n_in == n_out:
            return cls(n_in, n_out, mode, True)
        import torch

        dense = _weights(int(n_in), int(n_out), mode)  # (n_in, n_out)
        nz = dense != 0
        lo = nz.argmax(axis=0)
        hi = n_in - nz[::-1].argmax(axis=0)
        used = nz.any(axis=1)  # an input on the zero of the filter contributes to no output
        first = np.where(used, nz.argmax(axis=1), n_out)
        last = np.where(used, n_out - nz[:, ::-1].argmax(axis=1), 0)
        dev = torch.device(device)
        weights = torch.from_numpy(dense)
        band = None
        if dev.type == "cuda":  # pinned and non-blocking: a new image size never waits for the device
            weights = weights.double().pin_memory().to(dev, non_blocking=True)
        else:
            weights = weights.to(dev)
            band = _band(dense, lo, hi) if dev.type == "cpu" else None
        return cls(n_in, n_out, mode, False, weights, lo, hi, first, last, band)

    def outputs_of(self, a: int, b: int) -> tuple[int, int]:
        """The output range the inputs ``[a, b)`` contribute to."""
        if self.identity:
            return a, b
        c0, c1 = int(self.first[a:b].min()), int(self.last[a:b].max())
        return (c0, c1) if c0 < c1 else (0, 0)

    def support(self, c0: int, c1: int) -> tuple[int, int]:
        """The input range outputs ``[c0, c1)`` read."""
        if self.identity:
            return c0, c1
        return int(self.lo[c0:c1].min()), int(self.hi[c0:c1].max())

    def apply(self, x, dim: int, c0: int, c1: int, s0: int):
        """Outputs ``[c0, c1)`` along ``dim`` (1: rows, 2: columns) of a float (3, H, W) ``x``
        holding inputs ``[s0, s0 + x.shape[dim])`` on that axis, rounded half up and clipped to
        0..255 as PIL's uint8 pass does."""
        if self.identity:
            return x.narrow(dim, c0 - s0, c1 - c0)
        import torch

        if self.band is not None and c1 - c0 >= BAND_MIN and x.dtype == torch.float32:
            return round_u8(_banded(self.band, x, dim, c0, c1, s0))
        w = self.dense[s0:s0 + x.shape[dim], c0:c1]
        xd = x.to(w.dtype)
        out = torch.matmul(xd, w) if dim == 2 else torch.matmul(w.t(), xd)
        return round_u8(out).to(x.dtype)


def _band(dense: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> Band:
    """The tiles of dense (n_in, n_out) weights whose outputs read inputs ``[lo, hi)``."""
    import torch

    n_in, n_out = dense.shape
    tile = BAND_TILE
    k = -(-n_out // tile)
    firsts = np.arange(k) * tile
    lasts = np.minimum(firsts + tile, n_out) - 1
    start = lo[firsts].astype(np.int64)
    length = int((hi[lasts] - start).max())
    start = np.minimum(start, n_in - length)  # a tile near the end reads the last inputs
    weights = np.zeros((k, length, tile), np.float32)
    for i in range(k):
        block = dense[start[i]:start[i] + length, firsts[i]:lasts[i] + 1]
        weights[i, :, :block.shape[1]] = block
    return Band(start, length, torch.from_numpy(weights))


def _banded(band: Band, x, dim: int, c0: int, c1: int, s0: int):
    """Outputs ``[c0, c1)`` along ``dim`` of float32 (3, H, W) ``x`` (inputs from ``s0``) by the
    banded product: each tile's inputs gathered, one batched matrix product, unrounded. Inputs a
    tile reads outside ``x`` are clamped to its edge: their weights for the window's outputs are 0."""
    import torch

    tile, length = BAND_TILE, band.length
    k0, k1 = c0 // tile, -(-c1 // tile)
    if dim == 2:  # columns: run the row routine on the transpose
        return _banded(band, x.transpose(1, 2).contiguous(), 1, c0, c1, s0).transpose(1, 2).contiguous()
    n_x = x.shape[1]
    index = np.clip(band.start[k0:k1, None] - s0 + np.arange(length), 0, n_x - 1).reshape(-1)
    slabs = x.index_select(1, torch.from_numpy(index)).view(x.shape[0], k1 - k0, length, x.shape[2])
    out = torch.matmul(band.weights[k0:k1].transpose(1, 2), slabs)  # (3, tiles, T, W)
    return out.view(x.shape[0], (k1 - k0) * tile, x.shape[2])[:, c0 - k0 * tile:c1 - k0 * tile]


def round_u8(x):
    """PIL's uint8 rounding of a filtered value: half up, clipped to 0..255 (in place)."""
    return x.add_(0.5).floor_().clamp_(0, 255)


def _pass(x, axis: AxisResampler, dim: int, use_interpolate: bool):
    """One full axis pass of a float (3, H, W) image, rounded as PIL rounds."""
    import torch

    if axis.identity:
        return x
    if not use_interpolate or (dim == 1 and axis.band is not None):  # vertical: the band is faster on a CPU
        return axis.apply(x, dim, 0, axis.n_out, 0)
    size = (x.shape[1], axis.n_out) if dim == 2 else (axis.n_out, x.shape[2])
    return round_u8(torch.nn.functional.interpolate(x[None], size=size, mode=axis.mode, antialias=True)[0])


def resize_full(image, h_axis: AxisResampler, v_axis: AxisResampler, order: str, use_interpolate: bool):
    """(T, R): the first pass of a float (3, H, W) image (``order`` ``hv``: horizontal first) and
    the full resize, both rounded as PIL rounds. ``use_interpolate`` runs torch's own kernel for the
    horizontal pass and, unless the axis has a CPU :class:`Band` (faster there), the vertical one (fast on
    CPU; the same weights as the band form)."""
    first, second = ((h_axis, 2), (v_axis, 1)) if order == "hv" else ((v_axis, 1), (h_axis, 2))
    t = _pass(image, *first, use_interpolate)
    return t, _pass(t, *second, use_interpolate)


_PIL_FILTERS = {"bicubic": 3, "bilinear": 2}


@lru_cache(maxsize=4096)
def pil_pass_order(height: int, width: int, out_h: int, out_w: int, mode: str) -> str:
    """``hv`` or ``vh``: the pass order the installed PIL uses for this resize, found by resizing a
    fixed random probe of that size with PIL and with both orders here (once per size)."""
    if height == out_h or width == out_w:
        return "hv"  # one pass: the order does not matter
    import torch
    from PIL import Image

    probe = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    pil = torch.from_numpy(np.asarray(Image.fromarray(probe).resize((out_w, out_h), _PIL_FILTERS[mode]),
                                      dtype=np.float32)).permute(2, 0, 1)
    x = torch.from_numpy(probe).permute(2, 0, 1).float()
    h_axis = AxisResampler(width, out_w, mode, False)
    v_axis = AxisResampler(height, out_h, mode, False)
    errors = {order: float((resize_full(x, h_axis, v_axis, order, True)[1] - pil).abs().mean()) for order in ("hv", "vh")}
    return min(errors, key=errors.get)
