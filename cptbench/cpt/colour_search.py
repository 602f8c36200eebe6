"""Cross-modal prompt search: which RGB colour does a backbone name with each colour word?

The paper does not take "red" on faith: it shows the model solid-colour images over an RGB grid,
decodes colour words at ``[MASK]`` and keeps, per word, the colour the model recognises best. The
release renders a 128 x 128 image for every RGB on a step-5 grid (0, 5, ..., 255 per channel:
52^3 = 140,608 colours) with one full-image box and decodes red / purple / green / yellow / blue /
pink / black; its recorded best colours for VinVL are pink (255, 205, 225) 0.902, red (100, 0, 15)
0.886, yellow (250, 250, 50) 0.881, purple (85, 45, 130) 0.874, blue (40, 120, 255) 0.708, green
(5, 70, 35) 0.608 and black (20, 25, 25) 0.509. The (240, 0, 30) CPT paints with was chosen there.

Here (the code is cptbench's own):

* **Images are tensors, never files.** A solid ``image_size`` x ``image_size`` image goes through
  the adapter's own image processor rules (:class:`~cptbench.models.image_processing.ImageSpec`:
  resize, crop, rescale, normalise). Every resampling filter maps a constant image to the same
  constant, so the processed image is the colour's normalised value in every valid pixel (and the
  crop's padding value outside the resized image): :class:`SolidImages` builds a batch of them on
  the model's device with one broadcast, no resize (``tests/methods/test_colour_search.py`` checks
  it against the processor).
* **One text for every colour**, tokenised once; the batch's rows share it.
* **Probabilities.** ``normalise="words"`` (the default): softmax over the candidate words' logits
  at ``[MASK]``. That is the release's decision rule (its colour-recognition check takes the
  ``[MASK]`` logits of the candidate words only and their arg-max) and CPT's own question, "which
  of these colours is it?"; a softmax over the whole vocabulary (``normalise="vocab"``) also
  spreads mass over every other word the text makes likely (``the``, ``.``), which depends on the
  text more than on the colour, so its values are small and hard to compare across models.
* **Selection** (:func:`select_colours`): for each word, the grid colour with the highest
  probability, and its *margin*: that probability minus the largest probability of another word at the
  same colour. A word is kept only if its margin is above ``min_margin`` (default 0: at its best
  colour the model must name this word first); a word that never comes first anywhere on the grid
  is reported as not recognised, not put in a palette. Kept words are ordered by probability.
  Colours are compared by the word's *log-odds* ``z = logit(w) - logsumexp(logits of the other
  words (or vocabulary))``, the logit of its probability (``p = sigmoid(z)``): the same order, but
  it does not saturate where a word dominates (in float32 every probability above 1 - 6e-8 is 1.0
  and ``log_softmax`` is 0.0, and a plain arg-max would return the first such colour of the grid,
  not the best). An exact tie goes to the first colour in grid order (red outermost, blue
  innermost, as the release's loops).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

#: the release's colour words, in its order
RELEASE_WORDS = ("red", "purple", "green", "yellow", "blue", "pink", "black")
#: the release's grid step and image size
RELEASE_STEP = 5
RELEASE_IMAGE_SIZE = 128
NORMALISATIONS = ("words", "vocab")


def colour_grid(step: int) -> np.ndarray:
    """The uint8 RGB grid ``(N, 3)`` of values ``0, step, ...`` (up to 255) per channel, red
    outermost and blue innermost; step 5 gives 52^3 = 140,608 colours, step 32 gives 8^3 = 512."""
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or not 1 <= int(step) <= 255:
        raise ValueError(f"grid step must be an integer in 1..255, got {step!r}")
    values = np.arange(0, 256, int(step), dtype=np.uint8)
    r, g, b = np.meshgrid(values, values, values, indexing="ij")
    return np.stack([r.ravel(), g.ravel(), b.ravel()], axis=1)


class SolidImages:
    """Processed solid-colour images (module doc) for an adapter's :class:`ImageSpec`, as a batch on
    ``device``: :meth:`batch` gives the ``images`` dict of ``mask_logits_encoded``."""

    def __init__(self, spec: Any, image_size: int, device: Any):
        import torch

        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be a positive integer, got {image_size!r}")
        self.device = torch.device(device)
        (rh, rw), (top, left) = spec.geometry(image_size, image_size)
        self.height, self.width = spec.output_size(image_size, image_size)
        rows = np.arange(self.height) + (top if spec.crop is not None else 0)
        cols = np.arange(self.width) + (left if spec.crop is not None else 0)
        valid = ((rows >= 0) & (rows < rh))[:, None] & ((cols >= 0) & (cols < rw))[None, :]
        scale = 1.0 if spec.rescale is None else float(spec.rescale)
        mean = np.zeros(3) if spec.mean is None else np.asarray(spec.mean, dtype=np.float64)
        std = np.ones(3) if spec.std is None else np.asarray(spec.std, dtype=np.float64)
        # processed value = (v * scale - mean) / std = gain * v + offset; padding is v = 0
        self.gain = torch.tensor(scale / std, dtype=torch.float32, device=self.device)
        self.offset = torch.tensor(-mean / std, dtype=torch.float32, device=self.device)
        self.padded = None if valid.all() else torch.from_numpy(~valid).to(self.device)
        self.pad_to_batch = bool(spec.pad_to_batch)

    def pixel_values(self, rgb: np.ndarray):
        """float32 ``(B, 3, H, W)`` processed images of the ``(B, 3)`` colours ``rgb``."""
        import torch

        colours = torch.as_tensor(np.asarray(rgb, dtype=np.float32).reshape(-1, 3), device=self.device)
        values = colours * self.gain + self.offset  # (B, 3)
        out = values[:, :, None, None].expand(-1, -1, self.height, self.width).contiguous()
        if self.padded is not None:
            out = torch.where(self.padded, self.offset[None, :, None, None], out)
        return out

    def batch(self, rgb: np.ndarray) -> dict[str, Any]:
        """``pixel_values`` and ``image_hw`` (every pixel valid) for the colours ``rgb``."""
        n = int(np.asarray(rgb).reshape(-1, 3).shape[0])
        return {"pixel_values": self.pixel_values(rgb),
                "image_hw": np.tile(np.array([[self.height, self.width]], dtype=np.int64), (n, 1))}


@dataclass(frozen=True)
class SearchSettings:
    """What a search decodes: the grid ``step``, the solid image's side ``image_size``, the
    ``text`` (one ``[MASK]``, already holding the model's mask token), the probability's
    ``normalise`` rule, the ``min_margin`` a kept word needs, the forward's ``batch_size`` and
    ``precision`` (``fp32`` or ``bf16``)."""

    text: str
    step: int = RELEASE_STEP
    image_size: int = RELEASE_IMAGE_SIZE
    normalise: str = "words"
    min_margin: float = 0.0
    batch_size: int = 64
    precision: str = "fp32"

    def __post_init__(self):
        colour_grid(self.step)
        if self.normalise not in NORMALISATIONS:
            raise ValueError(f"normalise must be one of {', '.join(NORMALISATIONS)}, got {self.normalise!r}")
        if not -1.0 <= float(self.min_margin) < 1.0:
            raise ValueError(f"min_margin must be in [-1, 1), got {self.min_margin!r}")
        if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch size must be a positive integer, got {self.batch_size!r}")


@dataclass(frozen=True)
class WordChoice:
    """One word's best grid colour: its ``probability`` there, its ``margin`` over the other words
    there, the word the model prefers there when it is not this one (``rival``), and ``kept``."""

    word: str
    rgb: tuple[int, int, int]
    probability: float
    margin: float
    rival: str
    kept: bool


@dataclass
class SearchResult:
    """A finished search: the grid, the words, their log-odds ``(N, W)`` (module doc), the choices
    (kept ones first, by probability) and the seconds the forwards took."""

    grid: np.ndarray
    words: tuple[str, ...]
    log_odds: np.ndarray
    choices: list[WordChoice]
    seconds: float
    batch_size: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def probabilities(self) -> np.ndarray:
        """``(N, W)`` probabilities of each word at each grid colour."""
        return probabilities_of(self.log_odds)

    @property
    def kept(self) -> list[WordChoice]:
        """The recognised words, best first."""
        return [c for c in self.choices if c.kept]

    @property
    def seconds_per_colour(self) -> float:
        """Forward seconds per grid colour."""
        return self.seconds / max(1, len(self.grid))


def probabilities_of(log_odds: np.ndarray) -> np.ndarray:
    """``sigmoid(log_odds)`` in float64: the probabilities of log-odds (module doc)."""
    z = np.asarray(log_odds, dtype=np.float64)
    return np.exp(-np.logaddexp(0.0, -z))


def log_odds_of(probabilities: np.ndarray) -> np.ndarray:
    """``log(p / (1 - p))``: the log-odds of probabilities (exact 0 and 1 give -inf and inf)."""
    p = np.asarray(probabilities, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.log(p) - np.log1p(-p)


def select_colours(log_odds: np.ndarray, grid: np.ndarray, words: Sequence[str],
                   min_margin: float = 0.0) -> list[WordChoice]:
    """Per word, the grid colour of highest probability (compared by log-odds) and its margin
    (module doc); kept words first, by probability (then word order), then the others in word order."""
    z = np.asarray(log_odds)
    if z.ndim != 2 or z.shape != (len(grid), len(words)):
        raise ValueError(f"log-odds of shape {z.shape} do not match {len(grid)} colours x {len(words)} words")
    probs = probabilities_of(z)
    choices = []
    for j, word in enumerate(words):
        i = int(np.argmax(z[:, j]))  # the first maximum in grid order
        row = probs[i]
        others = np.delete(row, j)
        if others.size:
            k = int(np.argmax(others))
            best_other = float(others[k])
            rival = list(words[:j]) + list(words[j + 1:])
            rival_word = rival[k] if best_other >= row[j] else ""
        else:
            best_other, rival_word = 0.0, ""
        margin = float(row[j]) - best_other
        choices.append(WordChoice(word, tuple(int(v) for v in grid[i]), float(row[j]), margin, rival_word,
                                  margin > float(min_margin)))
    order = {w: i for i, w in enumerate(words)}
    kept = sorted((c for c in choices if c.kept), key=lambda c: (-c.probability, order[c.word]))
    return kept + [c for c in choices if not c.kept]


def search_colours(adapter: Any, words: Sequence[str], settings: SearchSettings,
                   progress: Callable[[int, int], None] | None = None) -> SearchResult:
    """Run the search (module doc) with ``adapter`` (``image_spec``, ``encode_text``,
    ``text_arrays``, ``mask_logits_encoded``, ``word_id``) for ``words`` (single tokens: the caller
    checks them); ``progress(done, total)`` hears every batch."""
    import time

    import torch

    from cptbench.methods.numerics import run_batches

    words = tuple(words)
    if not words:
        raise ValueError("no colour words to search")
    ids = [int(adapter.word_id(w)) for w in words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"colour words must be distinct tokens, got ids {dict(zip(words, ids))}")
    device = torch.device(str(adapter.device))
    solid = SolidImages(adapter.image_spec(), settings.image_size, device)
    encoded = adapter.encode_text(settings.text)
    columns = torch.tensor(ids, dtype=torch.int64, device=device)
    texts: dict[int, dict[str, Any]] = {}

    def text_batch(n: int) -> dict[str, Any]:
        if n not in texts:
            arrays = adapter.text_arrays([encoded] * n)
            texts[n] = {k: torch.from_numpy(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}
        return texts[n]

    grid = colour_grid(settings.step)
    z = np.empty((len(grid), len(words)), dtype=np.float32)
    items = np.arange(len(grid))

    def build(chunk):
        return solid.batch(grid[chunk]), text_batch(len(chunk))

    def forward(inputs):
        images, text = inputs
        # log-odds of each word against the others (the searched words, or the whole vocabulary)
        pool = adapter.mask_logits_encoded(images, text, columns if settings.normalise == "words" else None).float()
        own = pool if settings.normalise == "words" else pool.index_select(1, columns)
        rest = []
        for j in range(len(ids)):
            masked = pool.clone()
            masked[:, j if settings.normalise == "words" else ids[j]] = float("-inf")
            rest.append(torch.logsumexp(masked, dim=1))
        return own - torch.stack(rest, dim=1)

    def finish(chunk, values):
        z[chunk] = values

    model = getattr(adapter, "model", None)
    if model is not None and hasattr(model, "eval"):
        model.eval()
    start = time.perf_counter()
    with torch.no_grad():
        used = run_batches(items, settings.batch_size, build, forward, finish, device=device,
                           precision=settings.precision,
                           progress=None if progress is None else (lambda done: progress(done, len(items))))
    seconds = time.perf_counter() - start
    choices = select_colours(z, grid, words, settings.min_margin)
    return SearchResult(grid, words, z, choices, seconds, used,
                        {"processed_size": [solid.height, solid.width], "word_ids": ids})
