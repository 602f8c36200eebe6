"""CPT text prompts: the release's three templates, expression truncation and the category segment.

Templates (``<q>`` = the expression with every ``.`` removed, then stripped; ``[MASK]`` = the
adapter's mask token):

1. ``<q> is [MASK].``
2. ``<q> is [MASK] color.``
3. ``<q> is in [MASK] color.`` (the release's default, and the only one it uses few-shot)

Truncation: the text plus the tokenizer's special tokens must fit ``adapter.max_text_length``.
The template part is never cut; expression tokens are dropped from the end until it fits. With a
fast tokenizer the kept prefix is cut from the original string at the last kept token's character
offset (no detokenisation artefacts such as ``[UNK]`` or ``don ' t``); a slow tokenizer has no
offsets, so whole whitespace-separated words are dropped instead. Every candidate is re-counted,
so the result always fits.

Category segment (option, off by default; the release appends one): after the prompt come the
tokenizer's separator token and the candidates' category names in candidate order, each painted
candidate's name preceded by its colour word: ``"<prompt> [SEP] person red person dog"``. The
adapter interface takes one string per pair, so the segment travels inside that string; the model
sees the separator token but the same token-type id for both parts (the release's Oscar backbone
gives its tag segment type 1). The expression has priority: the segment gets the room the prompt
leaves and is cut from the end (counted).

Answer words: the palette's colour words and ``none`` are what the model is asked to put at
``[MASK]``; :func:`answer_word_ids` checks each is one distinct token of the model's vocabulary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from cptbench.models.base import ModelVocabularyError

TEMPLATES: dict[int, str] = {
    1: "{q} is {mask}.",
    2: "{q} is {mask} color.",
    3: "{q} is in {mask} color.",
}
DEFAULT_TEMPLATE = 3


def clean_expression(expression: str) -> str:
    """The release's expression clean-up: remove dots, strip surrounding whitespace."""
    return expression.replace(".", "").strip()


def fill_template(template: int, q: str, mask_token: str) -> str:
    """Template ``template`` with the expression ``q`` and the mask token filled in, stripped."""
    if template not in TEMPLATES:
        raise ValueError(f"template must be one of {sorted(TEMPLATES)}, got {template!r}")
    return TEMPLATES[template].format(q=q, mask=mask_token).strip()


def template_text(template: int, mask_token: str = "[MASK]") -> str:
    """The template as shown in records, e.g. ``"<q> is in [MASK] color."``."""
    return fill_template(template, "<q>", mask_token)


def answer_word_ids(adapter: Any, words: Sequence[str]) -> list[int]:
    """The vocabulary ids of the answer words read at ``[MASK]`` (the palette's colour words and
    ``none``): each must be a single known token and no two may share one, else
    :class:`~cptbench.models.base.ModelVocabularyError`."""
    ids = [adapter.word_id(w) for w in words]  # raises ModelVocabularyError itself
    unk = getattr(adapter.tokenizer, "unk_token_id", None)
    for word, i in zip(words, ids):
        if unk is not None and i == unk:
            raise ModelVocabularyError(
                f"the word {word!r} is not in the vocabulary of model {getattr(adapter, 'model_name', '?')!r} "
                f"(it maps to the unknown token); choose another palette word or another model")
    if len(set(ids)) != len(ids):
        raise ModelVocabularyError(f"palette words and 'none' must be distinct tokens, got ids {dict(zip(words, ids))}")
    return ids


@dataclass(frozen=True)
class Prompt:
    """One CPT text and whether its expression or its category segment was cut to fit."""

    text: str
    expression_truncated: bool = False
    segment_truncated: bool = False


def _special_tokens(adapter: Any) -> int:
    n = getattr(adapter, "num_special_tokens", None)
    if isinstance(n, int):
        return n
    fn = getattr(adapter.tokenizer, "num_special_tokens_to_add", None)
    if callable(fn):
        try:
            return int(fn(pair=False))
        except TypeError:  # pragma: no cover - exotic tokenizers
            pass
    return 2


