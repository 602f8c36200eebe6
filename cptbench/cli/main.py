"""``cptbench``: the entry point. Subcommands live in their own modules and load on demand, so
``cptbench --help`` never imports torch.

The one error boundary of the CLI is :meth:`LazyGroup.invoke`: every exception that reaches it
becomes one message and an exit code (2 usage, 1 data; :func:`~cptbench.cli.state.describe_error`),
never a traceback unless ``--debug`` is given.
"""

from __future__ import annotations

import click

from cptbench.cli.config_file import load_config
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
    "reproduce": ("cptbench.cli.reproduce_cmd", "reproduce"),
    "bench": ("cptbench.cli.bench_cmd", "bench"),
    "pretrain-mini": ("cptbench.cli.pretrain_cmd", "pretrain_mini"),
    "prompt-search": ("cptbench.cli.prompt_search_cmd", "prompt_search"),
}


#: the root's flags, accepted after the subcommand too (``cptbench run -m cpt -q``)
GLOBAL_FLAGS = ("--debug", "-q", "--quiet", "-v", "--verbose")


def hoist_global_options(args: list[str]) -> list[str]:
    """``args`` with the root's options (:data:`GLOBAL_FLAGS`, ``-vv``, ``--config FILE``) moved from
    after the subcommand to before it, where Click reads them; ``--`` ends the scan."""
    import re

    i = 0
    while i < len(args) and args[i].startswith("-"):  # the root's own options before the subcommand
        i += 2 if args[i] == "--config" else 1
    if i >= len(args):
        return list(args)
    moved: list[str] = []
    kept: list[str] = []
    rest = args[i + 1:]
    j = 0
    while j < len(rest):
        a = rest[j]
        if a == "--":
            kept += rest[j:]
            break
        if a in GLOBAL_FLAGS or re.fullmatch(r"-v+", a) or a.startswith("--config="):
            moved.append(a)
        elif a == "--config" and j + 1 < len(rest):
            moved += [a, rest[j + 1]]
            j += 1
        else:
            kept.append(a)
        j += 1
    return [*args[:i], *moved, args[i], *kept]


class LazyGroup(LazyCommands):
    """The root group: lazy subcommands, global options accepted after the subcommand, and the
    CLI's one error boundary."""

    def parse_args(self, ctx, args):
        """As Click's, after moving the root's options that follow the subcommand in front of it."""
        return super().parse_args(ctx, hoist_global_options(list(args)))

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


@click.group(cls=LazyGroup, commands_table=_COMMANDS, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", type=click.Path(dir_okay=False), callback=load_config, is_eager=True,
              expose_value=False, help="YAML file of option defaults: per command ({run: {method: [cpt], shots: [0, 1]}}) "
                                       "or a study file's keys ({methods: [cpt, ft], shots: 0-16, seeds: 0-4}); unknown "
                                       "commands, options or keys are refused.")
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
