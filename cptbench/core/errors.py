"""The error types the CLI turns into one clear message (never a traceback; ``--debug`` shows it).

Every error a user can cause derives from :class:`CptbenchError` and carries the exit code the CLI
uses: 2 for usage (a bad name, option, card or model), 1 for data (a bad file, record or image).
The message names the file, the record and the fix.
"""

from __future__ import annotations


class CptbenchError(Exception):
    """Base of user-facing errors."""

    exit_code = 1


class UsageError(CptbenchError):
    """A bad command line, option, task card, method config or model choice (exit code 2)."""

    exit_code = 2


class DataError(CptbenchError, ValueError):
    """Input data that cannot be used (exit code 1); the message names the file, the record and the fix."""

    exit_code = 1


class ModelError(UsageError, ValueError):
    """A model that cannot be found, loaded or used as asked."""


class ResultsError(CptbenchError):
    """A results folder that cannot be read or written as needed (exit code 1)."""

    exit_code = 1
