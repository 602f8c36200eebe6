"""``cptbench prompt-search``'s two stages, as library calls (the CLI prints; nothing here does).

1. :func:`run_search`: the cross-modal colour search of :mod:`cptbench.cpt.colour_search` on a
   model named like ``--model`` (hub id, folder, ``bundled:<name>``), with the words checked
   against its vocabulary, the text resolved, the model's content fingerprint taken; then
   :func:`search_document` turns the result into a palette file's document
   (:mod:`cptbench.cpt.palettes`).
2. :func:`evaluate_palettes`: CPT with each of several palettes, zero-shot or prompt-tuned on a
   few training expressions per seed, on the first ``limit`` expressions of a task's validation
   split, so a palette is picked without touching test: a split
   whose name starts with ``test`` is refused, whatever the card calls an eval split. Nothing is
   written to a results folder: it is a selection step, and the chosen palette's real runs are made
   by ``cptbench run --set palette=FILE``, whose records then name the file and its hash.

The search's text (``template``): ``neutral`` is :data:`NEUTRAL_TEXT`, a sentence that names no
object. The release's solid-colour texts come from a features file its colour-recognition script
reads (``predictions.tsv``), which is not in the release; its exact wording could not be checked,
so the neutral text is cptbench's own and every palette file records the text it was searched with.
``1``, ``2``, ``3`` are CPT's templates with ``subject`` as the expression; any other value is
taken as the text itself and must hold ``[MASK]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

from cptbench.core.errors import UsageError
from cptbench.cpt.colour_search import RELEASE_WORDS, SearchResult, SearchSettings, search_colours
from cptbench.cpt.palettes import DEFAULT_ALPHA, palette_document, parse_palette

#: the search's default text ("{mask}" is the model's mask token)
NEUTRAL_TEXT = "the color is {mask} ."
#: split names an evaluation of palettes refuses (a palette is chosen on validation data only)
TEST_PREFIX = "test"


def search_text(adapter: Any, template: str = "neutral", subject: str = "it") -> str:
    """The text the search decodes (module doc), with the adapter's mask token."""
    mask = adapter.mask_token
    template = str(template).strip()
    if template == "neutral":
        return NEUTRAL_TEXT.format(mask=mask)
    if template in ("1", "2", "3"):
        from cptbench.cpt.prompts import fill_template

        return fill_template(int(template), subject, mask)
    if template.count("[MASK]") != 1:
        raise UsageError(f"--template {template!r}: give neutral, 1, 2, 3 or a text with exactly one [MASK]")
    return template.replace("[MASK]", mask)


def unknown_tokens(adapter: Any, text: str) -> list[str]:
    """Words of ``text`` the tokenizer maps to its unknown token (the model cannot read them)."""
    unk = getattr(adapter.tokenizer, "unk_token", None)
    if unk is None:
        return []
    return [w for w in text.replace(adapter.mask_token, " ").split() if w != unk and unk in adapter.tokenizer.tokenize(w)]


def word_problem(adapter: Any, word: str) -> str:
    """Why ``word`` cannot be a colour word of ``adapter``'s model ("" when it can)."""
    from cptbench.models.base import ModelVocabularyError

    if word.lower() == "none":
        return "'none' is CPT's negative answer word"
    try:
        i = adapter.word_id(word)
    except ModelVocabularyError as exc:
        return "not in the model's vocabulary" if "unknown" in str(exc) else "not a single token of the model"
    unk = getattr(adapter.tokenizer, "unk_token_id", None)
    return "not in the model's vocabulary" if unk is not None and i == unk else ""


