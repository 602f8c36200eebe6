"""What each split of a Hugging Face copy becomes in the refer layout, its row count checked
against the task card's ``expected_counts``, and the known split mix-ups detected:

* jxu124 calls testA "test": renamed when the rows' own ``split`` field or the count says testA.
* A split's shards must all be there (``val-00000-of-00002`` needs ``val-00001-of-00002``); two files
  that each claim to be the whole split (two ``test-00000-of-00001-<hash>.parquet`` side by side, as
  in an older jxu124 revision) are read once when they hold the same rows, else refused.
* lmms-lab's "val" is the unc (umd) val **merged with the google val** (RefCOCO 8,811 rows = 3,811 +
  5,000; RefCOCOg 7,573 = 2,573 + 5,000). The rows alone cannot tell which is which: without the
  refer annotations that split is refused, with them (``--annotations``) it is separated by ref
  (:mod:`cptbench.data.lmms_refer`). lmms-lab's RefCOCO "test" is the google test: never imported.

Any count that does not fit is refused with the counts, the split and the fix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from cptbench.core.errors import DataError
from cptbench.data.hf_inputs import InputFile

_SHARD = re.compile(r"-(\d{5})-of-(\d{5})")
_KEYS = {"jxu124": ("ref_id", "sent_ids"), "lmms-lab": ("file_name", "bbox", "answer")}


@dataclass
class SplitDecision:
    """What one Hugging Face split becomes: the refer split it is imported as (``target``), its
    ``status`` (import | separated | refused | skipped) with the reason, and the files read."""

    hf_split: str
    rows: int
    target: str | None  # refer split, None when it is none of the task's
    status: str
    reason: str
    caveat: str = ""  # what was renamed, separated or left out (recorded in the provenance)
    files: list = field(default_factory=list, repr=False)
    merged: bool = False  # lmms-lab's val holding the google val too

    @property
    def used(self) -> bool:
        """Whether the split's rows are imported (as they are, or separated from a merged split)."""
        return self.status in ("import", "separated")


def expected(task, split: str, what: str = "refs") -> int | None:
    """The card's published count of ``what`` (refs / sentences / images) in ``split``, or None."""
    exp = task.expected_counts.get(split)
    return getattr(exp, what) if exp else None


def _row_keys(f: InputFile, layout: str) -> list:
    cols = _KEYS.get(layout) or [c for c in f.columns if c != "image"]
    return sorted(repr(tuple(r.get(c) for c in cols)) for b in f.batches(list(cols)) for r in b)


def whole_split(hf_split: str, group: list[InputFile], layout: str) -> tuple[list[InputFile], str]:
    """The files of a split to read: every shard once; refused when a shard is missing or two files
    that each claim the whole split differ."""
    shards = [(f, _SHARD.search(f.path.name)) for f in group]
    if not all(m for _, m in shards):
        return group, ""
    counts = {int(m.group(2)) for _, m in shards}
    if len(counts) > 1:
        raise DataError(f"split {hf_split!r}: its files are shards of different sets ({', '.join(f.path.name for f in group)}); "
                        f"files of two downloads are mixed: keep one download's files.")
    n = counts.pop()
    by_index: dict[int, list[InputFile]] = {}
    for f, m in shards:
        by_index.setdefault(int(m.group(1)), []).append(f)
    missing = [i for i in range(n) if i not in by_index]
    if missing:
        raise DataError(f"split {hf_split!r}: shard(s) {', '.join(f'{i:05d}-of-{n:05d}' for i in missing)} missing beside "
                        f"{', '.join(f.path.name for f in group)}; the download is incomplete: download the split again.")
    doubled = {i: fs for i, fs in by_index.items() if len(fs) > 1}
    if not doubled:
        return group, ""
    if n > 1:
        raise DataError(f"split {hf_split!r}: two files are the same shard ({', '.join(f.path.name for fs in doubled.values() for f in fs)}); "
                        f"files of two revisions are mixed: keep one revision's files.")
    files = by_index[0]
    keys = [_row_keys(f, layout) for f in files]
    if any(k != keys[0] for k in keys[1:]):
        raise DataError(f"split {hf_split!r}: {len(files)} files each claim to be the whole split "
                        f"({', '.join(f'{f.path.name} ({f.rows:,} rows)' for f in files)}) but hold different rows; "
                        f"the revision's dataset card lists one of them: pass that file alone (with the other splits' files).")
    keep = max(files, key=lambda f: ("raw_anns" in f.columns, f.path.name))
    left = [f.path.name for f in files if f is not keep]
    return [keep], (f"split {hf_split!r}: {len(files)} files side by side hold the same {keep.rows:,} rows: read "
                    f"{keep.path.name}, left out {', '.join(left)}")


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
    if hf_split == "test" and layout == "lmms-lab":
        return None, (f"lmms-lab's RefCOCO 'test' is the google split's test, not a {task.split_by} split of "
                      f"{task.name}: never imported")
    return None, ""


