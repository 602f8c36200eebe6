"""Questions and conversations of the generative prompting methods: the expression put into the
question template, the in-context turns that fit the context, and expressions cut to fit.

A prompt is the in-context turns (the training expressions' drawn images, questions and answers,
in the k-shot draw's order) followed by the asking turn. It must leave room for the longest answer
within ``budget`` tokens (the model's context, or the ``max_context`` option): the most leading
in-context turns that fit are kept (found by bisection: a prompt's length grows with its turns) and
the rest are cut for that expression (counted). An asking turn that does not fit alone has its
expression cut word by word from the end (counted); an image that does not fit alone is refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from cptbench.models.generative import GenerativeAdapter, PreparedImage, Prompt, Turn

_SPACES = re.compile(r"\s+")


def clean_expression(expression: str) -> str:
    """The expression as it goes into a question: whitespace collapsed, stripped, trailing dots
    removed (the question supplies its own punctuation)."""
    return _SPACES.sub(" ", str(expression)).strip().rstrip(".").strip()


def ask(question: str, expression: str) -> str:
    """The question text with the cleaned expression filled in."""
    return question.replace("{expression}", clean_expression(expression))


@dataclass(frozen=True)
class Fitted:
    """A prompt that fits the budget, with how many in-context turns it shows and cut, and whether
    the expression was cut."""

    prompt: Prompt
    shown: int
    cut: int
    truncated: bool


def fit_prompt(adapter: GenerativeAdapter, context: Sequence[Turn], image: PreparedImage, question: str,
               expression: str, budget: int, reserve: int) -> Fitted:
    """The longest prompt of ``context[:m]`` and the asking turn within ``budget - reserve`` tokens
    (module doc); ``reserve`` is the longest answer's length."""
    limit = budget - reserve
    words = clean_expression(expression).split(" ")
    truncated = False
    query = Turn(image, ask(question, " ".join(words)))
    alone = adapter.encode([query])
    while len(alone) > limit and len(words) > 1:
        words = words[:-1]
        truncated = True
        query = Turn(image, ask(question, " ".join(words)))
        alone = adapter.encode([query])
    if len(alone) > limit:
        raise ValueError(f"model {adapter.model_name!r}: one image and its question take {len(alone)} tokens, more than "
                         f"the {limit} the context allows ({budget} minus {reserve} for the answer); raise max_context "
                         f"or use smaller images")
    full = adapter.encode([*context, query]) if context else alone
    if len(full) <= limit:
        return Fitted(full, len(context), 0, truncated)
    lo, hi, best = 0, len(context) - 1, alone  # context[:lo] fits, context[:hi + 1] does not
    while lo < hi:
        mid = (lo + hi + 1) // 2
        trial = adapter.encode([*context[:mid], query])
        if len(trial) <= limit:
            lo, best = mid, trial
        else:
            hi = mid - 1
    return Fitted(best, lo, len(context) - lo, truncated)