def search_words(adapter: Any, words: Sequence[str] | None) -> tuple[list[str], dict[str, str]]:
    """(the words to search, the default words dropped with the reason). ``None``: the release's
    seven words (:data:`~cptbench.cpt.colour_search.RELEASE_WORDS`), keeping those that are single
    tokens of the model; words the user names must all be usable."""
    if words is None:
        dropped = {w: why for w in RELEASE_WORDS if (why := word_problem(adapter, w))}
        kept = [w for w in RELEASE_WORDS if w not in dropped]
        if not kept:
            raise UsageError(f"none of the release's colour words is a single token of model "
                             f"{adapter.model_name!r}; name some with --words")
        return kept, dropped
    words = list(dict.fromkeys(w.strip() for w in words if w.strip()))
    if not words:
        raise UsageError("--words names no word")
    bad = {w: why for w in words if (why := word_problem(adapter, w))}
    if bad:
        raise UsageError("--words: " + "; ".join(f"{w!r}: {why}" for w, why in bad.items())
                         + f" (model {adapter.model_name!r})")
    return words, {}


@dataclass
class SearchRun:
    """A finished search with what the palette file records about it."""

    result: SearchResult
    model: str
    model_fingerprint: str
    model_source: dict[str, Any]
    text: str
    template: str
    settings: SearchSettings
    dropped: dict[str, str]
    unknown_tokens: list[str]
    device: str
    created_at: str
    threads: int = 0  # torch's CPU threads during the search


def run_search(model: str, *, words: Sequence[str] | None = None, step: int = 5, image_size: int = 128,
               template: str = "neutral", subject: str = "it", normalise: str = "words", min_margin: float = 0.0,
               device: str = "cpu", batch_size: int = 64, precision: str = "auto",
               progress: Callable[[int, int], None] | None = None, adapter: Any = None,
               threads: int | None = None) -> SearchRun:
    """Load ``model`` on ``device`` (or use ``adapter``), check the words, and search (module doc).
    ``threads``: torch's CPU threads (None: ``$CPTBENCH_THREADS``, else torch's default), as ``run``."""
    from datetime import datetime, timezone

    from cptbench.methods.numerics import apply_threads, resolve_precision, threads_setting
    from cptbench.run.device import check_device
    from cptbench.run.fingerprint import model_fingerprint

    check_device(device)
    n_threads = apply_threads(threads_setting(threads))
    fp, path = model_fingerprint(model)
    if adapter is None:
        from cptbench.models.loading import load_adapter

        adapter = load_adapter(path or model, device)
    chosen, dropped = search_words(adapter, words)
    text = search_text(adapter, template, subject)
    adapter.encode_text(text)  # one [MASK], within the model's text length, or a clear error now
    try:
        settings = SearchSettings(text=text, step=step, image_size=image_size, normalise=normalise,
                                  min_margin=min_margin, batch_size=batch_size,
                                  precision=resolve_precision(precision, device))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    result = search_colours(adapter, chosen, settings, progress)
    return SearchRun(result, model, fp.digest, dict(fp.source), text, str(template), settings, dropped,
                     unknown_tokens(adapter, text), str(device),
                     datetime.now(timezone.utc).isoformat(timespec="seconds"), n_threads)


def default_name(model: str, step: int) -> str:
    """A palette name from the model and the grid: ``mini-vilt-step32``."""
    import re

    stem = str(model).rstrip("/").replace("bundled:", "").split("/")[-1] or "model"
    return re.sub(r"[^A-Za-z0-9._+-]", "-", f"{stem}-step{step}")[:64]


