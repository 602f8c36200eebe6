"""Shell completion of task, method and option names (Click's completion protocol).

Enable it once per shell (README "Shell completion")::

    eval "$(_CPTBENCH_COMPLETE=bash_source cptbench)"     # bash; zsh_source / fish_source likewise

Each function here is a ``shell_complete`` callback: ``(ctx, param, incomplete) -> items``. Comma
lists complete their last item (``-m cpt,f<TAB>`` -> ``cpt,ft``, ``cpt,ft-head``). Task and method
names come from the cards and the registry without importing a method; ``--set`` keys need the
methods' option lists, which import the methods named on the command line (all, when none is).
"""

from __future__ import annotations

from typing import Iterable


def _items(names: Iterable[str], incomplete: str, suffix: str = "") -> list:
    from click.shell_completion import CompletionItem

    head, comma, last = incomplete.rpartition(",")
    prefix = head + comma
    return [CompletionItem(prefix + n + suffix) for n in sorted(dict.fromkeys(names)) if n.startswith(last)]


def task_names() -> list[str]:
    """Every task card's name."""
    try:
        from cptbench.tasks.cards import list_tasks

        return list(list_tasks())
    except Exception:
        return []


def method_names() -> list[str]:
    """Every registered method name and alias (nothing is imported)."""
    try:
        from cptbench.methods.registry import method_registry

        reg = method_registry()
        return [n for name in reg.names() for n in (name, *reg.aliases_of(name))]
    except Exception:
        return []


def complete_tasks(ctx, param, incomplete: str) -> list:
    """Task card names."""
    return _items(task_names(), incomplete)


def complete_methods(ctx, param, incomplete: str) -> list:
    """Method names and aliases."""
    return _items(method_names(), incomplete)


def option_keys(methods: Iterable[str] | None = None) -> list[str]:
    """The ``--set`` keys of ``methods`` (every method's when None), unscoped and scoped
    (``alpha``, ``cpt-seg.alpha``)."""
    import dataclasses

    from cptbench.methods.registry import get_method_class, list_methods

    keys: list[str] = []
    for name in methods or list_methods():
        try:
            cls = get_method_class(name)
        except Exception:
            continue
        fields = [f.name for f in dataclasses.fields(cls.Config)] if dataclasses.is_dataclass(cls.Config) else []
        keys += fields + [f"{cls.name}.{f}" for f in fields]
    return keys


def complete_set_keys(ctx, param, incomplete: str) -> list:
    """``--set`` completes ``KEY=`` of the methods given with ``-m`` (every method's otherwise);
    after the ``=`` nothing is guessed."""
    from click.shell_completion import CompletionItem

    if "=" in incomplete:
        return []
    given = ctx.params.get("methods") or ctx.params.get("method")
    from cptbench.core.values import name_list

    names = name_list(given) if given else None
    return [CompletionItem(k + "=", type="plain") for k in sorted(set(option_keys(names))) if k.startswith(incomplete)]


def complete_list_name(ctx, param, incomplete: str) -> list:
    """The name after ``cptbench list options``: a method."""
    return complete_methods(ctx, param, incomplete) if ctx.params.get("what") == "options" else []
