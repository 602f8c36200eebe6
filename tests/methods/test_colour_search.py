"""Cross-modal prompt search: the grid, solid images against the model's own processor, a fake
backbone whose colour logits are a known function of the pixels, the margin rule, the word list."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
import torch  # noqa: E402

from cptbench.cpt.colour_search import (RELEASE_WORDS, SearchSettings, SolidImages, colour_grid,  # noqa: E402
                                        log_odds_of, search_colours, select_colours)
from cptbench.models.image_processing import ImageSpec  # noqa: E402
from cpt_fakes import WordTokenizer  # noqa: E402


# ------------------------------------------------------------------------------------------- grid
def test_grid_is_the_release_grid_red_outermost():
    g5 = colour_grid(5)
    assert g5.shape == (140_608, 3) and g5.dtype == np.uint8
    assert g5[0].tolist() == [0, 0, 0] and g5[1].tolist() == [0, 0, 5] and g5[52].tolist() == [0, 5, 0]
    assert g5[-1].tolist() == [255, 255, 255]
    g32 = colour_grid(32)
    assert len(g32) == 512 and sorted(set(g32[:, 0].tolist())) == list(range(0, 256, 32))
    with pytest.raises(ValueError):
        colour_grid(0)


# ------------------------------------------------------------------------ solid images, real models
@pytest.mark.parametrize("kind", ["vilt", "flava", "bridgetower"])
@pytest.mark.parametrize("size", [128, 45])
def test_solid_images_equal_the_models_own_processor(tiny_model_dir, kind, size):
    from cptbench.models.loading import load_adapter

    adapter = load_adapter(str(tiny_model_dir(kind)))
    solid = SolidImages(adapter.image_spec(), size, "cpu")
    colours = np.array([[0, 0, 0], [255, 255, 255], [240, 0, 30], [17, 203, 99]], dtype=np.uint8)
    batch = solid.batch(colours)
    for rgb, ours in zip(colours, batch["pixel_values"]):
        image = np.empty((size, size, 3), dtype=np.uint8)
        image[:] = rgb
        ref = adapter.prepare_image(image)["pixel_values"]
        assert ours.shape == ref.shape
        assert torch.allclose(ours, ref, atol=1e-5), (kind, rgb, (ours - ref).abs().max())
    assert batch["image_hw"].tolist() == [list(ref.shape[-2:])] * len(colours)


def test_crop_padding_takes_the_processors_value_of_black():
    spec = ImageSpec(lambda h, w: ((4, 4), (-2, -2)), (8, 8), "bicubic", 1 / 255, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5),
                     False, "test")
    px = SolidImages(spec, 4, "cpu").pixel_values(np.array([[255, 255, 255]]))[0]
    assert px.shape == (3, 8, 8)
    assert torch.allclose(px[:, 2:6, 2:6], torch.ones(3, 4, 4)) and torch.allclose(px[:, 0, :], -torch.ones(3, 8))


# ---------------------------------------------------------------- a backbone of known colour logits
class ColourFunctionAdapter:
    """A fake backbone: at [MASK], word w's logit is ``-|rgb - target_w|^2 / temperature + bias_w``,
    with ``rgb`` read back from the processed pixels it is given (every other word: logit 0), so the
    best grid colour of each word is known in closed form. The processor normalises (mean 0.4, std
    0.3) and resizes 128 -> 6: the search must undo nothing, only render what the model expects."""

    mask_token = "[MASK]"
    model_name = "fake:colour-function"
    device = torch.device("cpu")

    def __init__(self, targets, temperature=400.0, bias=None):
        self.targets = {w: np.asarray(t, dtype=np.float64) for w, t in targets.items()}
        self.temperature = temperature
        self.bias = dict(bias or {})
        self.tokenizer = WordTokenizer([*targets, "the", "color", "is", "it", ".", "filler"])
        self.spec = ImageSpec(lambda h, w: ((6, 6), (0, 0)), None, "bicubic", 1 / 255, (0.4, 0.4, 0.4),
                              (0.3, 0.3, 0.3), True, "fake")
        self.calls = []

    def image_spec(self):
        return self.spec

    def word_id(self, word):
        return self.tokenizer.vocab[word]

    def encode_text(self, text):
        ids = self.tokenizer.encode(text)
        return (tuple(ids), ids.index(self.tokenizer.mask_token_id))

    def text_arrays(self, encoded):
        ids = np.array([e[0] for e in encoded], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": np.ones_like(ids), "mask_col": np.array([e[1] for e in encoded])}

    def mask_logits_encoded(self, images, text, columns=None):
        pv = images["pixel_values"].double()
        self.calls.append(pv.shape[0])
        assert text["input_ids"].shape[0] == pv.shape[0]
        mean, std = torch.tensor(self.spec.mean).double(), torch.tensor(self.spec.std).double()
        rgb = (pv.mean(dim=(2, 3)) * std + mean) * 255.0  # (B, 3), back to 0..255
        logits = torch.zeros(pv.shape[0], len(self.tokenizer), dtype=torch.float64)
        for word, target in self.targets.items():
            d2 = ((rgb - torch.from_numpy(target)) ** 2).sum(dim=1)
            logits[:, self.word_id(word)] = -d2 / self.temperature + self.bias.get(word, 0.0)
        return (logits if columns is None else logits[:, columns]).float()


def nearest_grid_colour(target, step):
    values = np.arange(0, 256, step)
    return tuple(int(values[np.argmin(np.abs(values - t))]) for t in target)


TARGETS = {"red": (236, 10, 40), "green": (70, 200, 5), "blue": (20, 100, 250), "black": (8, 12, 14)}


def closed_form_probabilities(grid, targets, temperature=400.0):
    """The fake's softmax over the searched words at every grid colour, in float64 by numpy alone."""
    g = np.asarray(grid, dtype=np.float64)
    logits = np.stack([-((g - np.array(t)) ** 2).sum(1) / temperature for t in targets.values()], axis=1)
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    return logits, p / p.sum(1, keepdims=True)