class PromptBuilder:
    """Builds the CPT text for an expression (and, optionally, a candidate group's segment).

    ``adapter`` needs ``tokenizer``, ``mask_token``, ``max_text_length`` and ``count_tokens``.
    """

    def __init__(self, adapter: Any, template: int = DEFAULT_TEMPLATE, category_segment: bool = False):
        if template not in TEMPLATES:
            raise ValueError(f"template must be one of {sorted(TEMPLATES)}, got {template!r}")
        self.adapter = adapter
        self.tokenizer = adapter.tokenizer
        self.template = template
        self.mask_token = adapter.mask_token
        self.max_length = int(adapter.max_text_length)
        self.n_special = _special_tokens(adapter)
        self.category_segment = bool(category_segment)
        self.sep_token = getattr(self.tokenizer, "sep_token", None)
        if self.category_segment and not self.sep_token:
            raise ValueError(f"category_segment needs a tokenizer with a separator token; model "
                             f"{getattr(adapter, 'model_name', '?')!r} has none")
        #: tokens of the template with an empty expression (counted once: every prompt needs it)
        self._fixed = self.count(fill_template(template, "", self.mask_token))
        if self._fixed + self.n_special > self.max_length:
            raise ValueError(f"template {template} does not fit the model's {self.max_length} text tokens")

    @property
    def template_text(self) -> str:
        """The template with ``<q>`` and this model's mask token, as records show it."""
        return template_text(self.template, self.mask_token)

    def count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (``adapter.count_tokens``; a fast tokenizer is
        asked directly with ``verbose=False`` so over-long drafts raise no transformers warning)."""
        tok = self.tokenizer
        if getattr(tok, "is_fast", False):
            return len(tok(text, add_special_tokens=False, verbose=False)["input_ids"])
        return self.adapter.count_tokens(text)

    def _fits(self, text: str) -> bool:
        return self.count(text) + self.n_special <= self.max_length

    def _prefixes(self, text: str, room: int):
        """Proper prefixes of ``text``, longest first, cut from the original string: after each
        token (fast tokenizers, by character offsets, starting at ``room`` tokens) or, for slow
        tokenizers without offsets, after each whitespace-separated word."""
        tok = self.tokenizer
        if getattr(tok, "is_fast", False):
            offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True, verbose=False)["offset_mapping"]
            for n in range(min(room, len(offsets) - 1), 0, -1):
                yield text[: offsets[n - 1][1]].rstrip()
        else:
            ends = [m.end() for m in re.finditer(r"\S+", text)]
            for end in reversed(ends[:-1]):
                yield text[:end]

    def _truncate(self, text: str, room: int, render) -> tuple[str, bool]:
        """``render(text)`` if it fits, else ``render`` of the longest prefix of ``text`` that fits."""
        if self._fits(render(text)):
            return render(text), False
        for prefix in self._prefixes(text, room):
            candidate = render(prefix)
            if self._fits(candidate):
                return candidate, True
        return render(""), True

    def main(self, expression: str) -> Prompt:
        """The template filled with the (cleaned, possibly truncated) expression."""
        q = clean_expression(expression)
        room = self.max_length - self.n_special - self._fixed
        text, cut = self._truncate(q, room, lambda s: fill_template(self.template, s, self.mask_token))
        return Prompt(text, expression_truncated=cut)

    def segment_words(self, categories: Sequence[str], painted: Mapping[int, str]) -> str:
        """``"person red person dog"``: category names, colour word before each painted one."""
        words = []
        for i, name in enumerate(categories):
            name = str(name or "").strip()
            if i in painted:
                words.append(painted[i])
            if name:
                words.append(name)
        return " ".join(words)

    def with_segment(self, main: Prompt, categories: Sequence[str], painted: Mapping[int, str]) -> Prompt:
        """``main`` plus the category segment for one painted group (when the option is on)."""
        if not self.category_segment:
            return main
        segment = self.segment_words(categories, painted)
        if not segment:
            return main
        head = f"{main.text} {self.sep_token}"
        room = self.max_length - self.n_special - self.count(head)
        if room <= 0:
            return Prompt(main.text, main.expression_truncated, segment_truncated=True)
        text, cut = self._truncate(segment, room, lambda s: f"{head} {s}" if s else main.text)
        return Prompt(text, main.expression_truncated, segment_truncated=cut)
