"""YAML reading for task cards, study files and ``--config`` files: safe, and strict.

* Duplicate keys are an error naming both lines (PyYAML keeps the last of two equal keys without a
  word).
* Anchors and aliases (``&a`` / ``*a``) are refused: nothing in these files needs them, and nested
  aliases expand exponentially (a "billion laughs" file of a few lines would take gigabytes).
"""

from __future__ import annotations

from typing import Any


class StrictYamlError(ValueError):
    """A YAML file that parses but breaks one of this module's rules (the message names the line)."""


class DuplicateKeyError(StrictYamlError):
    """A mapping with the same key twice."""


class AliasError(StrictYamlError):
    """A YAML alias (``*name``) or anchor (``&name``)."""


def _loader():
    import yaml

    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.events.AliasEvent):
                event = self.peek_event()
                raise AliasError(f"line {event.start_mark.line + 1}: YAML aliases (*{event.anchor}) are not allowed here; "
                                 f"write the value out")
            event = self.peek_event()
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise AliasError(f"line {event.start_mark.line + 1}: YAML anchors (&{anchor}) are not allowed here; "
                                 f"write the value out")
            return super().compose_node(parent, index)

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
    """Parse YAML text safely; duplicate keys and aliases raise :class:`StrictYamlError`, syntax
    errors ``yaml.YAMLError``."""
    import yaml

    return yaml.load(text, Loader=_loader())  # noqa: S506 - a SafeLoader subclass