def plan_import(task, files: Sequence[InputFile], layout: str, splits: Sequence[str] | None = None,
                annotations: bool = False) -> list[SplitDecision]:
    """What each Hugging Face split becomes; counts are checked against the task card. With
    ``annotations`` (the refer files are at hand) a merged lmms-lab val is marked to be separated."""
    by_split: dict[str, list[InputFile]] = {}
    for f in files:
        by_split.setdefault(f.hf_split, []).append(f)
    decisions = []
    for hf_split, group in sorted(by_split.items()):
        group, note = whole_split(hf_split, group, layout)
        rows = sum(f.rows for f in group)
        target, why = _target(task, layout, hf_split, group)
        note = "; ".join(x for x in (note, why if target else "") if x)
        d = SplitDecision(hf_split, rows, target, "import", "", caveat=note, files=group)
        decisions.append(d)
        want = expected(task, target) if target else None
        prefix = note + "; " if note else ""
        if target is None:
            d.status, d.reason = "skipped", why or (f"not a split of {task.name} (splitBy {task.split_by}: "
                                                    f"{', '.join([task.train_split, *task.eval_splits])})")
        elif splits is not None and target not in splits:
            d.status, d.reason = "skipped", f"not asked for (--splits {','.join(splits)})"
        elif want is None:
            d.reason = prefix + f"{task.name}'s card gives no ref count to check"
        elif rows == want:
            d.reason = prefix + f"{rows:,} rows = the published {want:,} refs"
        elif layout == "lmms-lab" and target == "val" and rows > want:
            d.merged = True
            if annotations:
                d.status = "separated"
                d.reason = (f"{rows:,} rows = the {task.split_by} val and {rows - want:,} more (lmms-lab merged the google "
                            f"val in): told apart by ref with --annotations")
            else:
                d.status = "refused"
                d.reason = (f"{rows:,} rows, but {task.name} val has {want:,} refs: lmms-lab's val is the {task.split_by} "
                            f"val merged with the google val ({rows - want:,} more rows), and the rows alone cannot tell "
                            f"which is which")
        else:
            d.status, d.reason = "refused", f"{rows:,} rows, but {task.name} {target} has {want:,} refs"
    seen: dict[str, str] = {}
    for d in decisions:
        if d.used and d.target in seen:
            d.status, d.reason = "refused", f"a second source of {d.target} (also {seen[d.target]})"
        elif d.used:
            seen[d.target] = d.hf_split
    return decisions


def refusal_message(task, decisions: Sequence[SplitDecision], source: str, unit: str = "rows") -> str:
    """Why the import is refused, split by split (``unit``: what a split's count counts), and what to do
    instead."""
    lines = "\n  ".join(f"{d.hf_split} ({d.rows:,} {unit}) -> {d.target or '-'}: {d.status}: {d.reason}" for d in decisions)
    order = [task.train_split, *task.eval_splits]
    good = sorted((d.target for d in decisions if d.used), key=order.index)
    fix = ""
    if any(d.merged and d.status == "refused" for d in decisions):
        fix += (f"For the merged val pass --annotations DIR, the refer folder of {task.dataset} ({task.refs_file} + "
                f"instances.json; `cptbench data download {task.name} --to DIR --no-images` fetches its archive, about "
                f"50 MB): each row is then matched to its ref and only the {task.split_by} val refs are kept.\n")
    fix += (f"Import the splits that check out with --splits {','.join(good)}, " if good else "") + \
        f"or get the refer files instead: `cptbench data download {task.name} --to DIR`."
    return f"{source}: refused to import as {task.name}:\n  {lines}\n{fix}"
