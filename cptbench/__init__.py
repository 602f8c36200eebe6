"""cptbench: a benchmark harness for few-shot visual grounding with colorful prompt tuning.

The public Python API (imported lazily, so ``import cptbench`` stays light)::

    cptbench.evaluate(tasks=..., methods=..., shots=..., seeds=..., ...)  -> list of RunRecord
    cptbench.records_frame(records)       -> pandas DataFrame, one row per run
    cptbench.load_records(results)        -> the records of a results folder
    cptbench.list_tasks(), cptbench.get_task(name)
    cptbench.list_methods(), cptbench.create_method(name, options, context)

The library never prints; the command-line interface (``cptbench.cli``) owns all output. Heavy
dependencies (torch, transformers) are imported only inside the code that needs them.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "evaluate": "cptbench.api", "records_frame": "cptbench.api", "load_records": "cptbench.api",
    "list_tasks": "cptbench.tasks", "get_task": "cptbench.tasks",
    "list_methods": "cptbench.methods.registry", "create_method": "cptbench.methods.registry",
    "RunRecord": "cptbench.results.records", "Method": "cptbench.methods.base",
    "MethodContext": "cptbench.methods.base",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cptbench' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
