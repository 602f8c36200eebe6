"""Palettes: named ones, inline ones and palette files, and the one canonical value a config holds.

A palette is an ordered set of colour words with their RGB values (:class:`Palette`). The ``palette``
option of the CPT methods takes four forms:

* a name: ``red`` (the release's RefCOCO colour) or ``release5`` (its five-colour set);
* an inline spec: ``"word:r,g,b;word:r,g,b"``;
* a palette file (``.json``, ``.yaml`` or ``.yml``), e.g. what ``cptbench prompt-search`` writes;
* the canonical form of a palette file, ``"file:<name>@<sha256[:12]>;word:r,g,b;..."``.

**Identity of a palette file.** A run id hashes the method's config (``cptbench.run.plan``), so the
config must hold what decides the result and nothing that does not. The file is read when the
option is parsed (:func:`canonical_palette`, called by the config's own check) and the config keeps
the canonical form instead of the path: the palette's *name* (the file's ``name`` field, else its
file name without the suffix), the first 12 hex digits of the sha256 of the file's bytes, and the
colours themselves. So

* a moved or copied file gives the same config, hence the same run ids (the path never enters);
* an edited file (any byte, even a probability) gives a new hash, hence new runs;
* the canonical value is self-contained: records, sweeps, workers and the report re-parse it
  without the file (:func:`parse_palette` reads the colours from the value itself);
* names and inline specs are kept exactly as given, so every run id made before palette files
  existed is unchanged (``tests/run/golden/run_ids.json``).

**Alpha.** A palette file gives each colour an ``alpha``: the opacity the palette is meant to be
painted with (``prompt-search`` writes the CPT default 127/255; its search renders solid colours,
which no alpha affects). The painting alpha of a run is the method's ``alpha`` option, one for all
colours; a file whose alpha differs from it is refused rather than silently overridden, so a record
never says one alpha and paints another (``--set alpha=<the file's>`` runs it as written).

File format (JSON, or the same structure in YAML)::

    {"format": "cptbench-palette", "version": 1, "name": "mini-vilt-step32",
     "colors": [{"word": "red", "rgb": [224, 0, 32], "alpha": 0.498, "probability": 0.97,
                 "margin": 0.95}, ...],
     "search": {...}}

``colors`` is required (``word`` and ``rgb`` in each entry; ``alpha`` defaults to 127/255;
``probability`` and ``margin`` are the search's figures, kept for the reader); every other key is
the search's provenance and is not interpreted.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Mapping

DEFAULT_ALPHA = 127 / 255
#: suffixes of palette files (``--set palette=FILE``)
FILE_SUFFIXES = (".json", ".yaml", ".yml")
FILE_FORMAT = "cptbench-palette"
FILE_VERSION = 1
#: the sha256 prefix kept in the canonical value
HASH_CHARS = 12
_NAME_RE = re.compile(r"^[A-Za-z0-9._+-]{1,64}$")
_CANONICAL_RE = re.compile(r"^file:([^@;]*)@([0-9a-f]*);(.*)$", re.S)


@dataclass(frozen=True)
class Palette:
    """An ordered set of colour words with their RGB values; a palette read from a file also
    carries the file's name and content hash (module doc)."""

    name: str
    words: tuple[str, ...]
    rgb: tuple[tuple[int, int, int], ...]
    file_name: str = ""
    file_sha256: str = ""

    def __len__(self) -> int:
        return len(self.words)

    @property
    def spec(self) -> str:
        """Canonical ``word:r,g,b;...`` form (what records and cache keys use)."""
        return ";".join(f"{w}:{r},{g},{b}" for w, (r, g, b) in zip(self.words, self.rgb))

    def describe(self) -> dict[str, Any]:
        """The palette for records: its name, each colour word's RGB and, for a palette file, the
        file's name and sha256 prefix."""
        out: dict[str, Any] = {"name": self.name, "colors": {w: list(c) for w, c in zip(self.words, self.rgb)}}
        if self.file_name:
            out["file"] = {"name": self.file_name, "sha256": self.file_sha256}
        return out


NAMED_PALETTES: dict[str, Palette] = {
    # The release's RefCOCO colour set (one colour, one pass per candidate).
    "red": Palette("red", ("red",), ((240, 0, 30),)),
    # The multi-colour set the release uses for other tasks.
    "release5": Palette(
        "release5",
        ("blue", "red", "yellow", "purple", "green"),
        ((0, 10, 255), (240, 0, 30), (255, 255, 25), (155, 50, 210), (0, 255, 0)),
    ),
}


def _choices() -> str:
    return (f"a name ({', '.join(NAMED_PALETTES)}), 'word:r,g,b;word:r,g,b' or a palette file "
            f"({', '.join(FILE_SUFFIXES)}, e.g. written by `cptbench prompt-search`)")


