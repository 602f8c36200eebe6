"""``cptbench``: the entry point. Subcommands live in their own modules and load on demand, so
``cptbench --help`` never imports torch.

The one error boundary of the CLI is :meth:`LazyGroup.invoke`: every exception that reaches it
becomes one message and an exit code (2 usage, 1 data; :func:`~cptbench.cli.state.describe_error`),
never a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import click

from cptbench.cli.lazy import LazyCommands
from cptbench.cli.state import AppState, describe_error

#: command -> (module, attribute); a module that is not installed is simply not listed
_COMMANDS = {
    "run": ("cptbench.cli.run_cmd", "run"),
    "sweep": ("cptbench.cli.sweep_cmd", "sweep"),
    "leaderboard": ("cptbench.cli.leaderboard_cmd", "leaderboard"),
    "compare": ("cptbench.cli.compare_cmd", "compare"),
    "plot": ("cptbench.cli.plot_cmd", "plot"),
    "report": ("cptbench.cli.report_cmd", "report"),
    "errors": ("cptbench.cli.errors_cmd", "errors"),
    "runs": ("cptbench.cli.runs_cmd", "runs"),
    "list": ("cptbench.cli.list_cmd", "list_"),
    "data": ("cptbench.cli.data_cmd", "data"),
    "show": ("cptbench.cli.show_cmd", "show"),
    "bench": ("cptbench.cli.bench_cmd", "bench"),
    "pretrain-mini": ("cptbench.cli.pretrain_cmd", "pretrain_mini"),
    "prompt-search": ("cptbench.cli.prompt_search_cmd", "prompt_search"),
}


class LazyGroup(LazyCommands):
    """The root group: lazy subcommands plus the CLI's one error boundary."""

    def invoke(self, ctx):
        """Run the command; Ctrl-C and any exception Click does not handle become one message and
        an exit code (:func:`~cptbench.cli.state.describe_error`; ``--debug`` re-raises instead)."""
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("\ninterrupted: finished runs and saved predictions are kept; run the same command again to resume.", err=True)
            ctx.exit(130)
        except Exception as exc:  # the error boundary: one message, no traceback
            state = ctx.obj if isinstance(ctx.obj, AppState) else None
            if state is not None and state.debug:
                raise
            code, message = describe_error(exc)
            config = ctx.meta.get("cptbench.config")
            if config and code == 2:  # a usage error may come from a value the config file gave
                message += f" (option defaults were read from --config {config}: check it too)"
            click.echo(f"Error: {message}", err=True)
            ctx.exit(code)


def _option_names(command: click.Command) -> dict[str, str]:
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


def _check_section(command: click.Command, data, where: str, file: str, ctx, param) -> dict:
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
            out[key] = _check_section(sub, value, f"{where}.{key}", file, ctx, param)
        return out
    names = _option_names(command)
    params = {p.name: p for p in command.params}
    out = {}
    for key, value in data.items():
        if key not in names:
            shown = sorted({opt[2:] for p in command.params for opt in getattr(p, "opts", []) if opt.startswith("--")})
            raise click.BadParameter(f"{file}: " + unknown_name_message(f"option in section '{where}':", str(key), shown), ctx, param)
        out[names[key]] = _checked_value(params[names[key]], value, f"{file}: section '{where}', key '{key}'", ctx, param)
    return out


def _checked_value(option: click.Parameter, value, where: str, ctx, param):
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


def _load_config(ctx: click.Context, param, value):
    if value is None:
        return None
    import yaml

    from cptbench.core.registry import unknown_name_message
    from cptbench.core.yamlio import StrictYamlError, load_yaml

    try:
        with open(value, encoding="utf-8") as f:
            data = load_yaml(f.read()) or {}
    except (OSError, yaml.YAMLError, StrictYamlError) as exc:
        raise click.BadParameter(f"{value}: {exc}", ctx, param) from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value}: expected a mapping of command names to option defaults", ctx, param)
    group = ctx.command
    checked = {}
    for key, section in data.items():
        command = group.get_command(ctx, key) if key in _COMMANDS else None
        if command is None:
            raise click.BadParameter(f"{value}: " + unknown_name_message("command section", str(key), group.list_commands(ctx)), ctx, param)
        checked[key] = _check_section(command, section, key, value, ctx, param)
    ctx.default_map = {**(ctx.default_map or {}), **checked}
    ctx.meta["cptbench.config"] = value
    return value


@click.group(cls=LazyGroup, commands_table=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(exists=True, dir_okay=False), callback=_load_config, is_eager=True,
              expose_value=False, help="YAML file of option defaults per command, e.g. {run: {method: [cpt], shots: [0, 1]}}; "
                                       "unknown commands or options are refused.")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final table.")
@click.option("--debug", is_flag=True, help="Show the Python traceback of an error instead of the one-line message.")
@click.version_option(package_name="cptbench")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool, debug: bool) -> None:
    """cptbench: few-shot visual grounding benchmarks: colorful prompt tuning (CPT) versus fine-tuning.

    \b
    Quick start (offline, bundled benchmark and model):
      cptbench run --method cpt --shots 1
      cptbench leaderboard
    """
    ctx.obj = AppState(verbosity=-1 if quiet else verbose, debug=debug)


if __name__ == "__main__":
    cli.main(prog_name="cptbench")
