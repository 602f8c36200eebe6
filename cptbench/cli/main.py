"""``cptbench``: the entry point. Subcommands live in their own modules and load on demand, so
``cptbench --help`` never imports torch."""

from __future__ import annotations

import importlib

import click

from .state import AppState

_COMMANDS = {
    "run": ("cptbench.cli.run_cmd", "run"),
    "leaderboard": ("cptbench.cli.leaderboard_cmd", "leaderboard"),
    "list": ("cptbench.cli.list_cmd", "list_"),
    "data": ("cptbench.cli.data_cmd", "data"),
    "show": ("cptbench.cli.show_cmd", "show"),
    "pretrain-mini": ("cptbench.cli.pretrain_cmd", "pretrain_mini"),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(n for n, (mod, _) in _COMMANDS.items() if importlib.util.find_spec(mod) is not None)

    def get_command(self, ctx, name):
        if name not in _COMMANDS:
            return None
        module, attr = _COMMANDS[name]
        try:
            return getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError:
            return None

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name is not None and not name.startswith("-") and self.get_command(ctx, name) is None:
            from ..registry import unknown_name_message

            raise click.UsageError(unknown_name_message("command", name, self.list_commands(ctx)), ctx)
        return super().resolve_command(ctx, args)


def _load_config(ctx: click.Context, param, value):
    if value is None:
        return None
    import yaml

    try:
        data = yaml.safe_load(open(value, encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise click.BadParameter(f"{value}: {exc}", ctx, param) from exc
    if not isinstance(data, dict):
        raise click.BadParameter(f"{value}: expected a mapping of command names to option defaults", ctx, param)
    unknown = [k for k in data if k not in _COMMANDS]
    if unknown:
        from ..registry import unknown_name_message

        raise click.BadParameter(f"{value}: " + unknown_name_message("command section", unknown[0], _COMMANDS), ctx, param)
    ctx.default_map = {**(ctx.default_map or {}), **data}
    return value


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(exists=True, dir_okay=False), callback=_load_config, is_eager=True,
              expose_value=False, help="YAML file of option defaults per command, e.g. {run: {method: [cpt], shots: [0, 1]}}.")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only errors and the final table.")
@click.version_option(package_name="cptbench")
@click.pass_context
def cli(ctx: click.Context, verbose: int, quiet: bool) -> None:
    """cptbench: few-shot visual grounding benchmarks: colorful prompt tuning (CPT) versus fine-tuning.

    \b
    Quick start (offline, bundled benchmark and model):
      cptbench run --method cpt --shots 1
      cptbench leaderboard
    """
    ctx.obj = AppState(verbosity=-1 if quiet else verbose)
