"""Backbone adapters: one small interface over hub vision-language models (ViLT, FLAVA, BridgeTower).

Import-light: torch and transformers load only when a model is loaded or built.

* :func:`load_adapter` (``cptbench.models.loading``): hub id / local folder / ``bundled:<name>``
  -> a :class:`~cptbench.models.base.VLAdapter` chosen by the config's ``model_type``.
* :func:`build_tiny_model` (``cptbench.models.tiny``): a tiny random model folder for tests.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load_adapter", "build_tiny_model"]


def __getattr__(name: str) -> Any:
    if name == "load_adapter":
        from cptbench.models.loading import load_adapter

        return load_adapter
    if name == "build_tiny_model":
        from cptbench.models.tiny import build_tiny_model

        return build_tiny_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
