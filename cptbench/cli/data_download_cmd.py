"""``cptbench data download``: a task's annotations from known public sources, and only the images
its runs need, into the refer layout the loader reads."""

from __future__ import annotations

import click

from cptbench.core.defaults import DEFAULT_SEEDS
from cptbench.data.image_download import DEFAULT_SHOTS
from cptbench.cli.common import ProgressBars
from cptbench.cli.state import parse_int_list, pass_state


@click.command()
@click.argument("tasks", nargs=-1, required=True)
@click.option("--to", "root", type=click.Path(file_okay=False), envvar="CPTBENCH_DATA_ROOT", required=True,
              help="The data root to fill (later: --data-root). Default: $CPTBENCH_DATA_ROOT.")
@click.option("--source", "sources", multiple=True, metavar="URL_OR_FILE",
              help="Try this annotations archive first (a URL or a file downloaded by hand); repeatable. "
                   "Mirror for all archives: $CPTBENCH_DATA_MIRROR=URL_PREFIX.")
@click.option("--images", "images", type=click.Path(file_okay=False), default=None,
              help="Image folder (default: the one the loader finds under --to, else <to>/images/train2014).")
@click.option("--no-images", is_flag=True, help="Annotations only.")
@click.option("--all-train-images", is_flag=True, help="Every image of the train split, not only the k-shot draws.")
@click.option("-k", "--shots", multiple=True, default=(",".join(map(str, DEFAULT_SHOTS)),), show_default=True,
              help="k-shot sizes whose training images to fetch (as `run` will draw them).")
@click.option("--seeds", default=",".join(map(str, DEFAULT_SEEDS)), show_default=True, help="Seeds of those k-shot draws.")
@click.option("--image-source", "image_sources", multiple=True, metavar="URL_PREFIX",
              help="Try <URL_PREFIX>/<file_name> first for images; repeatable. Also $CPTBENCH_IMAGE_MIRROR.")
@click.option("-j", "--jobs", type=click.IntRange(1, 64), default=8, show_default=True, help="Parallel image fetches.")
@click.option("--retries", type=click.IntRange(0, 20), default=3, show_default=True,
              help="Retries after a dropped connection, a timeout or HTTP 5xx (with back-off).")
@click.option("--timeout", type=click.FloatRange(0.5, 600), default=10.0, show_default=True,
              help="Seconds to wait for a connection or for data.")
@click.option("--force", is_flag=True, help="Download the annotations again even if they are present.")
@click.option("--repair", is_flag=True,
              help="Also decode every image of the task already on disk and fetch the damaged ones again (e.g. "
                   "COCO_train2014_000000167126.jpg, truncated in the official train2014.zip); each is checked after "
                   "download.")
@click.option("--expect-sha256", default=None, metavar="HEX",
              help="Accept the archive with this sha256 instead of the known size / digest (a source that changed).")