def search_document(run: SearchRun, *, name: str | None = None, alpha: float = DEFAULT_ALPHA,
                    keep: int | None = None) -> dict[str, Any]:
    """The palette file of a search: its recognised words, best first (the first ``keep`` of
    them), each with its RGB, the painting ``alpha``, probability and margin; the words not
    recognised and the ones dropped; the model's fingerprint, the grid, the text and the timing."""
    kept = run.result.kept[:keep] if keep else run.result.kept
    if not kept:
        raise UsageError("no colour word was recognised (each one's best colour has another word ahead of it, "
                         "margin <= --min-margin): there is no palette to write; try other --words or --template")
    entries = [{"word": c.word, "rgb": list(c.rgb), "alpha": float(alpha), "probability": round(c.probability, 6),
                "margin": round(c.margin, 6)} for c in kept]
    s, r = run.settings, run.result
    left_out = {c.word: f"margin {c.margin:+.4f} <= {s.min_margin} (the model says {c.rival!r} at its best colour "
                        f"{list(c.rgb)})" for c in r.choices if not c.kept}
    left_out.update({c.word: "beyond --keep" for c in r.kept[len(kept):]})
    from importlib.metadata import PackageNotFoundError, version as package_version

    try:
        version = package_version("cptbench")
    except PackageNotFoundError:  # a source tree that is not installed
        version = "unknown"
    doc = palette_document(name or default_name(run.model, s.step), entries, search={
        "model": run.model, "model_fingerprint": run.model_fingerprint, "model_source": run.model_source,
        "grid": {"step": s.step, "values_per_channel": round(len(r.grid) ** (1 / 3)), "colours": len(r.grid),
                 "image_size": s.image_size, "processed_size": r.info.get("processed_size")},
        "template": run.template, "text": run.text, "unknown_tokens": run.unknown_tokens,
        "normalise": s.normalise, "min_margin": s.min_margin, "words": list(r.words),
        "dropped_words": run.dropped, "not_kept": left_out,
        "all_choices": [{"word": c.word, "rgb": list(c.rgb), "probability": round(c.probability, 6),
                         "margin": round(c.margin, 6)} for c in r.choices],
        "device": run.device, "threads": run.threads, "precision": s.precision, "batch_size": r.batch_size,
        "seconds": round(r.seconds, 3), "seconds_per_colour": r.seconds_per_colour,
        "created_at": run.created_at, "cptbench_version": version})
    return doc


# ------------------------------------------------------------------------------- stage 2: evaluate
@dataclass(frozen=True)
class PaletteScore:
    """CPT accuracy with one palette on a split's first ``n`` expressions: zero-shot, or after
    prompt tuning on ``shots`` training expressions, once per seed (from the same pre-trained weights)."""

    label: str  # what the user gave (a file, a name, an inline spec)
    palette: str  # the palette's name (``file:<name>@<hash>`` for a file)
    colours: tuple[tuple[str, tuple[int, int, int]], ...]
    n: int
    correct: tuple[int, ...]  # expressions right, one count per seed
    passes: int  # forward passes of one prediction of the split
    seconds: float  # fits and predictions together
    shots: int = 0
    seeds: tuple[int, ...] = (0,)

    @property
    def n_correct(self) -> int:
        """Expressions right, summed over the seeds."""
        return sum(self.correct)

    @property
    def accuracies(self) -> tuple[float, ...]:
        """Percent correct per seed."""
        return tuple(100.0 * c / self.n if self.n else float("nan") for c in self.correct)

    @property
    def accuracy(self) -> float:
        """Percent correct, the mean over the seeds."""
        acc = self.accuracies
        return sum(acc) / len(acc) if acc else float("nan")

    @property
    def std(self) -> float:
        """Population standard deviation of the per-seed accuracies (0 for one seed)."""
        acc, mean = self.accuracies, self.accuracy
        return (sum((a - mean) ** 2 for a in acc) / len(acc)) ** 0.5 if acc else float("nan")


def check_selection_split(task, split: str) -> None:
    """Refuse a split a palette may not be chosen on: one whose name starts with ``test``, or one
    the card does not have."""
    if split.lower().startswith(TEST_PREFIX):
        raise UsageError(f"--split {split}: palettes are chosen on validation data only; a test split is refused "
                         f"(task {task.name!r}: use --split {next((s for s in task.eval_splits if not s.lower().startswith(TEST_PREFIX)), 'val')})")
    known = [*task.eval_splits, task.train_split]
    if split not in known:
        from cptbench.core.registry import unknown_name_message

        raise UsageError(unknown_name_message(f"split of task {task.name!r}:", split, known))


