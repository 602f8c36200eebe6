"""CPT prompt snapshots: the three templates, clean-up, truncation that keeps [MASK], the category segment."""

from __future__ import annotations

import pytest

from cptbench.cpt.prompts import PromptBuilder, clean_expression, template_text
from cpt_fakes import WordTokenizer
from cptbench.models.base import VLAdapter


class TextOnly(VLAdapter):
    """Just the text side of an adapter."""

    model = None
    hidden_size = 4
    model_name = "text-only"

    def __init__(self, tokenizer, max_text_length):
        self.tokenizer = tokenizer
        self.max_text_length = max_text_length

    def prepare_image(self, image):  # pragma: no cover
        raise NotImplementedError

    def collate(self, prepared):  # pragma: no cover
        raise NotImplementedError

    def mask_logits(self, images, texts):  # pragma: no cover
        raise NotImplementedError

    def region_features(self, images, texts, image_sizes):  # pragma: no cover
        raise NotImplementedError


def bert_adapter(max_len):
    from cptbench.models.compat import wordpiece_tokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "man", "is", "in", "color", ".", "red",
             "none", "left", "straw", "##berry", "on", "shirt", "person", "dog"]
    tok = wordpiece_tokenizer({w: i for i, w in enumerate(words)}, do_lower_case=True)
    return TextOnly(tok, max_len)


def word_adapter(max_len):
    return TextOnly(WordTokenizer(), max_len)


def test_clean_expression_and_template_texts():
    assert clean_expression("  The man. on the left .  ") == "The man on the left"
    assert clean_expression("a.b.c") == "abc"
    assert template_text(1) == "<q> is [MASK]."
    assert template_text(2) == "<q> is [MASK] color."
    assert template_text(3) == "<q> is in [MASK] color."
    assert template_text(3, "<mask>") == "<q> is in <mask> color."


LONG = "the man on the left next to the red car."

SNAPSHOTS = {
    # (template, expression) -> (text, truncated); word tokenizer, 12 tokens incl. [CLS] and [SEP]
    (1, "the man on the left."): ("the man on the left is [MASK].", False),
    (2, "the man on the left."): ("the man on the left is [MASK] color.", False),
    (3, "the man on the left."): ("the man on the left is in [MASK] color.", False),
    (3, "  Man in red shirt .  "): ("Man in red shirt is in [MASK] color.", False),
    (3, "man, left"): ("man, left is in [MASK] color.", False),
    (1, LONG): ("the man on the left next to is [MASK].", True),
    (2, LONG): ("the man on the left next is [MASK] color.", True),
    (3, LONG): ("the man on the left is in [MASK] color.", True),
    (3, ""): ("is in [MASK] color.", False),
}


@pytest.mark.parametrize("key", list(SNAPSHOTS))
def test_prompt_snapshots_word_tokenizer(key):
    template, expression = key
    adapter = word_adapter(12)
    prompt = PromptBuilder(adapter, template).main(expression)
    assert (prompt.text, prompt.expression_truncated) == SNAPSHOTS[key]
    assert adapter.count_tokens(prompt.text) + 2 <= 12 and prompt.text.count("[MASK]") == 1


def test_truncation_with_a_fast_wordpiece_tokenizer_cuts_the_original_string():
    adapter = bert_adapter(12)
    b = PromptBuilder(adapter, 3)
    assert b.main("The strawberry man on the left.").text == "The strawberry man on is in [MASK] color."
    # a word split into pieces is cut between its pieces, from the original characters
    b9 = PromptBuilder(bert_adapter(9), 3)
    p = b9.main("The strawberry man on the left.")
    assert (p.text, p.expression_truncated) == ("The straw is in [MASK] color.", True)
    assert adapter.count_tokens(p.text) + 2 == 9
    # no room for the expression at all: the template alone
    assert PromptBuilder(bert_adapter(7), 3).main("the man").text == "is in [MASK] color."
    with pytest.raises(ValueError, match="does not fit"):
        PromptBuilder(bert_adapter(6), 3)


def test_category_segment_text_and_truncation():
    adapter = word_adapter(20)
    b = PromptBuilder(adapter, 3, category_segment=True)
    main = b.main("the dog.")
    cats = ("person", "person", "dog")
    one = b.with_segment(main, cats, {1: "red"})
    assert one.text == "the dog is in [MASK] color. [SEP] person red person dog"
    assert not one.segment_truncated
    many = b.with_segment(main, cats, {0: "blue", 1: "red"})
    assert many.text == "the dog is in [MASK] color. [SEP] blue person red person dog"
    # the segment gets what the prompt leaves: 20 - 2 - 8 ("the dog is in [MASK] color . [SEP]") = 10
    long_cats = ("person",) * 12
    cut = b.with_segment(main, long_cats, {0: "red"})
    assert cut.segment_truncated and cut.text == "the dog is in [MASK] color. [SEP] " + " ".join(["red"] + ["person"] * 9)
    assert adapter.count_tokens(cut.text) + 2 == 20
    # option off: the segment is not added
    plain = PromptBuilder(adapter, 3)
    assert plain.with_segment(plain.main("the dog."), cats, {1: "red"}).text == "the dog is in [MASK] color."