def _parse_inline(spec: str) -> tuple[tuple[str, ...], tuple[tuple[int, int, int], ...]]:
    words, rgbs = [], []
    for part in spec.split(";"):
        if not part.strip():
            continue
        word, _, values = part.partition(":")
        word = word.strip()
        try:
            rgb = tuple(int(v) for v in values.split(","))
        except ValueError:
            rgb = ()
        if not word or len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError(f"palette entry {part.strip()!r}: expected 'word:r,g,b' with r, g, b in 0..255")
        if word.lower() == "none":
            raise ValueError("palette: 'none' is the negative answer word and cannot be a colour")
        if word in words:
            raise ValueError(f"palette: colour word {word!r} appears twice")
        words.append(word)
        rgbs.append(rgb)
    if not words:
        raise ValueError(f"palette {spec!r} has no colours")
    return tuple(words), tuple(rgbs)  # type: ignore[return-value]


def check_word(word: str) -> str:
    """``word`` if it can be a colour word (not ``none``, no separator characters), else ``ValueError``."""
    if word.lower() == "none":
        raise ValueError("palette: 'none' is the negative answer word and cannot be a colour")
    if not word or any(c in word for c in ";:,@") or word != word.strip():
        raise ValueError(f"palette: colour word {word!r} may not be empty or hold ';', ':', ',', '@' or surrounding spaces")
    return word


