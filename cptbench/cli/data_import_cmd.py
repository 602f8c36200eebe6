"""``cptbench data import``: a copy of RefCOCO* (jxu124/*, lmms-lab/*, the per-expression copies:
Kangheng/*, Qwen-VL / InternVL JSONL, MDETR) into the refer layout."""

from __future__ import annotations

import click

from cptbench.cli.common import ProgressBars, parse_name_list
from cptbench.cli.state import pass_state


@click.command("import")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--as", "task", required=True, help="The task the copy is imported as: refcoco, refcoco+ or refcocog.")
@click.option("--to", "root", type=click.Path(file_okay=False), envvar="CPTBENCH_DATA_ROOT", required=True,
              help="The data root to write (later: --data-root). Default: $CPTBENCH_DATA_ROOT.")
@click.option("--splits", default=None, help="Only these refer splits (comma list), e.g. testA,testB.")
@click.option("--annotations", type=click.Path(exists=True, file_okay=False), default=None,
              help="The refer folder of the dataset (refs(unc).p / refs(umd).p + instances.json; a data root holding "
                   "<dataset>/ or the dataset folder itself). Needed for the per-expression copies (Kangheng, Qwen-VL / "
                   "InternVL JSONL, MDETR) and for lmms-lab's merged val: every row is matched to its ref. Also "
                   "restores every annotation of each image as a candidate.")
@click.option("--coco-instances", type=click.Path(exists=True, dir_okay=False), default=None,
              help="COCO's instances_train2014.json: restores every annotation of each image as a candidate "
                   "(the jxu124 / lmms-lab copies hold only the referred objects).")
@click.option("--referred-only", is_flag=True,
              help="Accept candidate sets of the referred objects only (recorded as a caveat in every run record).")
@click.option("--hf-dataset", default=None, help="The hub id the files came from (recorded), e.g. jxu124/refcoco.")
@click.option("--revision", default=None, help="The hub revision (commit) the files came from (recorded).")
@click.option("--force", is_flag=True, help="Replace refer files already in --to.")
@pass_state
def import_(state, inputs, task, root, splits, annotations, coco_instances, referred_only, hf_dataset, revision, force) -> None:
    """Convert INPUTS (parquet / arrow files, a downloaded Hugging Face dataset folder or a save_to_disk
    folder; per-expression .jsonl / MDETR .json files) into <to>/<dataset>/refs(<splitBy>).p +
    instances.json, writing embedded images as files.

    \b
    Known copies (docs/data.md): jxu124/refcoco, refcocoplus, refcocog (no images: fetch them with
    `cptbench data download TASK --to DIR` afterwards; "test" is testA); lmms-lab/RefCOCO,
    RefCOCOplus, RefCOCOg (eval splits, images embedded; their "val" is the unc/umd val merged with
    the google val: imported only with --annotations, which tells the rows apart); per-expression
    copies (Kangheng/refcoco, refcocop; Qwen-VL / InternVL refcoco_val.jsonl ...; MDETR
    finetune_refcoco_val.json ...), matched expression by expression to --annotations. Every count
    is checked against the task card; anything that does not fit is refused, nothing written.
    """
    from rich.console import Console
    from rich.table import Table

    from cptbench.core.errors import UsageError
    from cptbench.data.hf_import import import_hf
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    if spec.source != "refer":
        raise UsageError(f"--as {task}: a generated task ({spec.source}); import into refcoco, refcoco+ or refcocog.")
    if coco_instances and referred_only:
        raise UsageError("--coco-instances and --referred-only exclude each other.")
    if annotations and (coco_instances or referred_only):
        raise UsageError("--annotations already gives every annotation of each image: drop --coco-instances / --referred-only.")
    wanted = parse_name_list(splits) if splits else None
    known = [spec.train_split, *spec.eval_splits]
    if wanted:
        bad = [s for s in wanted if s not in known]
        if bad:
            from cptbench.core.registry import unknown_name_message

            raise UsageError("--splits: " + unknown_name_message(f"split of {spec.name}:", bad[0], known))
    state.log(f"[dim]reading {', '.join(inputs)} ...[/]")
    with ProgressBars(state) as bars:
        res = import_hf(spec, inputs, root, splits=wanted, coco_instances=coco_instances, referred_only=referred_only,
                        annotations=annotations, hf_dataset=hf_dataset, revision=revision, force=force, progress=bars)
    table = Table("split", "records", "as", "status", "why", title=f"{spec.name} from a {res.layout} copy", title_justify="left")
    for d in res.decisions:
        colour = {"import": "green", "separated": "yellow", "skipped": "dim"}.get(d.status, "red")
        table.add_row(d.hf_split, f"{d.rows:,}", d.target or "-", f"[{colour}]{d.status}[/]", d.reason)
    out = Console()
    out.print(table)
    for split, n in res.refs.items():
        out.print(f"{split}: {n:,} refs, {res.sentences[split]:,} sentences", highlight=False)
    for caveat in res.caveats:
        out.print(f"[yellow]caveat:[/] {caveat}", highlight=False, soft_wrap=True)
    wrote_images = res.images_written or res.images_kept
    out.print(f"wrote {res.paths['refs']} and {res.paths['instances']} ({res.images:,} images referenced"
              + (f"; {res.images_written:,} written to {res.paths['images']}, {res.images_kept:,} already there" if wrote_images else "")
              + ")", highlight=False, soft_wrap=True)
    if not wrote_images:
        state.log(f"next: cptbench data download {spec.name} --to {root}   (fetches the images runs need; keeps these annotations)")