def evaluate_palettes(palettes: Sequence[str], task, *, split: str = "val", limit: int | None = None,
                      method: str = "cpt", options: Mapping[str, Any] | None = None, model: str | None = None,
                      device: str = "cpu", batch_size: int | str = 32, data_root: str | None = None,
                      images: str | None = None, progress: Callable[[str, int, int], None] | None = None,
                      threads: int | None = None, shots: int = 0, seeds: Sequence[int] = (0,)
                      ) -> list[PaletteScore]:
    """CPT (``method``: ``cpt``, ``cpt-blk`` or ``cpt-seg``, with the card's defaults and
    ``options``) with each palette (file, name or inline spec) on the first ``limit`` expressions
    of ``split``: zero-shot, or with ``shots`` > 0 prompt-tuned on the k-shot draw of each seed of
    the task's train split (as ``run -k``), every fit from the pre-trained weights, which are put
    back after it. One model load for all palettes; nothing written. ``threads`` as :func:`run_search`."""
    from cptbench.cpt.method import CptMethod
    from cptbench.methods.numerics import apply_threads, threads_setting
    from cptbench.methods.options import method_config
    from cptbench.methods.registry import get_method_class
    from cptbench.models.loading import load_adapter
    from cptbench.run.context import build_context
    from cptbench.run.device import check_device
    from cptbench.run.session import DataSession

    if not palettes:
        raise UsageError("--evaluate needs at least one palette (a palette file, a name such as red, or an inline spec)")
    check_selection_split(task, split)
    if shots < 0 or (shots and not seeds):
        raise UsageError(f"--shots {shots} with seeds {list(seeds)}: give shots >= 0 and at least one seed")
    cls = get_method_class(method)
    if not issubclass(cls, CptMethod):
        raise UsageError(f"palettes are CPT's: --method must be cpt, cpt-blk or cpt-seg, got {cls.name!r}")
    options = {k: v for k, v in dict(options or {}).items() if k != "palette"}
    configs = [method_config(cls, task, {**options, "palette": p}) for p in palettes]  # every file read now
    check_device(device)
    apply_threads(threads_setting(threads))
    session = DataSession(data_root, images, limit=limit)
    data = session.split(task, split)
    examples = session.eval_examples(task, split)
    session.check_images(task, examples)
    seeds = tuple(int(s) for s in seeds) if shots else (0,)
    train = {seed: session.train_examples(task, session.manifest(task, shots, seed)) for seed in seeds} if shots else {}
    for part in train.values():
        session.check_images(task, [te.example for te in part])
    _, path = session.model(model or task.default_model)
    adapter = load_adapter(path or model or task.default_model, device)
    pretrained = _weights(adapter) if shots else None
    out = []
    for i, (label, config) in enumerate(zip(palettes, configs)):
        correct, passes, start = [], 0, time.perf_counter()
        for seed in seeds:
            m = cls(config, build_context(task, cls, config, model=path, device=device, eval_batch_size=batch_size,
                                          adapter=adapter))
            try:
                if shots:
                    m.fit(train[seed], seed)
                    m.take_counters()  # the prediction's passes only
                scores = m.predict(examples)
            finally:
                if pretrained is not None:
                    adapter.model.load_state_dict(pretrained)
            correct.append(_n_correct(task, data, examples, scores))
            passes = int(m.take_counters()["passes"])
        pal = parse_palette(config.palette)
        out.append(PaletteScore(str(label), pal.name, tuple(zip(pal.words, pal.rgb)), len(examples), tuple(correct),
                                passes, time.perf_counter() - start, int(shots), seeds))
        if progress is not None:
            progress("palettes", i + 1, len(palettes))
    return out


def _weights(adapter: Any) -> dict[str, Any]:
    """A copy of the model's weights (on their device), to put back after each prompt tuning."""
    return {k: v.detach().clone() for k, v in adapter.model.state_dict().items()}


def _n_correct(task, data, examples, scores) -> int:
    """Expressions whose pick is right, by the run's scorer."""
    from cptbench.run.scoring import score_example

    return sum(score_example(ex, data.labels[ex.example_id], s, task.metric).correct for ex, s in zip(examples, scores))
