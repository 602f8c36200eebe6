"""What differs between transformers 4.57 and 5.x for the generative (image-text-to-text) models.

As in :mod:`cptbench.models.compat`, each difference is detected on the installed classes (their
signatures), never by catching an error and trying something else:

* The key-value cache argument. 5.x model forwards take ``cache=`` (``past_key_values=`` still
  works there but warns that it is deprecated) and return it as ``output.cache``; 4.57 takes and
  returns ``past_key_values``. :func:`cache_argument` names the one the installed forward takes,
  :func:`output_cache` reads the cache a forward returned.
* Qwen2-VL's multimodal RoPE. 5.x computes its 3-D positions only when ``mm_token_type_ids`` (1 at
  image tokens) is passed beside ``image_grid_thw``, and refuses images without it; 4.57 finds the
  image tokens by their id and has no such argument. :func:`takes_argument` tells which.
* Rotary settings in a config. 5.x configs take ``rope_parameters`` (``rope_scaling`` is deprecated);
  4.57 takes ``rope_scaling``. :func:`rope_config_key` names the installed one.
* Tokenizers from a ``tokenizers.Tokenizer`` object: ``PreTrainedTokenizerFast(tokenizer_object=...)``
  in both lines (5.x saves it as ``TokenizersBackend``, which 4.57 cannot read back: a tiny model
  folder is read by the line that wrote it).
"""

from __future__ import annotations

import inspect
from typing import Any


def takes_argument(fn: Any, name: str) -> bool:
    """Whether the callable ``fn`` (a function or a bound ``forward``) has a parameter ``name``."""
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def cache_argument(module: Any) -> str:
    """The keyword a module's ``forward`` takes its key-value cache by: ``cache`` (5.x) or
    ``past_key_values`` (4.57)."""
    return "cache" if takes_argument(module.forward, "cache") else "past_key_values"


def output_cache(output: Any) -> Any:
    """The key-value cache a forward returned (``output.cache`` in 5.x, ``output.past_key_values``
    in 4.57), or None."""
    for name in ("cache", "past_key_values"):
        value = output.get(name) if hasattr(output, "get") else getattr(output, name, None)
        if value is not None:
            return value
    return None


def rope_config_key(config_cls: type) -> str:
    """``rope_parameters`` (5.x) or ``rope_scaling`` (4.57): the key a text config takes its rotary
    settings by."""
    return "rope_parameters" if takes_argument(config_cls.__init__, "rope_parameters") else "rope_scaling"


def fast_tokenizer(tokenizer_object: Any, **special: Any):
    """A transformers tokenizer around a ``tokenizers.Tokenizer`` (special tokens by keyword)."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=tokenizer_object, **special)
