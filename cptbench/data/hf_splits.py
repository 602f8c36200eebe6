"""What each split of a Hugging Face copy becomes in the refer layout, its row count checked
against the task card's ``expected_counts``, and the known split mix-ups detected:

* jxu124 calls testA "test": renamed when the rows' own ``split`` field or the count says testA.
* lmms-lab "val" has more rows than the unc / umd val split (RefCOCO 8,811 = 3,811 + 5,000): the
  rows that also appear in one of the copy's other splits (its "test") are removed, and the
  correction is accepted only if exactly the published number of refs is left; otherwise that
  split is refused. lmms-lab "test" of RefCOCO / RefCOCO+ is no unc split: never imported.

Any count that does not fit is refused with the counts, the split and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from cptbench.data.hf_inputs import InputFile


@dataclass
class SplitDecision:
    """What one Hugging Face split becomes: the refer split it is imported as (``target``) and its
    ``status`` with the reason, and the rows a correction drops."""

    hf_split: str
    rows: int
    target: str | None  # refer split, None when it is none of the task's
    status: str  # import | corrected | refused | skipped
    reason: str
    drop: set = field(default_factory=set, repr=False)  # row keys removed by a correction
    caveat: str = ""  # what was renamed or corrected (recorded in the provenance)

    @property
    def used(self) -> bool:
        """Whether the split's rows are imported (as they are or corrected)."""
        return self.status in ("import", "corrected")


def _expected_refs(task, split: str) -> int | None:
    exp = task.expected_counts.get(split)
    return exp.refs if exp else None


def lmms_key(row: dict) -> tuple:
    """What identifies an lmms-lab row across the copy's splits: file name, box (to 0.1 px) and the
    normalised expressions."""
    return (str(row.get("file_name")), tuple(round(float(v), 1) for v in row.get("bbox") or ()),
            tuple(str(a).strip().lower() for a in row.get("answer") or ()))


def _target(task, layout: str, hf_split: str, files: Sequence[InputFile]) -> tuple[str | None, str]:
    splits = [task.train_split, *task.eval_splits]
    if hf_split in splits:
        return hf_split, ""
    if hf_split == "validation" and "val" in splits:
        return "val", ""
    if hf_split == "test" and layout == "jxu124" and "testA" in splits:
        values = {r.get("split") for f in files for b in f.batches(["split"]) for r in b} - {None}
        if values and values <= set(splits):
            if values == {"testA"}:
                return "testA", "jxu124 calls testA 'test' (its rows say split 'testA'): imported as testA"
            return None, f"its rows' split field says {sorted(values)}"
        return "testA", "jxu124 calls testA 'test': imported as testA"
    return None, ""


def plan_import(task, files: Sequence[InputFile], layout: str, splits: Sequence[str] | None = None) -> list[SplitDecision]:
    """What each Hugging Face split becomes; counts are checked against the task card."""
    by_split: dict[str, list[InputFile]] = {}
    for f in files:
        by_split.setdefault(f.hf_split, []).append(f)
    decisions = []
    for hf_split, group in sorted(by_split.items()):
        rows = sum(f.rows for f in group)
        target, note = _target(task, layout, hf_split, group)
        if target is None:
            why = note or f"not a split of {task.name} (splitBy {task.split_by}: {', '.join([task.train_split, *task.eval_splits])})"
            decisions.append(SplitDecision(hf_split, rows, None, "skipped", why))
            continue
        if splits is not None and target not in splits:
            decisions.append(SplitDecision(hf_split, rows, target, "skipped", f"not asked for (--splits {','.join(splits)})"))
            continue
        want = _expected_refs(task, target)
        if want is None:
            decisions.append(SplitDecision(hf_split, rows, target, "import",
                                           (note + "; " if note else "") + f"{task.name}'s card gives no ref count to check",
                                           caveat=note))
        elif rows == want:
            decisions.append(SplitDecision(hf_split, rows, target, "import",
                                           (note + "; " if note else "") + f"{rows:,} rows = the published {want:,} refs",
                                           caveat=note))
        else:
            decisions.append(SplitDecision(hf_split, rows, target, "refused",
                                           f"{rows:,} rows, but {task.name} {target} has {want:,} refs"))
    _correct_lmms_val(task, layout, decisions, by_split)
    seen: dict[str, str] = {}
    for d in decisions:
        if d.used and d.target in seen:
            d.status, d.reason = "refused", f"a second source of {d.target} (also {seen[d.target]})"
        elif d.used:
            seen[d.target] = d.hf_split
    return decisions


def _correct_lmms_val(task, layout: str, decisions: list[SplitDecision], by_split: dict[str, list[InputFile]]) -> None:
    """lmms-lab val mixes in rows of another split: drop the rows also found in the copy's other
    splits, and accept only if exactly the published number is left."""
    if layout != "lmms-lab":
        return
    for d in decisions:
        want = _expected_refs(task, d.target) if d.target else None
        if d.status != "refused" or want is None or d.rows <= want:
            continue
        others = [o for o in decisions if o is not d and o.status == "skipped" and o.target is None]
        keys = {lmms_key(r) for o in others for f in by_split[o.hf_split]
                for b in f.batches(["file_name", "bbox", "answer"]) for r in b}
        mine = [lmms_key(r) for f in by_split[d.hf_split] for b in f.batches(["file_name", "bbox", "answer"]) for r in b]
        drop = {k for k in mine if k in keys}
        left = sum(1 for k in mine if k not in drop)
        names = ", ".join(repr(o.hf_split) for o in others) or "none"
        if others and left == want:
            d.status, d.drop = "corrected", drop
            d.reason = (f"{d.rows:,} rows = {want:,} {d.target} refs + {d.rows - want:,} rows of split(s) {names}: "
                        f"those were removed, the published {want:,} refs are left")
            d.caveat = f"{d.hf_split} corrected: {d.reason}"
        else:
            d.reason += (f"; removing the rows also in the copy's other split(s) ({names}) leaves {left:,}, not {want:,}: "
                         f"which rows are {task.name} {d.target} cannot be told")


def refusal_message(task, decisions: Sequence[SplitDecision], source: str) -> str:
    """Why the import is refused, split by split, and what to do instead."""
    lines = "\n  ".join(f"{d.hf_split} ({d.rows:,} rows) -> {d.target or '-'}: {d.status}: {d.reason}" for d in decisions)
    order = [task.train_split, *task.eval_splits]
    good = sorted((d.target for d in decisions if d.used), key=order.index)
    fix = (f"Import the splits that check out with --splits {','.join(good)}, " if good else "") + \
          f"or get the refer files instead: `cptbench data download {task.name} --to DIR`."
    return f"{source}: refused to import as {task.name}:\n  {lines}\n{fix}"
