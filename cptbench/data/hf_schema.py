"""The column layouts of the known Hugging Face copies, with the Arrow types the published files
have, checked before a row is converted: a column missing or of another type (``bbox`` as strings,
``sent_ids`` gone) is refused naming the file, the column, both types and the fix.

Types as the datasets' cards give them (docs/data.md): jxu124 ``sent_ids`` list<int64>, ``ann_id`` /
``ref_id`` / ``image_id`` / ``category_id`` int64, ``sentences`` list<struct{raw, sent, sent_id int64,
tokens list<string>}> (a string in older revisions), ``raw_anns`` / ``raw_image_info`` JSON strings
(``anns`` / ``image_info`` in older revisions), ``bbox`` list<float64>; lmms-lab ``question_id``
string, ``image`` struct{bytes, path}, ``answer`` list<string>, ``segmentation`` / ``bbox``
list<float32>, ``iscrowd`` int8, ``file_name`` string. Any integer or float width is accepted where
the card has one (a re-saved copy may widen them); strings where numbers belong are not.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from cptbench.core.errors import DataError
from cptbench.data.hf_inputs import InputFile

#: the columns that tell a layout (a file with all of them has that layout)
LAYOUT_COLUMNS = {
    "jxu124": {"ref_id", "ann_id", "image_id", "sentences"},
    "lmms-lab": {"question_id", "answer", "bbox", "file_name"},
}


def _types():
    import pyarrow.types as t

    return t


def is_int(tp) -> bool:
    """An Arrow integer type."""
    return _types().is_integer(tp)


def is_number(tp) -> bool:
    """An Arrow integer or floating-point type."""
    t = _types()
    return t.is_integer(tp) or t.is_floating(tp)


def is_string(tp) -> bool:
    """An Arrow string type (plain or large)."""
    t = _types()
    return t.is_string(tp) or t.is_large_string(tp)


def is_list_of(pred: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A check for an Arrow list (plain, large or fixed-size) whose items pass ``pred``."""
    def check(tp) -> bool:
        t = _types()
        return (t.is_list(tp) or t.is_large_list(tp) or t.is_fixed_size_list(tp)) and pred(tp.value_type)
    return check


def is_sentences(tp) -> bool:
    """jxu124's ``sentences``: list<struct{sent_id int, sent string, ...}>, or a string (older revisions)."""
    t = _types()
    if is_string(tp):
        return True
    if not is_list_of(t.is_struct)(tp):
        return False
    fields = {f.name: f.type for f in tp.value_type}
    return "sent_id" in fields and is_int(fields["sent_id"]) and "sent" in fields and is_string(fields["sent"])


def is_image(tp) -> bool:
    """An embedded image: struct{bytes binary, path string} (the ``datasets`` Image feature) or binary."""
    t = _types()
    if t.is_binary(tp) or t.is_large_binary(tp):
        return True
    return t.is_struct(tp) and "bytes" in {f.name for f in tp}


#: per layout: (column or alternatives, type check, what the card has there); optional columns last
_SPEC = {
    "jxu124": [
        (("ref_id",), is_int, "int64"), (("ann_id",), is_int, "int64"), (("image_id",), is_int, "int64"),
        (("sent_ids",), is_list_of(is_int), "list<int64>"),
        (("sentences",), is_sentences, "list<struct{raw, sent, sent_id int64, tokens list<string>}> (or a JSON string)"),
        (("category_id",), is_int, "int64"), (("file_name",), is_string, "string"),
        (("raw_anns", "anns"), is_string, "a JSON string of the COCO annotation"),
        (("raw_image_info", "image_info"), is_string, "a JSON string of the COCO image record"),
        (("bbox",), is_list_of(is_number), "list<float64> ([x1, y1, x2, y2] pixels)"),
    ],
    "lmms-lab": [
        (("question_id",), lambda tp: is_string(tp) or is_int(tp), "string"),
        (("image",), is_image, "struct{bytes binary, path string} (an embedded image)"),
        (("answer",), is_list_of(is_string), "list<string> (the expressions)"),
        (("bbox",), is_list_of(is_number), "list<float32> ([x, y, w, h] pixels)"),
        (("file_name",), is_string, "string (COCO_train2014_<12 digits>_<n>.jpg)"),
    ],
}
_OPTIONAL = {
    "jxu124": [(("split",), is_string, "string")],
    "lmms-lab": [(("segmentation",), is_list_of(is_number), "list<float32> (one flat polygon)"),
                 (("iscrowd",), is_int, "int8")],
}


def describe(schema) -> str:
    """The columns of a schema with their Arrow types, for messages."""
    return ", ".join(f"{f.name} ({f.type})" for f in schema)


def detect_layout(files: Sequence[InputFile]) -> str:
    """The column layout every file has: ``jxu124``, ``lmms-lab`` or ``per-expression`` (none of the
    two: its columns are then found by :mod:`cptbench.data.expr_inputs`); files mixing layouts are
    refused."""
    layouts = {}
    for f in files:
        got = [name for name, cols in LAYOUT_COLUMNS.items() if cols <= set(f.columns)]
        layouts.setdefault(got[0] if got else "per-expression", f)
    if len(layouts) > 1:
        named = "; ".join(f"{k}: {v.path}" for k, v in sorted(layouts.items()))
        raise DataError(f"the input mixes layouts ({named}); import one Hugging Face dataset at a time.")
    return next(iter(layouts))


def check_columns(f: InputFile, layout: str) -> None:
    """Refuse (:class:`DataError`) a file of ``layout`` that lacks a column the import reads or has one of
    another type than the published files."""
    fix = (f"the file is not the {layout} copy as published (or was re-saved with other types): download it again "
           f"from the hub")
    types = {fld.name: fld.type for fld in f.schema}
    for names, check, want in _SPEC.get(layout, []):
        present = [n for n in names if n in types]
        if not present:
            raise DataError(f"{f.path}: the {layout} layout needs column {' or '.join(map(repr, names))} ({want}), which "
                            f"this file lacks; it has: {describe(f.schema)}. {fix[0].upper() + fix[1:]}.")
        if not check(types[present[0]]):
            raise DataError(f"{f.path}: column {present[0]!r} is {types[present[0]]}, but the {layout} layout has {want} "
                            f"there; {fix}.")
    for names, check, want in _OPTIONAL.get(layout, []):
        if names[0] in types and not check(types[names[0]]):
            raise DataError(f"{f.path}: column {names[0]!r} is {types[names[0]]}, but the {layout} layout has {want} "
                            f"there; {fix}.")