@pass_state
def download(state, tasks, root, sources, images, no_images, all_train_images, shots, seeds, image_sources, jobs,
             retries, timeout, force, repair, expect_sha256) -> None:
    """Fetch TASK's annotations (refcoco, refcoco+, refcocog) and the images its runs need.

    \b
    Annotations: tried in order from --source, $CPTBENCH_DATA_MIRROR and the bundled list of public
    sources (cptbench/data/sources.yaml; replace it with $CPTBENCH_SOURCES), resumed if interrupted,
    verified (size / sha256; a digest without a published one is recorded on first download and
    checked afterwards) and unpacked to <to>/<dataset>/. Provenance: <to>/<dataset>/cptbench-source.json.
    Images: those of the eval splits plus those of the k-shot training draws (-k x --seeds, drawn as
    `cptbench run` draws them), from the COCO image host by file name, each verified decodable.
    Present files are kept; running it again only fetches what is missing (--repair: and what is damaged).
    """
    from pathlib import Path

    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from cptbench.data.annotation_download import download_annotations
    from cptbench.data.catalog import load_catalog
    from cptbench.data.fetch import HttpPolicy
    from cptbench.data.image_download import MISSING_IMAGES_FILE, damaged_images, fetch_images, select_images
    from cptbench.data.provenance import update_image_provenance
    from cptbench.data.check import check_dataset
    from cptbench.core.errors import DataError
    from cptbench.data.source import find_image_dir, open_dataset
    from cptbench.core.errors import UsageError
    from cptbench.tasks.cards import get_task

    specs = [get_task(t) for t in dict.fromkeys(tasks)]
    for spec in specs:
        if spec.source != "refer":
            raise UsageError(f"task {spec.name!r} is generated on first use ({spec.source}); there is nothing to download.")
    if repair and no_images:
        raise UsageError("--repair fetches damaged images again; it cannot be combined with --no-images.")
    if (sources or expect_sha256) and len(specs) > 1:
        raise UsageError("--source / --expect-sha256 name one archive: give one task with them "
                         "(or set $CPTBENCH_DATA_MIRROR for several).")
    shot_list = parse_int_list(shots, "--shots")
    seed_list = parse_int_list(seeds, "--seeds")
    policy = HttpPolicy(timeout=timeout, retries=retries)
    root = Path(root).expanduser()
    catalog = load_catalog()

    def event(kind, info):
        if kind == "failed":
            state.log(f"[yellow]{info['dataset']}: {info['url']}: {info['detail']}[/]", 1)
        elif kind == "try":
            state.log(f"[dim]{info['dataset']}: trying {info['url']}[/]", 1)
        elif kind == "note":
            state.log(f"[dim]{info['message']}[/]")

    table = Table("task", "annotations", "images needed", "fetched", "skipped", "failed",
                  title=f"data root {root}", title_justify="left")
    problems: list[str] = []
    with ProgressBars(state) as bars:
        for spec in specs:
            ann = download_annotations(spec, root, sources=sources, catalog=catalog, policy=policy, progress=bars,
                                       event=event, force=force, expect_sha256=expect_sha256)
            where = f" from {ann.source}" if ann.status != "present" else ""
            resumed = f" (resumed at {ann.resumed_from:,} bytes)" if ann.resumed_from else ""
            state.log(f"{spec.name}: annotations {ann.status}{where}{resumed}; checksum: {ann.checksum}")
            for failure in ann.failures:
                state.log(f"[yellow]  (tried first: {failure})[/]")
            cells = ["-", "-", "-", "-"]
            if not no_images:
                find_image_dir(spec, root, images)[0].mkdir(parents=True, exist_ok=True)  # so the loader finds it
                ds = open_dataset(spec, root, images)
                images_dir, layout = ds.images_dir, ds.image_layout
                for s in check_dataset(spec, ds, check_images=False, boxes=False).splits:
                    if s.mismatches:
                        state.log(f"[yellow]{spec.name}: split {s.split}: {'; '.join(s.mismatches)} (the published "
                                  f"sizes); see `cptbench data check`[/]")
                damaged = []
                if repair:
                    damaged = damaged_images(ds, {int(r["image_id"]) for r in ds.refs}, jobs=jobs, progress=bars)
                    state.log(f"{spec.name}: {len(damaged)} damaged image(s) on disk" + (" (fetched again below):" if damaged else ""))
                    for _, problem in damaged:
                        state.log(f"[yellow]  {escape(problem)}[/]")
                sel = select_images(spec, ds, shots=shot_list, seeds=seed_list, all_train=all_train_images,
                                    image_sources=image_sources, catalog=catalog, repair=[i for i, _ in damaged])
                for note in sel.notes:
                    state.log(f"[dim]{spec.name}: {note}[/]")
                state.log(f"{spec.name}: {len(sel.needs)} images needed ({sel.description}; "
                          + ", ".join(f"{n} for the {w}" for w, n in sel.counts.items()) + f") in {images_dir} (layout: {escape(layout)})")
                rep = fetch_images(sel.needs, images_dir, policy=policy, jobs=jobs, progress=bars,
                                   missing_list=ds.dir / MISSING_IMAGES_FILE)
                update_image_provenance(ds.dir, {
                    "dir": str(images_dir), "layout": layout, "selection": sel.description, "needed": rep.needed,
                    "fetched": rep.fetched, "skipped": rep.skipped, "failed": len(rep.failed),
                    "sources": list(image_sources) + list(catalog.image_patterns)})
                cells = [str(rep.needed), str(rep.fetched), str(rep.skipped),
                         f"[red]{len(rep.failed)}[/]" if rep.failed else "0"]
                if rep.failed:
                    problems.append(f"{spec.name}: " + rep.message(spec.name, catalog.image_archive))
            table.add_row(spec.name, ann.status, *cells)
    Console().print(table)
    if problems:
        raise DataError("\n".join(problems))
    runs = " ".join(f"-t {s.name}" for s in specs)
    state.log(f"[green]ready:[/] cptbench data check {specs[0].name} --data-root {root}; "
              f"cptbench run {runs} --data-root {root} ...")