def parse_palette(spec: str) -> Palette:
    """A named palette (``red``, ``release5``), a custom one (``"word:r,g,b;word:r,g,b"``) or the
    canonical form of a palette file (``"file:<name>@<hash>;word:r,g,b;..."``, read without the
    file). A file path is not parsed here: :func:`canonical_palette` turns it into the canonical form."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"palette must be {_choices()}, got {spec!r}")
    spec = spec.strip()
    if spec in NAMED_PALETTES:
        return NAMED_PALETTES[spec]
    if spec.startswith("file:"):
        m = _CANONICAL_RE.match(spec)
        if not m or not _NAME_RE.match(m.group(1)) or len(m.group(2)) != HASH_CHARS:
            raise ValueError(f"palette {spec[:80]!r}: a palette file's canonical form is "
                             f"'file:<name>@<{HASH_CHARS} hex digits>;word:r,g,b;...'")
        words, rgb = _parse_inline(m.group(3))
        return Palette(f"file:{m.group(1)}@{m.group(2)}", words, rgb, m.group(1), m.group(2))
    if is_palette_file(spec):
        raise ValueError(f"palette file {spec!r}: files are read when the option is parsed (canonical_palette)")
    if ":" not in spec:
        raise ValueError(f"unknown palette {spec!r}; choose {_choices()} "
                         f"(e.g. 'red:240,0,30;blue:0,10,255')")
    words, rgb = _parse_inline(spec)
    return Palette("custom", words, rgb)


def is_palette_file(value: str) -> bool:
    """Whether a ``palette`` option value names a file (by its suffix) rather than a palette."""
    return isinstance(value, str) and not value.startswith("file:") and value.strip().lower().endswith(FILE_SUFFIXES)


@dataclass(frozen=True)
class PaletteFile:
    """A palette file as read: its :class:`Palette`, the painting alpha, the search's figures per
    word (``probability``, ``margin``; ``None`` when absent) and the whole document."""

    palette: Palette
    alpha: float
    probability: tuple[float | None, ...]
    margin: tuple[float | None, ...]
    document: Mapping[str, Any]

    @property
    def canonical(self) -> str:
        """The config value of this file (module doc): ``file:<name>@<hash>;word:r,g,b;...``."""
        return f"file:{self.palette.file_name}@{self.palette.file_sha256};{self.palette.spec}"


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{what} must be a finite number, got {value!r}")
    return float(value)


def _file_name(path: Path, doc: Mapping[str, Any]) -> str:
    name = doc.get("name")
    if name is None:
        name = re.sub(r"[^A-Za-z0-9._+-]", "-", path.stem)[:64] or "palette"
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ValueError(f"'name' must be 1-64 characters of letters, digits and . _ + -, got {name!r}")
    return name


def _load_document(path: Path, data: bytes) -> Any:
    text = data.decode("utf-8")
    if path.suffix.lower() == ".json":
        def refuse(token):
            raise ValueError(f"non-finite number {token} is not allowed")
        return json.loads(text, parse_constant=refuse)
    from cptbench.core.yamlio import load_yaml

    return load_yaml(text)


def read_palette_file(path: str | Path) -> PaletteFile:
    """Read and check a palette file (module doc); every problem is a ``ValueError`` naming the file
    and the entry."""
    p = Path(path).expanduser()
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise ValueError(f"palette file {path} does not exist (palette names: {', '.join(NAMED_PALETTES)}; "
                         f"`cptbench prompt-search -o FILE` writes one)") from None
    except OSError as exc:
        raise ValueError(f"palette file {path} cannot be read: {exc}") from None
    try:
        doc = _load_document(p, data)
        return _from_document(p, doc, hashlib.sha256(data).hexdigest()[:HASH_CHARS])
    except (ValueError, UnicodeDecodeError) as exc:  # JSON, YAML and our own checks
        raise ValueError(f"palette file {path}: {exc}") from None


def _from_document(path: Path, doc: Any, sha: str) -> PaletteFile:
    if not isinstance(doc, dict):
        raise ValueError("expected a mapping with a 'colors' list")
    if doc.get("format", FILE_FORMAT) != FILE_FORMAT:
        raise ValueError(f"'format' is {doc.get('format')!r}, not {FILE_FORMAT!r}")
    if doc.get("version", FILE_VERSION) != FILE_VERSION:
        raise ValueError(f"'version' {doc.get('version')!r} is not supported (this cptbench reads version {FILE_VERSION})")
    colors = doc.get("colors")
    if not isinstance(colors, list) or not colors:
        raise ValueError("'colors' must be a non-empty list of {word, rgb, alpha, ...} entries")
    words, rgbs, alphas, probs, margins = [], [], [], [], []
    for i, entry in enumerate(colors):
        where = f"colors[{i}]"
        if not isinstance(entry, dict) or "word" not in entry or "rgb" not in entry:
            raise ValueError(f"{where} must be a mapping with 'word' and 'rgb'")
        word = entry["word"]
        if not isinstance(word, str):
            raise ValueError(f"{where}: 'word' must be a string, got {word!r}")
        check_word(word)
        if word in words:
            raise ValueError(f"{where}: colour word {word!r} appears twice")
        rgb = entry["rgb"]
        if not isinstance(rgb, list) or len(rgb) != 3 or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in rgb):
            raise ValueError(f"{where} ({word}): 'rgb' must be three integers in 0..255, got {rgb!r}")
        alpha = _number(entry.get("alpha", DEFAULT_ALPHA), f"{where} ({word}): 'alpha'")
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"{where} ({word}): 'alpha' must be in (0, 1], got {alpha!r}")
        words.append(word)
        rgbs.append(tuple(rgb))
        alphas.append(alpha)
        probs.append(None if entry.get("probability") is None else _number(entry["probability"], f"{where}: 'probability'"))
        margins.append(None if entry.get("margin") is None else _number(entry["margin"], f"{where}: 'margin'"))
    if max(alphas) - min(alphas) > 1e-9:
        raise ValueError(f"every colour must have the same 'alpha' (CPT paints a run at one alpha), got "
                         f"{dict(zip(words, alphas))}")
    name = _file_name(path, doc)
    palette = Palette(f"file:{name}@{sha}", tuple(words), tuple(rgbs), name, sha)  # type: ignore[arg-type]
    return PaletteFile(palette, alphas[0], tuple(probs), tuple(margins), doc)


def canonical_palette(value: str, alpha: float | None = None) -> str:
    """The value a config keeps for a ``palette`` option (module doc): a palette file's canonical
    form when ``value`` names a file (read now; with ``alpha``, the run's painting alpha, which must
    equal the file's), else ``value`` unchanged after checking it parses. A ``pathlib.Path`` is a file."""
    if isinstance(value, PurePath):
        value = str(value)
    if is_palette_file(value):
        pf = read_palette_file(value.strip())
        if alpha is not None and abs(float(alpha) - pf.alpha) > 1e-9:
            raise ValueError(f"palette file {value} is painted at alpha {pf.alpha:.6g} but the run's alpha is "
                             f"{float(alpha):.6g}; add --set alpha={pf.alpha!r} (or edit the file's alpha)")
        return pf.canonical
    parse_palette(value)
    return value


def palette_document(name: str, entries: list[Mapping[str, Any]], **provenance: Any) -> dict[str, Any]:
    """A palette file's document: ``name`` (checked), the colour ``entries`` (``word``, ``rgb``,
    ``alpha``, ``probability``, ``margin``) and the search's provenance keys."""
    if not _NAME_RE.match(name):
        raise ValueError(f"palette name must be 1-64 characters of letters, digits and . _ + -, got {name!r}")
    return {"format": FILE_FORMAT, "version": FILE_VERSION, "name": name, "colors": [dict(e) for e in entries],
            **provenance}


def dump_palette_document(doc: Mapping[str, Any], path: str | Path) -> bytes:
    """The bytes of ``doc`` in the format of ``path``'s suffix (JSON, or YAML for .yaml / .yml);
    the document is checked first by reading it back as a palette file would be."""
    p = Path(path)
    if p.suffix.lower() not in FILE_SUFFIXES:
        raise ValueError(f"palette file {path}: the name must end in {', '.join(FILE_SUFFIXES)}")
    if p.suffix.lower() == ".json":
        data = (json.dumps(doc, indent=1, allow_nan=False) + "\n").encode()
    else:
        import yaml

        data = yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None, width=100).encode()
    _from_document(p, _load_document(p, data), "0" * HASH_CHARS)
    return data
