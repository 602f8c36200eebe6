"""Options several commands share, declared once (name, type, default, environment variable, help)."""

from __future__ import annotations

import click

from cptbench.core.defaults import DATA_ROOT_ENV
from cptbench.results.layout import RESULTS_ENV, default_results_dir

#: the results folder of every command (``--results``), unless $CPTBENCH_RESULTS says otherwise
DEFAULT_RESULTS = default_results_dir()


def data_root_option(f):
    """``--data-root`` (env ``CPTBENCH_DATA_ROOT``): the refer-layout data root."""
    return click.option("--data-root", type=click.Path(file_okay=False), default=None, envvar=DATA_ROOT_ENV,
                        help=f"Folder with <dataset>/refs(<splitBy>).p and <dataset>/instances.json (env {DATA_ROOT_ENV}).")(f)


def images_option(f):
    """``--images``: the image folder, found under the data root by default."""
    return click.option("--images", type=click.Path(file_okay=False), default=None,
                        help="Image folder (default: found under the data root: images/train2014, the refer toolkit's "
                             "images/mscoco/images/train2014, or train2014).")(f)


def data_options(f):
    """``--data-root`` and ``--images``."""
    return data_root_option(images_option(f))


def results_option(f):
    """``--results`` (env ``CPTBENCH_RESULTS``): the results folder."""
    return click.option("--results", type=click.Path(file_okay=False), default=DEFAULT_RESULTS, show_default=True,
                        help=f"Results folder (runs.jsonl, predictions, manifests, leaderboards); env {RESULTS_ENV}.")(f)


def strict_data_option(f):
    """``--strict-data``: refuse boxes reaching past the image and zero-area boxes (kept by default)."""
    return click.option("--strict-data", is_flag=True,
                        help="Refuse candidate and ground-truth boxes that reach past the image or have zero area "
                             "(by default they are kept, as the CPT release keeps them: painted clipped, scored on "
                             "the raw box, counted in every record). NaN, negative and wholly outside boxes are "
                             "always refused; --skip-bad drops what is refused.")(f)


def _threads(several: bool):
    def callback(ctx, param, value):
        from cptbench.core.errors import UsageError
        from cptbench.methods.numerics import THREADS_ENV, parse_threads, threads_setting

        try:
            if value is None:  # not given: $CPTBENCH_THREADS, else torch's own (None)
                env = threads_setting(None)
                return [env] if several else env
            counts = parse_threads(value, "--threads")
        except UsageError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
        if not several and len(counts) > 1:
            raise click.BadParameter(f"{value!r}: one thread count here (a comma list is for `cptbench bench`); "
                                     f"or set {THREADS_ENV}.", ctx, param)
        return counts if several else counts[0]

    return callback


def threads_option(f=None, *, several: bool = False):
    """``--threads N`` (else ``$CPTBENCH_THREADS``, else torch's default): torch CPU threads for the
    forward and the pipeline, parsed by :func:`cptbench.methods.numerics.parse_threads` and applied
    by the run (:func:`~cptbench.methods.numerics.apply_threads`). The value is an int or None;
    with ``several`` (``bench --threads 1,2``) a list of counts, ``[None]`` for torch's default."""
    def decorate(g):
        from cptbench.methods.numerics import THREADS_ENV

        what = "a comma list of counts, each measured in turn" if several else "recorded in each record's perf"
        return click.option("--threads", default=None, callback=_threads(several), metavar="N[,N...]" if several else "N",
                            help=f"torch CPU threads for the forward and the pipeline ({what}); default: ${THREADS_ENV}, "
                                 "else torch's (one per core). On a CPU shared with other work, 1 holds its speed "
                                 "best (docs/performance.md).")(g)

    return decorate(f) if f is not None else decorate


def _names(ctx, param, value):
    from cptbench.core.values import name_list

    return name_list(value) or None


def _ints(ctx, param, value):
    from cptbench.core.errors import UsageError
    from cptbench.core.values import int_list

    if not value:
        return None
    try:
        return int_list(value, "--shots")
    except UsageError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def _y_range(ctx, param, value):
    from cptbench.report.figure_style import parse_y_range

    try:
        return parse_y_range(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


def filter_options(f):
    """``-t`` / ``-m`` / ``-k`` filters of the commands that read a results folder (repeatable or
    comma lists; ``-k`` takes ranges such as ``1-16``), parsed into lists (None when not given)."""
    from cptbench.cli.completion import complete_methods, complete_tasks

    f = click.option("-k", "--shots", multiple=True, callback=_ints,
                     help="Only these k (repeatable, comma list or range: -k 0,1 -k 4-16); methods that do not "
                          "train stay as references.")(f)
    f = click.option("-m", "--method", "methods", multiple=True, callback=_names, shell_complete=complete_methods,
                     help="Only these methods or labels (repeatable or comma list).")(f)
    return click.option("-t", "--task", "tasks", multiple=True, callback=_names, shell_complete=complete_tasks,
                        help="Only these tasks (repeatable or comma list).")(f)


def figure_filter_options(f):
    """:func:`filter_options` and ``--y-range shared|panel|LOW,HIGH`` for the commands that draw figures."""
    f = click.option("--y-range", "y_range", default="shared", show_default=True, callback=_y_range,
                     help="The y axis of accuracy figures: shared (one range over a figure's panels), panel (one per "
                          "panel), or LOW,HIGH in percent (e.g. 0,60); reference lines never set it.")(f)
    return filter_options(f)
