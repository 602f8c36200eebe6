"""``--config FILE``: option defaults from YAML, in one schema with study files.

A file holds command sections (``run: {method: [cpt], shots: [0, 1]}``: each command's option
defaults, Click's ``default_map``), study keys (``tasks``, ``methods``, ``shots``, ``seeds``,
``options``, ... :data:`cptbench.run.sweep.STUDY_KEYS`: the defaults of ``run`` and ``sweep``, and
``results`` / ``data_root`` / ``images`` of every command that takes them), or both (a command's
section wins over the study keys). So a study file is a valid ``--config`` and ``cptbench sweep``
reads a ``--config`` file as a study (:func:`cptbench.run.sweep.load_study`). Every key and value
is checked now, named with its file and key: unknown commands, options or study keys get "did you
mean"; a scalar is accepted where an option repeats.
"""

from __future__ import annotations

import os

import click

#: study key -> the option it sets (its long name without dashes), for ``run`` and ``sweep``
STUDY_TO_OPTION = {"tasks": "task", "methods": "method", "shots": "shots", "seeds": "seeds", "options": "set",
                   "model": "model", "proposals": "proposals", "splits": "split", "limit": "limit",
                   "data_root": "data_root", "images": "images", "device": "device", "batch_size": "batch_size",
                   "skip_bad": "skip_bad", "strict_data": "strict_data", "results": "results", "precision": "precision",
                   "sampler": "sampler", "threads": "threads"}
#: study keys that also set the option of that name in every other command that has one
SHARED_KEYS = ("results", "data_root", "images")
#: the commands a study's keys are defaults for
STUDY_COMMANDS = ("run", "sweep")


def option_names(command: click.Command) -> dict[str, str]:
    """Accepted config keys of a command -> its parameter names: the parameter name itself and each
    long option without dashes (``method`` and ``methods`` for ``-m/--method``)."""
    names: dict[str, str] = {}
    for p in command.params:
        if not p.name or p.name == "help":
            continue
        names[p.name] = p.name
        for opt in getattr(p, "opts", []):
            if opt.startswith("--"):
                names[opt[2:].replace("-", "_")] = p.name
                names[opt[2:]] = p.name
    return names


def check_section(command: click.Command, data, where: str, file: str, ctx, param) -> dict:
    """A command's section, checked: option names known, values converted by the option's type."""
    from cptbench.core.registry import unknown_name_message

    if not isinstance(data, dict):
        raise click.BadParameter(f"{file}: section '{where}' must be a mapping of option names to values", ctx, param)
    if isinstance(command, click.Group):
        out = {}
        for key, value in data.items():
            sub = command.get_command(ctx, key)
            if sub is None:
                raise click.BadParameter(f"{file}: " + unknown_name_message(f"command in section '{where}':", str(key),
                                                                            command.list_commands(ctx)), ctx, param)
            out[key] = check_section(sub, value, f"{where}.{key}", file, ctx, param)
        return out
    names = option_names(command)
    params = {p.name: p for p in command.params}
    out = {}
    for key, value in data.items():
        if key not in names:
            shown = sorted({opt[2:] for p in command.params for opt in getattr(p, "opts", []) if opt.startswith("--")})
            raise click.BadParameter(f"{file}: " + unknown_name_message(f"option in section '{where}':", str(key), shown), ctx, param)
        out[names[key]] = checked_value(params[names[key]], value, f"{file}: section '{where}', key '{key}'", ctx, param)
    return out


def checked_value(option: click.Parameter, value, where: str, ctx, param):
    """A config value converted now by the option's own type (so a bad value is named with its file,
    section and key, not later without them); a scalar is accepted where the option repeats."""
    if getattr(option, "multiple", False) or option.nargs != 1:
        if value is None:
            value = ()
        elif isinstance(value, (str, int, float, bool)):
            value = (value,)
        elif not isinstance(value, (list, tuple)):
            raise click.BadParameter(f"{where}: expected a value or a list of values, got {type(value).__name__}", ctx, param)
        value = tuple(str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v for v in value)
    elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        value = ",".join(str(v) for v in value)  # a list where the option takes one comma list (--seeds)
    try:
        return option.type_cast_value(ctx, value) if value is not None else None
    except click.BadParameter as exc:
        raise click.BadParameter(f"{where}: {exc.message}", ctx, param) from None
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"{where}: {exc}", ctx, param) from None


def study_sections(study: dict, file: str, commands, ctx, param) -> dict[str, dict]:
    """Command sections made of a file's study keys: ``run`` and ``sweep`` get them all (``options``
    as ``--set KEY=VALUE``), other commands the :data:`SHARED_KEYS` they have."""
    if "options" in study:
        opts = study["options"]
        if not isinstance(opts, dict):
            raise click.BadParameter(f"{file}: key 'options' must map option names to values, e.g. {{steps: 100}}", ctx, param)
        study = {**study, "options": [f"{k}={_yaml_scalar(v)}" for k, v in opts.items()]}
    out: dict[str, dict] = {}
    for name, command in commands.items():
        names = option_names(command)
        keys = STUDY_TO_OPTION if name in STUDY_COMMANDS else {k: STUDY_TO_OPTION[k] for k in SHARED_KEYS}
        section = {keys[k]: v for k, v in study.items() if k in keys and keys[k] in names}
        if section:
            out[name] = check_section(command, section, f"{name} (from the study keys)", file, ctx, param)
    return out


def _yaml_scalar(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        return ",".join(map(str, v))
    return str(v)


def load_config(ctx: click.Context, param, value):
    """The ``--config`` callback: read, check and install the file's defaults (module docstring)."""
    if value is None:
        return None
    import yaml

    from cptbench.core.registry import unknown_name_message
    from cptbench.core.yamlio import StrictYamlError, load_yaml
    from cptbench.run.sweep import STUDY_KEYS

    if "=" in str(value) and not os.path.exists(value):
        raise click.BadParameter(f"{value}: --config takes a YAML file; to select runs by a method option use "
                                 f"`cptbench runs --option KEY=VALUE`", ctx, param)
    try:
        with open(value, encoding="utf-8") as f:
            data = load_yaml(f.read()) or {}
    except (OSError, yaml.YAMLError, StrictYamlError) as exc:
        raise click.BadParameter(f"{value}: {exc}", ctx, param) from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value}: expected a mapping of command names (run: {{...}}) or study keys "
                                 f"(tasks, methods, shots, ...) to values", ctx, param)
    group = ctx.command
    names = group.list_commands(ctx)
    study = {k: v for k, v in data.items() if k in STUDY_KEYS and k not in names}
    checked = {}
    if study:
        commands = {n: c for n in names if (c := group.get_command(ctx, n)) is not None and not isinstance(c, click.Group)}
        checked = study_sections(study, value, commands, ctx, param)
    for key, section in data.items():
        if key in study:
            continue
        command = group.get_command(ctx, key) if key in names else None
        if command is None:
            raise click.BadParameter(f"{value}: " + unknown_name_message("command section or study key", str(key),
                                                                         [*names, *STUDY_KEYS]), ctx, param)
        checked[key] = {**checked.get(key, {}), **check_section(command, section, key, value, ctx, param)}
    ctx.default_map = {**(ctx.default_map or {}), **checked}
    ctx.meta["cptbench.config"] = value
    return value
