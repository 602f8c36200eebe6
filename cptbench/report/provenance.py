"""The command and the versions behind every number.

The command is rebuilt from the records (each record also keeps the command line that computed
it, ``command``, shown as "as launched"; it may name more than that run): one ``cptbench run`` per (task, method config, model, proposals, limit, data policy) and set of seeds, with ``--set``
for every option that differs from the method's defaults under the current task card (card
defaults apply by themselves). Running it again in the same results folder reproduces the same run
ids (finished runs are skipped). Versions, git revisions, devices and dates are collected per command.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Sequence

from cptbench.report.aggregate import default_options, option_value
from cptbench.report.tables import split_order
from cptbench.results.records import RunRecord
from cptbench.report.selection import group_key

#: the record fields that one ``cptbench run`` command holds fixed
JOB_KEYS = ("task", "method", "method_config_hash", "model", "proposals", "limit", "skip_bad")


@dataclass
class Command:
    """A rebuilt ``cptbench run`` command (``id`` ``c1``, ``c2``, ...), the records it reproduces
    and notes on how it was rebuilt."""

    id: str
    argv: list[str]
    records: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        """The command as a shell line."""
        return " ".join(shlex.quote(a) for a in self.argv)

    def versions(self) -> list[tuple[str, int]]:
        """Distinct ``name version, ...`` strings with how many runs had each."""
        seen: dict[str, int] = {}
        for r in self.records:
            text = ", ".join(f"{k} {v}" for k, v in sorted(dict(r.versions).items())) or "not recorded"
            seen[text] = seen.get(text, 0) + 1
        return sorted(seen.items(), key=lambda x: -x[1])

    def distinct(self, attr: str) -> list[str]:
        """The distinct values of a record field over the command's runs (``not recorded`` for empty)."""
        return sorted({str(getattr(r, attr, "") or "not recorded") for r in self.records})

    @property
    def created(self) -> tuple[str, str]:
        """The first and last ``created_at`` of its runs (empty strings when none is recorded)."""
        dates = sorted(r.created_at for r in self.records if r.created_at)
        return (dates[0], dates[-1]) if dates else ("", "")


def _eval_splits(task: str) -> list[str] | None:
    try:
        from cptbench.tasks.cards import get_task

        return list(get_task(task).eval_splits)
    except Exception:
        return None


def _ints(values) -> str:
    return ",".join(str(v) for v in sorted(values))


def build_commands(records: Sequence[RunRecord]) -> tuple[list[Command], dict[tuple, str]]:
    """Commands behind ``records`` and, per aggregation group (:func:`group_key`), its command id."""
    jobs: dict[tuple, list[RunRecord]] = {}
    for r in records:
        jobs.setdefault(tuple(getattr(r, k) for k in JOB_KEYS), []).append(r)
    commands: list[Command] = []
    of_group: dict[tuple, str] = {}
    for key in sorted(jobs, key=lambda k: tuple(str(x) for x in k)):
        recs = jobs[key]
        task, method, _, model, proposals, limit, skip_bad = key
        seeds_of: dict[int, set] = {}
        for r in recs:
            seeds_of.setdefault(r.shots, set()).add(r.seed)
        buckets: dict[tuple, list[int]] = {}
        for k in sorted(seeds_of):
            if k > 0 or len(seeds_of[k]) > 1:
                buckets.setdefault(tuple(sorted(seeds_of[k])), []).append(k)
        for k in (0,) if 0 in seeds_of and len(seeds_of[0]) == 1 else ():
            s = next(iter(seeds_of[0]))
            home = next((b for b in buckets if b[0] == s), None)
            buckets.setdefault(home or (s,), []).insert(0, 0)
        config = dict(recs[0].method_config)
        defaults = default_options(method, task)
        argv_common = ["-t", task, "-m", method]
        if model and model != "none":
            argv_common += ["--model", model]
        notes = []
        if defaults is None:
            sets = sorted(config)
            notes.append(f"method {method!r} or task {task!r} is not available here: every option is given with --set")
        else:
            sets = sorted(k for k in config if option_value(config[k]) != option_value(defaults.get(k, object())))
        for k in sets:
            argv_common += ["--set", f"{k}={option_value(config[k])}"]
        splits = sorted({r.split for r in recs}, key=split_order)
        all_splits = _eval_splits(task)
        if all_splits is None or sorted(splits) != sorted(all_splits):
            argv_common += ["--split", ",".join(splits)]
        if proposals != "gt":
            name = str(proposals).split(":")[1] if str(proposals).count(":") >= 2 else str(proposals)
            argv_common += ["--proposals", name]
            notes.append(f"--proposals: the detections file the runs used ({proposals}: file name and sha256 prefix)")
        if limit:
            argv_common += ["--limit", str(limit)]
        if skip_bad:
            argv_common += ["--skip-bad"]
        for seeds, ks in buckets.items():
            cid = f"c{len(commands) + 1}"
            argv = ["cptbench", "run", *argv_common[:4], "-k", _ints(ks), "--seeds", _ints(seeds), *argv_common[4:]]
            mine = [r for r in recs if r.shots in ks and r.seed in seeds]
            launched = sorted({r.command for r in mine if r.command})
            extra = [f"as launched: {c}" for c in launched[:3]] + (
                [f"... and {len(launched) - 3} more launch commands"] if len(launched) > 3 else [])
            commands.append(Command(cid, argv, mine, list(notes) + extra))
            for r in mine:
                of_group[group_key(r)] = cid
    return commands, of_group
