"""``cptbench data check``: validate a refer-layout download."""

from __future__ import annotations

import click

from .state import pass_state


@click.command()
@click.argument("task")
@click.option("--data-root", type=click.Path(file_okay=False), default=None, envvar="CPTBENCH_DATA_ROOT",
              help="Folder with <dataset>/refs(<splitBy>).p and <dataset>/instances.json.")
@click.option("--images", type=click.Path(file_okay=False), default=None, help="Image folder (default: <data-root>/images/train2014).")
@click.option("--proposals", default=None, help="A detections JSON file: also report its recall (the oracle ceiling) per eval split.")
@click.option("--skip-images", is_flag=True, help="Do not look for the image files.")
@pass_state
def check(state, task, data_root, images, proposals, skip_images) -> None:
    """Counts per split against the known sizes, missing images, and images shared by train and an eval split.
    Exits with status 1 when something is off."""
    from rich.console import Console
    from rich.table import Table

    from ..data.check import check_dataset
    from ..data.source import open_dataset
    from ..tasks import get_task

    spec = get_task(task)
    ds = open_dataset(spec, data_root, images)
    report = check_dataset(spec, ds, check_images=not skip_images)
    table = Table("split", "sentences", "refs", "images", "missing images", "shared with train", "problems",
                  title=f"{spec.name}: {report.refs_path}", title_justify="left")
    for s in report.splits:
        exp = s.expected
        def show(key):
            got, want = getattr(s, key), exp.get(key)
            return f"{got}" if want is None else (f"{got} ✓" if got == want else f"[red]{got} (expected {want})[/]")
        table.add_row(s.split, show("sentences"), show("refs"), show("images"),
                      "-" if skip_images else (f"[red]{s.missing_images}[/]" if s.missing_images else "0"),
                      str(report.shared_images.get(s.split, "-")), "; ".join(s.mismatches))
    out = Console()
    out.print(table)
    for s in report.splits:
        if s.missing_examples:
            out.print(f"[red]{s.split}: missing images, e.g. {', '.join(s.missing_examples)}[/] (fix: --images DIR)")
    if proposals:
        from ..data.proposals import load_detections
        from ..scoring import proposal_recall

        dets = load_detections(proposals)
        for split in spec.eval_splits:
            sd = ds.load_split(split, dets)
            out.print(f"{split}: proposal recall {proposal_recall(sd.examples, sd.labels, spec.metric):.2f}% ({dets.setting})")
    if not report.ok:
        raise SystemExit(1)
    out.print("[green]data check passed[/]")
