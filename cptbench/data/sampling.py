"""k-shot sampling: k referring expressions from the train split, the same on every machine.

Two samplers (``--sampler``, or ``--set sampler=...``):

* ``cptbench`` (the default): a generator seeded from sha256("<task>|<k>|<seed>"), never from global
  state or Python's hash order, draws from the (ref_id, sent_id) pairs sorted numerically, so the
  draw does not depend on file order either.
* ``release``: the CPT release's own draw, so its official few-shot subsets can be reproduced: the
  per-expression list in the refer file's ref order (each ref's sentences in order), shuffled by
  CPython's ``random`` seeded with the seed (``random.seed(s); random.shuffle(lst)``), the first k.
  It depends on the file's order, as the release's does.

The result is a manifest with a sha256 over its canonical JSON (the sampler enters it only when it
is not the default, so existing manifests keep their digests).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from typing import Iterable

import numpy as np

#: the k-shot samplers; the first is the default
SAMPLERS = ("cptbench", "release")
DEFAULT_SAMPLER = SAMPLERS[0]


def check_sampler(sampler: str) -> str:
    """``sampler`` if it is one of :data:`SAMPLERS`, else a usage error naming the choices."""
    if sampler not in SAMPLERS:
        from cptbench.core.errors import UsageError

        raise UsageError(f"sampler must be one of {', '.join(SAMPLERS)} (cptbench: seeded from (task, k, seed) over "
                         f"the sorted pairs; release: the CPT release's random.shuffle over the file's order), got {sampler!r}")
    return sampler


@dataclass(frozen=True)
class Manifest:
    """One k-shot draw: the task (and card version), k, the seed, the drawn (ref_id, sent_id) pairs in draw
    order and the sha256 over them."""

    task: str
    task_version: int
    shots: int
    seed: int
    examples: tuple[tuple[int, int], ...]  # (ref_id, sent_id) pairs, in draw order
    sha256: str
    sampler: str = DEFAULT_SAMPLER

    def to_json(self) -> dict:
        """The manifest as a JSON-ready dict (``sampler`` only when it is not the default)."""
        out = {
            "task": self.task, "task_version": self.task_version, "shots": self.shots, "seed": self.seed,
            "examples": [{"ref_id": r, "sent_id": s} for r, s in self.examples], "sha256": self.sha256,
        }
        if self.sampler != DEFAULT_SAMPLER:
            out["sampler"] = self.sampler
        return out

    @classmethod
    def from_json(cls, data: dict) -> "Manifest":
        """A manifest read back from :meth:`to_json`'s dict; raises ``ValueError`` when its sha256 does not
        match its examples."""
        pairs = tuple((int(e["ref_id"]), int(e["sent_id"])) for e in data["examples"])
        sampler = str(data.get("sampler", DEFAULT_SAMPLER))
        m = cls(data["task"], int(data["task_version"]), int(data["shots"]), int(data["seed"]), pairs, data["sha256"],
                sampler)
        if manifest_digest(m.task, m.shots, m.seed, pairs, sampler) != m.sha256:
            raise ValueError("manifest sha256 does not match its examples (the file was edited or corrupted)")
        return m


def rng_for(*parts: object) -> np.random.Generator:
    """A local generator seeded from a stable digest of ``parts``."""
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def manifest_digest(task: str, shots: int, seed: int, pairs: Iterable[tuple[int, int]],
                    sampler: str = DEFAULT_SAMPLER) -> str:
    """The sha256 of a draw's canonical JSON (task, shots, seed, pairs, and the sampler when it is not
    the default)."""
    doc = {"task": task, "shots": shots, "seed": seed, "examples": [list(p) for p in pairs]}
    if sampler != DEFAULT_SAMPLER:
        doc["sampler"] = sampler
    payload = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()


def sample_k_shot(task: str, task_version: int, train_pairs: Iterable[tuple[int, int]], shots: int, seed: int) -> Manifest:
    """Draw ``shots`` distinct expressions from ``train_pairs`` (k = 0 gives an empty manifest)."""
    pool = sorted({(int(r), int(s)) for r, s in train_pairs})
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    if shots > len(pool):
        raise ValueError(f"task {task!r}: {shots} shots asked but the train split has only {len(pool)} expressions")
    if shots == 0:
        chosen: tuple[tuple[int, int], ...] = ()
    else:
        idx = rng_for(task, shots, seed).choice(len(pool), size=shots, replace=False)
        chosen = tuple(pool[i] for i in idx)
    return Manifest(task, task_version, shots, seed, chosen, manifest_digest(task, shots, seed, chosen))


def release_k_shot(task: str, task_version: int, train_pairs: Iterable[tuple[int, int]], shots: int,
                   seed: int) -> Manifest:
    """The CPT release's draw: ``train_pairs`` in the refer file's order (refs in file order, each
    ref's sentences in order), ``random.seed(seed); random.shuffle(pairs)``, the first ``shots``.
    A local ``random.Random(seed)`` gives the very sequence of the seeded module-level generator
    without touching it."""
    pool = [(int(r), int(s)) for r, s in train_pairs]
    if shots < 0:
        raise ValueError(f"shots must be >= 0, got {shots}")
    rng = random.Random(seed)
    rng.shuffle(pool)
    chosen = tuple(pool[:shots])
    return Manifest(task, task_version, shots, seed, chosen, manifest_digest(task, shots, seed, chosen, "release"),
                    "release")


def draw_manifest(task, train_pairs, shots: int, seed: int, sampler: str = DEFAULT_SAMPLER) -> Manifest:
    """The k-shot draw of (``task``, k, seed) with ``sampler`` over the train split's usable
    ``(ref_id, sent_id)`` pairs in file order: the one function every caller uses (runs,
    ``data download`` and ``data check``). A k larger than the pool is a usage error naming the
    split and its size."""
    from cptbench.core.errors import UsageError

    check_sampler(sampler)
    pairs = list(train_pairs)
    if shots > len(pairs):
        raise UsageError(f"task {task.name!r}: -k {shots} asks for more training expressions than its "
                         f"{task.train_split!r} split has ({len(pairs)}); use a smaller -k.")
    if sampler == "release":
        return release_k_shot(task.name, task.version, pairs, shots, seed)
    return sample_k_shot(task.name, task.version, pairs, shots, seed)
