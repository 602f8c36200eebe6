"""YAML reading for task cards and ``--config`` files: safe, and strict about duplicate keys
(PyYAML keeps the last of two equal keys without a word; here they are an error naming the line)."""

from __future__ import annotations

from typing import Any


class DuplicateKeyError(ValueError):
    pass


def _loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                continue
            if key in seen:
                raise DuplicateKeyError(f"key {key!r} appears twice in one mapping (lines {seen[key] + 1} and "
                                        f"{key_node.start_mark.line + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return StrictLoader


def load_yaml(text: str) -> Any:
    """Parse YAML text safely; duplicate keys raise :class:`DuplicateKeyError`, syntax errors
    ``yaml.YAMLError``."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
