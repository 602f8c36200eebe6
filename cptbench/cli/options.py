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