@pytest.mark.parametrize("step", [32, 17])
def test_the_search_finds_the_known_best_colour_of_every_word(step):
    adapter = ColourFunctionAdapter(TARGETS)
    words = list(TARGETS)
    result = search_colours(adapter, words, SearchSettings(text="the color is [MASK] .", step=step, batch_size=50))
    assert len(result.grid) == len(np.arange(0, 256, step)) ** 3
    assert max(adapter.calls) == 50 and sum(adapter.calls) == len(result.grid)
    found = {c.word: c for c in result.choices}
    # the known answer, from the closed form in float64 (log-odds, so a dominant word does not tie at 1.0)
    logits, p = closed_form_probabilities(result.grid, TARGETS)
    assert np.allclose(result.probabilities, p, atol=1e-4)
    for j, word in enumerate(words):
        z = logits[:, j] - np.log(np.exp(np.delete(logits, j, axis=1)).sum(1))
        i = int(np.argmax(z))
        assert found[word].rgb == tuple(result.grid[i].tolist()), word
        assert found[word].probability == pytest.approx(p[i, j], abs=1e-5)
        assert found[word].margin == pytest.approx(p[i, j] - np.delete(p[i], j).max(), abs=1e-5)
        assert found[word].kept and found[word].margin > 0.5
    # a dominant word's best colour is not simply its first colour of probability 1.0 (float32 saturates)
    assert found["red"].rgb != tuple(result.grid[int(np.argmax(p[:, 0] >= np.float32(1.0)))].tolist()) \
        or not (p[:, 0] >= np.float32(1.0)).any()
    assert [c.word for c in result.kept] == sorted(words, key=lambda w: -found[w].probability)


@pytest.mark.parametrize("step", [32, 17, 5])
def test_over_the_vocabulary_one_word_peaks_at_the_grid_colour_nearest_its_target(step):
    # alone against a vocabulary of zero logits, p(w) rises with w's logit: its best colour is the
    # grid colour nearest its target, channel by channel
    for word, target in TARGETS.items():
        adapter = ColourFunctionAdapter({word: target}, temperature=50.0)
        settings = SearchSettings(text="the color is [MASK] .", step=step, normalise="vocab", batch_size=4096)
        result = search_colours(adapter, [word], settings)
        choice = result.choices[0]
        assert choice.rgb == nearest_grid_colour(target, step), (word, step)
        assert 0.0 < choice.probability < 1.0 and choice.kept


