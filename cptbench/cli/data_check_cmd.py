"""``cptbench data check``: validate a refer-layout download and report where it came from."""

from __future__ import annotations

import click

from cptbench.cli.options import data_options, strict_data_option
from cptbench.core.defaults import DEFAULT_SEEDS
from cptbench.data.image_download import DEFAULT_SHOTS
from cptbench.cli.state import parse_int_list, pass_state


@click.command()
@click.argument("task")
@data_options
@click.option("--proposals", default=None, help="A detections JSON file: also list its boxes and report its recall "
                                                "(the oracle ceiling) per eval split.")
@click.option("--skip-images", is_flag=True, help="Do not look for the image files.")
@click.option("-k", "--shots", multiple=True, default=(",".join(map(str, DEFAULT_SHOTS)),), show_default=True,
              help="k-shot sizes whose training images must be present.")
@click.option("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), show_default=True, help="Seeds of those k-shot draws.")
@click.option("--all-train-images", is_flag=True, help="Require every image of the train split.")
@strict_data_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: the whole report (counts, images, provenance, boxes, proposal recall) on stdout.")
@pass_state
def check(state, task, data_root, images, proposals, skip_images, shots, seeds, all_train_images, strict_data, fmt) -> None:
    """Counts per split (train included) against the known sizes, missing images (eval splits, and the
    train images of the k-shot draws) and damaged ones, images shared by train and an eval split,
    every box reaching past its image or of zero area (kept by runs unless --strict-data) and every
    box runs refuse, and the provenance and sha256 of the annotation files. Exits with status 1 when
    something is off."""
    from rich.console import Console

    from cptbench.data.check import check_dataset
    from cptbench.data.source import open_dataset
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    ds = open_dataset(spec, data_root, images)
    dets = None
    if proposals:
        from cptbench.data.proposals import load_detections

        dets = load_detections(proposals)
    report = check_dataset(spec, ds, check_images=not skip_images, shots=parse_int_list(shots, "--shots"),
                           seeds=parse_int_list(seeds, "--seeds"), all_train=all_train_images, strict=strict_data,
                           proposals=dets)
    if fmt == "json":
        import json

        doc = report.to_json()
        if dets is not None:
            from cptbench.run.scoring import proposal_recall

            splits = report.boxes[-1].splits
            doc["proposal_recall"] = {sp: proposal_recall(splits[sp].examples, splits[sp].labels, spec.metric)
                                      for sp in spec.eval_splits}
        click.echo(json.dumps(doc, indent=1, default=str))
        if not report.ok:
            raise SystemExit(1)
        return
    out = Console()
    _print_splits(out, spec, ds, report, skip_images)
    _print_provenance(out, report)
    for boxes in report.boxes:
        _print_boxes(out, boxes)
    if dets is not None:
        from cptbench.run.scoring import proposal_recall

        det_boxes = report.boxes[-1]
        for split in spec.eval_splits:
            sd = det_boxes.splits[split]
            skipped = ", ".join(f"{n} {what}" for what, n in sd.skipped.items() if n)
            out.print(f"{split}: proposal recall {proposal_recall(sd.examples, sd.labels, spec.metric):.2f}% ({dets.setting})"
                      + (f" [yellow](left out as refused: {skipped})[/]" if skipped else ""), highlight=False)
    if not report.ok:
        raise SystemExit(1)
    out.print("[green]data check passed[/]")


def _print_splits(out, spec, ds, report, skip_images: bool) -> None:
    """The counts table, missing and damaged images, and where the images were looked for."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    # short headers and no frame, so the table fits 80 columns without cutting a word
    out.print(f"{spec.name}: {escape(str(report.refs_path))}", highlight=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)
    for col in ("split", "sentences", "refs", "images", "missing", "damaged", "in train"):
        table.add_column(col, no_wrap=True)
    table.add_column("problems", ratio=1, overflow="fold")
    for s in report.splits:
        exp = s.expected

        def show(key, s=s, exp=exp):
            got, want = getattr(s, key), exp.get(key)
            return f"{got}" if want is None else (f"{got} ✓" if got == want else f"[red]{got} (expected {want})[/]")
        missing = "-" if skip_images else (f"[red]{s.missing_images}[/]" if s.missing_images else "0")
        if s.not_needed_missing:
            missing += f" [dim](+{s.not_needed_missing} not needed)[/]"
        damaged = "-" if skip_images else (f"[red]{len(s.damaged)}[/]" if s.damaged else "0")
        table.add_row(s.split, show("sentences"), show("refs"), show("images"), missing, damaged,
                      str(report.shared_images.get(s.split, "-")), "; ".join(s.mismatches))
    out.print(table)
    for s in report.splits:
        if s.missing_examples:
            out.print(f"[red]{s.split}: missing images, e.g. {', '.join(s.missing_examples)}[/] (fix: `cptbench data "
                      f"download {spec.name} --to {ds.root}`, or --images DIR)", highlight=False, soft_wrap=True)
        for problem in s.damaged:
            out.print(f"[red]{s.split}: damaged image: {escape(problem)}[/]", highlight=False, soft_wrap=True)
    if any(s.damaged for s in report.splits):
        out.print(f"fix: `cptbench data download {spec.name} --to {ds.root} --repair` fetches damaged images again "
                  f"(each checked after download)", highlight=False, soft_wrap=True)
    if not skip_images:
        out.print(f"images: {report.images_dir} ({escape(report.image_layout)}); train images checked: "
                  f"{report.needed_for}", highlight=False, soft_wrap=True)


def _print_provenance(out, report) -> None:
    """Where the annotation files came from and whether they still match their record."""
    prov = report.provenance
    if prov is None:
        return
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


def _print_boxes(out, boxes) -> None:
    """Every box of one candidate source that the policy keeps (reaching past the image, zero area)
    or that runs refuse, one line each."""
    from rich.markup import escape

    what = "ground-truth candidates (every COCO annotation of an image)" if boxes.source == "gt" else boxes.source
    policy = "--strict-data: refused" if boxes.strict else "kept, as the CPT release keeps them; --strict-data refuses them"
    kept, refused = boxes.kept(), boxes.refused()
    if not kept and not refused:
        out.print(f"boxes of {what}: none reaches past its image, none has zero area, none is refused",
                  highlight=False, soft_wrap=True)
    else:
        out.print(f"boxes of {what} (past the image or of zero area: {policy}):", highlight=False, soft_wrap=True)
    for split, title, items in kept:
        out.print(f"  [yellow]{split}: {len(items)} {title}[/]", highlight=False, soft_wrap=True)
        for line in items:
            out.print(f"    {escape(line)}", highlight=False, soft_wrap=True)
    for split, title, items in refused:
        out.print(f"  [red]{split}: {len(items)} {title}: runs refuse them (--skip-bad drops them)[/]",
                  highlight=False, soft_wrap=True)
        for line in items:
            out.print(f"    {escape(line)}", highlight=False, soft_wrap=True)
    for split, n in boxes.without_candidates().items():
        out.print(f"  [yellow]{split}: {n} expression(s) whose image has no candidate in {boxes.source} (runs refuse "
                  f"them; with --skip-bad they are kept and scored as misses)[/]", highlight=False, soft_wrap=True)
