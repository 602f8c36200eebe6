"""``cptbench show``: write the painted prompt images and per-candidate scores of one expression."""

from __future__ import annotations

from pathlib import Path

import click

import json

from cptbench.cli.completion import complete_methods, complete_set_keys, complete_tasks
from cptbench.cli.options import data_options, results_option
from cptbench.cli.common import parse_sets
from cptbench.cli.state import pass_state


@click.command()
@click.option("-t", "--task", default="synthref", show_default=True, shell_complete=complete_tasks, help="Task card name.")
@click.option("--ref-id", type=int, required=True, help="The ref to show (any split).")
@click.option("--sent-id", type=int, default=None, help="Which of the ref's sentences (default: the first).")
@click.option("-m", "--method", default="cpt", show_default=True, shell_complete=complete_methods, help="A CPT method: cpt, cpt-blk, cpt-seg.")
@click.option("-k", "--shots", type=click.IntRange(min=0), default=0, show_default=True,
              help="Prompt-tune on the k-shot draw of --seed first (as `run` would), then show.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--model", default=None, help="Backbone (default: the task card's).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", shell_complete=complete_set_keys, help="Method option, as in `run`.")
@data_options
@results_option
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Output folder (default: <results>/show/<task>-<ref>-<sent>).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True,
              help="json: the candidates, groups, scores and files as JSON on stdout (also written as scores.json).")
@pass_state
def show(state, task, ref_id, sent_id, method, shots, seed, model, sets, data_root, images, results, out, device, fmt) -> None:
    """Paint one expression's candidates as the method does, run the model, and write
    group<g>.png (each painted copy), original.png, scores.txt and scores.json (prompt texts,
    per-candidate scores, IoU with the ground truth, the pick).

    \b
    Examples:
      cptbench show --ref-id 12 -m cpt-seg
      cptbench show --ref-id 12 -k 1 --format json
    """
    from PIL import Image
    from rich.console import Console
    from rich.table import Table

    from cptbench.cpt.inspect import explain
    from cptbench.cpt.method import CptMethod
    from cptbench.methods.options import method_config
    from cptbench.methods.registry import get_method_class
    from cptbench.run.context import build_context
    from cptbench.run.device import check_device
    from cptbench.run.session import DataSession
    from cptbench.tasks import get_task

    spec = get_task(task)
    cls = get_method_class(method)
    if not issubclass(cls, CptMethod):
        raise click.ClickException(f"`show` paints prompts, so it needs a CPT method (cpt, cpt-blk, cpt-seg); got {cls.name!r}")
    options = parse_sets(sets)
    config = method_config(cls, spec, options)
    check_device(device)
    session = DataSession(data_root, images)
    ds = session.dataset(spec)
    ref = next((r for r in ds.refs if int(r["ref_id"]) == ref_id), None)
    if ref is None:
        raise click.ClickException(f"task {spec.name!r} has no ref {ref_id} (ref ids run {min(r['ref_id'] for r in ds.refs)}..{max(r['ref_id'] for r in ds.refs)})")
    sents = [int(s["sent_id"]) for s in ref["sentences"]]
    sent_id = sents[0] if sent_id is None else sent_id
    if sent_id not in sents:
        raise click.ClickException(f"ref {ref_id} has sentences {sents}, not {sent_id}")
    data = ds.load_split(ref["split"], ref_filter=[(ref_id, sent_id)])
    example = data.examples[0]
    _, model_path = session.model(model or spec.default_model)
    m = cls(config, build_context(spec, cls, config, model=model_path, device=device, shots=shots))
    if shots:
        m.fit(session.train_examples(spec, session.manifest(spec, shots, seed)), seed)
    ex = explain(m, example, data.labels[example.example_id], spec.metric.iou_convention)

    from cptbench.results.layout import ResultsLayout

    folder = Path(out) if out else ResultsLayout(Path(results)).show(spec.name, ref_id, sent_id)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(example.image()).save(folder / "original.png")
    lines = [f"task {spec.name} split {ref['split']} ref {ref_id} sent {sent_id}: {example.expression!r}",
             f"method {cls.name} (k={shots}, seed {seed}), model {model or spec.default_model}, score rule {ex.info['score_rule']}", ""]
    for g in ex.groups:
        Image.fromarray(g.image).save(folder / f"group{g.group}.png")
        lines.append(f"group{g.group}.png: {g.text!r}  painted: " + ", ".join(f"#{i} {c}" for i, c in zip(g.candidates, g.colours)))
    table = Table("cand", "category", "box (xyxy)", "group", "colour", "score", "IoU gt", "", title=example.expression)
    lines.append("")
    lines.append("cand\tcategory\tbox\tgroup\tcolour\tscore\tiou_gt\tmark")
    colour_of = {i: (g.group, c) for g in ex.groups for i, c in zip(g.candidates, g.colours)}
    cands = []
    for i in range(example.n_candidates):
        mark = ("PICK " if i == ex.predicted else "") + ("GT" if ex.ious is not None and ex.ious[i] > spec.metric.threshold else "")
        box = ", ".join(f"{v:.0f}" for v in example.boxes[i])
        grp, col = colour_of[i]
        iou = f"{ex.ious[i]:.2f}" if ex.ious is not None else ""
        table.add_row(str(i), example.categories[i], box, str(grp), col, f"{ex.scores[i]:.4f}", iou, mark.strip())
        lines.append(f"{i}\t{example.categories[i]}\t[{box}]\t{grp}\t{col}\t{ex.scores[i]:.6f}\t{iou}\t{mark.strip()}")
        cands.append({"candidate": i, "category": example.categories[i], "box_xyxy": [float(v) for v in example.boxes[i]],
                      "group": int(grp), "colour": col, "score": float(ex.scores[i]),
                      "iou_gt": None if ex.ious is None else float(ex.ious[i]), "pick": i == ex.predicted})
    (folder / "scores.txt").write_text("\n".join(lines) + "\n")
    doc = {"task": spec.name, "split": ref["split"], "ref_id": ref_id, "sent_id": sent_id, "expression": example.expression,
           "method": cls.name, "shots": shots, "seed": seed, "model": model or spec.default_model,
           "score_rule": ex.info["score_rule"], "predicted": int(ex.predicted), "folder": str(folder),
           "groups": [{"group": g.group, "file": f"group{g.group}.png", "prompt": g.text, "candidates": list(map(int, g.candidates)),
                       "colours": list(g.colours)} for g in ex.groups], "candidates": cands}
    (folder / "scores.json").write_text(json.dumps(doc, indent=1) + "\n")
    if fmt == "json":
        click.echo(json.dumps(doc, indent=1))
        return
    Console().print(table)
    state.log(f"wrote {folder}/: original.png, {len(ex.groups)} painted copies (group<g>.png), scores.txt")
