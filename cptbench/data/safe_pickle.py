"""A pickle reader that admits plain data only.

``refs(<splitBy>).p`` files are pickles, and unpickling can run arbitrary code. This reader accepts
only the builtin containers and scalars a refs file holds (dict, list, tuple, set, str, bytes, int,
float, bool, None); any other global (a class, a function such as ``os.system``) is refused.

The published refs files are Python 2 pickles (protocol 2) whose text is Python 2 ``str``, i.e.
bytes: they are decoded as UTF-8 (the whole file as Latin-1 when some string is not valid UTF-8),
so non-ASCII text comes out as written rather than as Latin-1 mojibake.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from cptbench.core.errors import DataError

_ALLOWED = {
    ("builtins", "dict"), ("builtins", "list"), ("builtins", "tuple"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "str"), ("builtins", "bytes"), ("builtins", "int"),
    ("builtins", "float"), ("builtins", "bool"), ("builtins", "complex"),
    # Python 2 pickles (the original refer files) name these modules
    ("__builtin__", "dict"), ("__builtin__", "list"), ("__builtin__", "tuple"), ("__builtin__", "set"),
    ("__builtin__", "unicode"), ("__builtin__", "str"), ("__builtin__", "int"), ("__builtin__", "long"),
    ("__builtin__", "float"), ("__builtin__", "bool"),
}


class UnsafePickleError(DataError, pickle.UnpicklingError):
    """The pickle references something other than plain containers and scalars."""


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str, encoding: str = "utf-8"):
        super().__init__(file, encoding=encoding)  # how Python 2 str (bytes) become text
        self._source = source

    def find_class(self, module: str, name: str):
        """Only the allowed builtins (Python 2 names mapped to Python 3's); anything else raises
        :class:`UnsafePickleError`."""
        if (module, name) in _ALLOWED:
            if module == "__builtin__":
                module = "builtins"
                name = {"unicode": "str", "long": "int"}.get(name, name)
            return super().find_class(module, name)
        raise UnsafePickleError(
            f"{self._source}: refused to load: the pickle references {module}.{name}, and only plain "
            f"containers and scalars are allowed (a refs file holds nothing else). If this file came from "
            f"an untrusted source, delete it; otherwise re-export it as plain lists and dicts."
        )

    def persistent_load(self, pid):
        """Refused: a refs file holds no persistent ids."""
        raise UnsafePickleError(f"{self._source}: refused to load: persistent ids are not allowed")


def load_plain_pickle(path: str | Path) -> Any:
    """The plain data pickled in ``path``; raises :class:`UnsafePickleError` for anything else or a damaged
    pickle, :class:`DataError` when the file cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the refs file ({exc.strerror or exc}).") from exc
    try:
        try:
            return _PlainUnpickler(io.BytesIO(data), str(path)).load()
        except UnicodeDecodeError:  # a Python 2 str that is not UTF-8: every byte a character
            return _PlainUnpickler(io.BytesIO(data), str(path), "latin-1").load()
    except UnsafePickleError:
        raise
    except Exception as exc:  # truncated or corrupt file
        raise UnsafePickleError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc}); re-download the file.") from exc
