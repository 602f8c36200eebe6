"""``cptbench data check``: validate a refer-layout download and report where it came from."""

from __future__ import annotations

import click

from cptbench.cli.options import data_options
from cptbench.core.defaults import DEFAULT_SEEDS
from cptbench.data.image_download import DEFAULT_SHOTS
from cptbench.cli.state import parse_int_list, pass_state


@click.command()
@click.argument("task")
@data_options
@click.option("--proposals", default=None, help="A detections JSON file: also report its recall (the oracle ceiling) per eval split.")
@click.option("--skip-images", is_flag=True, help="Do not look for the image files.")
@click.option("-k", "--shots", multiple=True, default=(",".join(map(str, DEFAULT_SHOTS)),), show_default=True,
              help="k-shot sizes whose training images must be present.")
@click.option("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), show_default=True, help="Seeds of those k-shot draws.")
@click.option("--all-train-images", is_flag=True, help="Require every image of the train split.")
@pass_state
def check(state, task, data_root, images, proposals, skip_images, shots, seeds, all_train_images) -> None:
    """Counts per split against the known sizes, missing images (eval splits, and the train images
    of the k-shot draws), images shared by train and an eval split, and the provenance and sha256 of
    the annotation files. Exits with status 1 when something is off."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cptbench.data.check import check_dataset
    from cptbench.data.source import open_dataset
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    ds = open_dataset(spec, data_root, images)
    report = check_dataset(spec, ds, check_images=not skip_images, shots=parse_int_list(shots, "--shots"),
                           seeds=parse_int_list(seeds, "--seeds"), all_train=all_train_images)
    table = Table("split", "sentences", "refs", "images", "missing images", "shared with train", "problems",
                  title=f"{spec.name}: {report.refs_path}", title_justify="left")
    for s in report.splits:
        exp = s.expected
        def show(key):
            got, want = getattr(s, key), exp.get(key)
            return f"{got}" if want is None else (f"{got} ✓" if got == want else f"[red]{got} (expected {want})[/]")
        missing = "-" if skip_images else (f"[red]{s.missing_images}[/]" if s.missing_images else "0")
        if s.not_needed_missing:
            missing += f" [dim](+{s.not_needed_missing} not needed)[/]"
        table.add_row(s.split, show("sentences"), show("refs"), show("images"), missing,
                      str(report.shared_images.get(s.split, "-")), "; ".join(s.mismatches))
    out = Console()
    out.print(table)
    for s in report.splits:
        if s.missing_examples:
            out.print(f"[red]{s.split}: missing images, e.g. {', '.join(s.missing_examples)}[/] (fix: `cptbench data "
                      f"download {spec.name} --to {ds.root}`, or --images DIR)", highlight=False, soft_wrap=True)
    if not skip_images:
        out.print(f"images: {report.images_dir} ({escape(report.image_layout)}); train images checked: "
                  f"{report.needed_for}", highlight=False, soft_wrap=True)
    prov = report.provenance
    if prov is not None:
        rec = prov.record or {}
        when = f" ({rec.get('method')} of {rec.get('created_at')}, cptbench {rec.get('cptbench_version')})" if rec else ""
        out.print(f"provenance: {prov.path if rec else 'none'}{when}", highlight=False, soft_wrap=True)
        out.print(f"  source: {prov.source_text}", highlight=False, soft_wrap=True)
        if prov.error:
            out.print(f"  [red]{prov.error}[/]", highlight=False, soft_wrap=True)
        for f in prov.files:
            colour = "red" if not f.ok else "green" if f.status == "matches the record" else "yellow"
            out.print(f"  {f.name}: {f.size:,} bytes, sha256 {f.sha256} [{colour}]{f.status}[/]", highlight=False, soft_wrap=True)
        for caveat in rec.get("caveats") or []:
            out.print(f"  [yellow]caveat:[/] {caveat}", highlight=False, soft_wrap=True)
        imgs = rec.get("images")
        if imgs:
            out.print(f"  images: {imgs.get('needed')} needed ({imgs.get('selection')}), {imgs.get('fetched')} fetched, "
                      f"{imgs.get('skipped')} already there, {imgs.get('failed')} failed ({imgs.get('updated_at')})",
                      highlight=False, soft_wrap=True)
    if proposals:
        from cptbench.data.proposals import load_detections
        from cptbench.run.scoring import proposal_recall

        dets = load_detections(proposals)
        for split in spec.eval_splits:
            # a report, not a score: degenerate data is dropped and counted, never refused (there is no --skip-bad here)
            sd = ds.load_split(split, dets, skip_bad=True)
            skipped = ", ".join(f"{n} {what}" for what, n in sd.skipped.items() if n)
            out.print(f"{split}: proposal recall {proposal_recall(sd.examples, sd.labels, spec.metric):.2f}% ({dets.setting})"
                      + (f" [yellow](left out as degenerate: {skipped})[/]" if skipped else ""), highlight=False)
    if not report.ok:
        raise SystemExit(1)
    out.print("[green]data check passed[/]")