def test_a_word_the_model_never_says_first_is_not_kept():
    # "pink" peaks where "red" does but is always one logit behind it: its margin is negative
    targets = {**TARGETS, "pink": TARGETS["red"]}
    adapter = ColourFunctionAdapter(targets, bias={"pink": -1.0})
    result = search_colours(adapter, list(targets), SearchSettings(text="the color is [MASK] .", step=32))
    pink = next(c for c in result.choices if c.word == "pink")
    assert not pink.kept and pink.rival == "red" and pink.margin < 0
    assert [c.word for c in result.choices][-1] == "pink" and "pink" not in [c.word for c in result.kept]


def test_vocabulary_normalisation_gives_smaller_probabilities():
    adapter = ColourFunctionAdapter(TARGETS, temperature=50.0)
    rw = search_colours(adapter, list(TARGETS), SearchSettings(text="the color is [MASK] .", step=32))
    rv = search_colours(adapter, list(TARGETS), SearchSettings(text="the color is [MASK] .", step=32, normalise="vocab"))
    assert (rv.probabilities <= rw.probabilities + 1e-6).all() and rv.probabilities.sum(1).max() < 1.0


# ------------------------------------------------------------------------------------- margin rule
def logs(p):
    return log_odds_of(p)


def test_margin_rule_by_hand():
    grid = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]])
    choices = select_colours(logs([[0.6, 0.4], [0.45, 0.55], [0.3, 0.7]]), grid, ["a", "b"])
    assert [(c.word, c.rgb, c.kept) for c in choices] == [("b", (2, 2, 2), True), ("a", (0, 0, 0), True)]
    assert choices[0].margin == pytest.approx(0.4) and choices[1].margin == pytest.approx(0.2)
    # a stricter rule drops "a" (0.2 <= 0.3); kept words first, the others after
    strict = select_colours(logs([[0.6, 0.4], [0.45, 0.55], [0.3, 0.7]]), grid, ["a", "b"], min_margin=0.3)
    assert [(c.word, c.kept) for c in strict] == [("b", True), ("a", False)]
    # b's best colour is one where a leads: negative margin, a named as the rival; c is never first
    choices = select_colours(logs([[0.5, 0.45, 0.05], [0.6, 0.2, 0.2], [0.7, 0.1, 0.2]]), grid, ["a", "b", "c"])
    by = {c.word: c for c in choices}
    assert by["a"].kept and by["a"].rgb == (2, 2, 2) and by["a"].margin == pytest.approx(0.5)
    assert not by["b"].kept and by["b"].rival == "a" and by["b"].margin == pytest.approx(-0.05)
    assert not by["c"].kept and by["c"].rgb == (1, 1, 1) and by["c"].margin == pytest.approx(-0.4)
    # an exact tie goes to the first colour in grid order, and a margin of exactly 0 is not kept
    tie = select_colours(logs([[0.5, 0.5], [0.5, 0.5], [0.2, 0.8]]), grid, ["a", "b"])
    a = next(c for c in tie if c.word == "a")
    assert a.rgb == (0, 0, 0) and a.margin == 0 and not a.kept


def test_settings_are_checked():
    with pytest.raises(ValueError, match="normalise"):
        SearchSettings(text="[MASK]", normalise="all")
    with pytest.raises(ValueError, match="step"):
        SearchSettings(text="[MASK]", step=300)
    with pytest.raises(ValueError, match="batch size"):
        SearchSettings(text="[MASK]", batch_size=0)


# --------------------------------------------------------------------------- words of a real model
def test_default_words_keep_the_release_words_that_are_single_tokens(tiny_vilt_dir):
    from cptbench.core.errors import UsageError
    from cptbench.models.loading import load_adapter
    from cptbench.run.prompt_search import search_text, search_words

    adapter = load_adapter(str(tiny_vilt_dir))
    words, dropped = search_words(adapter, None)
    # the tiny vocabulary has the CPT colours and "black", not "pink" (a word of characters)
    assert words == [w for w in RELEASE_WORDS if w != "pink"] and set(dropped) == {"pink"}
    assert "token" in dropped["pink"]
    with pytest.raises(UsageError, match="pink"):
        search_words(adapter, ["red", "pink"])
    with pytest.raises(UsageError, match="none"):
        search_words(adapter, ["none"])
    assert search_text(adapter, "neutral") == "the color is [MASK] ."
    assert search_text(adapter, "3", "the man") == "the man is in [MASK] color."
    with pytest.raises(UsageError):
        search_text(adapter, "no mask here")
