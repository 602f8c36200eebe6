"""What a method is and which options it takes, read from the method itself (``cptbench list``).

Nothing here is a hand-kept table: a method's one-line description is the first line of its class
docstring; its ``--set`` options are the fields of its ``Config`` dataclass with their annotated
type and default; an option's range is read from the config's own validation (each field is given
a value no check accepts, and the message the check raises, ``alpha must be in (0, 1], got ...``,
says what it accepts); its description is the comment on the field's line (or the ``#:`` lines
above it) and the explanation in the check's message. The default's source is the method or, for
a task whose card sets ``method_defaults``, that card.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import re
import tokenize
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class OptionInfo:
    """One ``--set`` option of a method: key, type, default (and where it comes from), the values
    the method accepts and what the option does."""

    key: str
    type: str
    default: Any
    range: str
    source: str
    help: str

    def to_json(self) -> dict[str, Any]:
        """The option as a JSON-ready dict."""
        return dataclasses.asdict(self)


def summary(cls: type) -> str:
    """The first sentence line of a method's class docstring, without reST markup or pointers to
    other documents (``(module doc)``)."""
    doc = inspect.getdoc(cls) or ""
    line = doc.strip().splitlines()[0] if doc.strip() else ""
    line = line.replace("``", "")
    return re.sub(r"\s*\((?:module doc|docs/[^)]*)\)", "", line).strip()


class _Invalid:
    """A value no option accepts (its repr appears in the check's message)."""

    def __repr__(self) -> str:
        return "<invalid>"


def _check_message(config_cls: type, name: str) -> str:
    try:
        config_cls(**{name: _Invalid()})
    except Exception as exc:  # the check's own words; anything else says nothing about the range
        return str(exc)
    return ""


def _split_range(name: str, message: str) -> tuple[str, str]:
    """``(range, explanation)`` from ``"<name> must be <range> (<explanation>), got ..."``."""
    m = re.search(rf"\b{re.escape(name)} (?:must be|expects) (.*?)(?:, got .*)?$", message, flags=re.S)
    if not m:
        return "", ""
    text = " ".join(m.group(1).split())
    depth, cut = 0, None
    for i, ch in enumerate(text):  # the first top-level " (...)" at the end is the explanation
        if ch == "(" and depth == 0 and i > 0 and text[i - 1] == " " and text.endswith(")"):
            cut = i
            break
        depth += ch in "([" and 1 or (ch in ")]" and -1) or 0
    if cut is None:
        return text, ""
    return text[:cut].strip(), text[cut + 1:-1].strip()


def _field_comments(config_cls: type) -> dict[str, str]:
    """Per field name: the comment on its line, else the ``#:`` comment lines right above it."""
    try:
        source = inspect.getsource(config_cls)
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    comments: dict[int, str] = {}
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.COMMENT:
                comments[tok.start[0]] = tok.string.lstrip("#:").strip()
    except (tokenize.TokenError, IndentationError):
        return {}
    out: dict[str, str] = {}
    names = {f.name for f in dataclasses.fields(config_cls)}
    for i, line in enumerate(lines, start=1):
        m = re.match(r"\s+(\w+)\s*:", line)
        if not m or m.group(1) not in names or m.group(1) in out:
            continue
        text = comments.get(i, "") if "#" in line else ""
        above, j = [], i - 1
        while not text and j in comments and lines[j - 1].strip().startswith("#:"):
            above.insert(0, comments[j])
            j -= 1
        out[m.group(1)] = text or " ".join(above)
    return out


def _words(text: str) -> set[str]:
    return set(re.findall(r"[\w'.-]+", text.lower()))


def _merge(comment: str, why: str, rng: str = "") -> str:
    """One description from the field's comment and the check's explanation: a comment that lists
    the values (``release | cover``, or names every choice of the range) gives way to the
    explanation; two texts that say mostly the same thing give the longer one."""
    choices = [c.strip() for c in rng[len("one of "):].split(",")] if rng.startswith("one of ") else []
    if why and (" | " in comment or (choices and all(c in comment for c in choices))):
        comment = ""
    if not comment or not why:
        return comment or why
    a, b = _words(comment), _words(why)
    if len(a & b) / max(1, len(a | b)) > 0.5:
        return max(comment, why, key=len)
    return f"{comment}; {why}"


def _type_name(f: dataclasses.Field) -> str:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return str(t).replace("typing.", "")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def describe_options(cls: type, task=None) -> list[OptionInfo]:
    """The ``--set`` options of method ``cls`` (module docstring); ``task`` (a
    :class:`~cptbench.tasks.spec.TaskSpec`): defaults as that card sets them, its name as their source."""
    config_cls = getattr(cls, "Config", None)
    if config_cls is None or not dataclasses.is_dataclass(config_cls):
        return []
    card = {}
    if task is not None:
        from cptbench.methods.options import card_method_defaults

        card = card_method_defaults(task).get(cls.name, {})
    comments = _field_comments(config_cls)
    out = []
    for f in dataclasses.fields(config_cls):
        rng, why = _split_range(f.name, _check_message(config_cls, f.name))
        default, source = _default(f), cls.name
        if f.name in card:
            default, source = card[f.name], f"card {task.name}"
        text = _merge(comments.get(f.name, ""), why, rng)
        out.append(OptionInfo(f.name, _type_name(f), _plain(default), rng, source, text))
    return out


def _plain(v: Any) -> Any:
    if isinstance(v, tuple):
        return list(v)
    if hasattr(v, "item") and callable(v.item):  # numpy scalars
        return v.item()
    return v
