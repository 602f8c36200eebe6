"""``synthref``: a procedurally generated referring-expression benchmark in the classic refer layout.

The data are generated from the card's ``synthref:`` settings (:class:`~cptbench.tasks.spec.SynthRefSpec`)
on first use into a cache directory, and are read by the same loader as RefCOCO::

    <root>/<dataset>/refs(<split_by>).p   list of refs (plain containers and scalars, pickle protocol 4)
    <root>/<dataset>/instances.json       COCO-style images / annotations / categories
    <root>/<image_dir>/synthref_<12-digit image_id>.png
    <root>/SYNTHREF.json                  provenance: generator version, settings, counts

Splits are by image. Every split has its own seed stream (``seed``, a stable hash of the split
name, the image index), so an image does not change when another split's size does.

testA vs testB (the analogue of RefCOCO's people / other objects):

* ``testA`` targets have a look-alike in the scene (same size, colour and shape), so every testA
  expression needs a position ("the blue circle on the left");
* ``testB`` targets are identifiable by their attributes, and testB expressions use attributes only
  ("the small green square");
* other splits (train, val, ...) mix both kinds of target and expression.

Scenes of testA always contain a group of 2-3 look-alikes; those of the other splits do with
probability 1/2. Palette and geometry are described in :mod:`cptbench.data.scenes`, expressions in
:mod:`cptbench.data.scene_expressions`.

No ordering leaks (generator version 2): nothing about the order of the files tells which candidate
an expression refers to. Objects (= annotations = candidates) are in a random order; an image's refs
are written in the random order they were drawn in; ref ids and sentence ids are random
permutations within each split (drawn from the split's own seed stream), so neither the position
of a ref among its image's refs nor its id says where its target stands among the candidates.
Version 1 sorted an image's refs by target index and numbered refs and sentences consecutively in
that order: a label-free method ranking candidates by its ref's rank among the image's refs scored
far above chance. ``legacy_order=True`` still writes that layout, for the shortcut audit's tests only
(``cptbench data audit`` flags it).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cptbench.tasks.spec import SynthRefSpec, TaskSpec
from cptbench.core.errors import DataError
from cptbench.data.scenes import MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, SHAPES, Scene, sample_scene, scene_rng
from cptbench.data.scene_render import render_scene
from cptbench.data.scene_expressions import needs_position, valid_expressions

#: Bump when the generator's output changes for the same settings (it is part of the cache key).
GENERATOR_VERSION = 2
#: what ``legacy_order=True`` reproduces (refs sorted by target, consecutive ids)
LEGACY_GENERATOR_VERSION = 1

#: Splits with a special target policy (see the module docstring).
POSITION_SPLIT = "testA"
ATTRIBUTE_SPLIT = "testB"

MAX_OBJECTS_LIMIT = 12
_REFS_PER_IMAGE = ((1, 2, 3), (0.5, 0.35, 0.15))
_SENTS_PER_REF = ((1, 2), (0.6, 0.4))
_MAX_SCENE_TRIES = 50


class SynthRefError(DataError):
    """The synthref cache or settings cannot be used; the message says why and what to do."""


def validate_synthref_spec(s: SynthRefSpec) -> None:
    """Raises ``ValueError`` naming the first setting of ``s`` out of range."""
    if not isinstance(s.seed, int) or s.seed < 0:
        raise ValueError(f"synthref.seed must be a non-negative integer, got {s.seed!r}")
    if not (isinstance(s.image_size, int) and MIN_IMAGE_SIZE <= s.image_size <= MAX_IMAGE_SIZE):
        raise ValueError(f"synthref.image_size must be an integer in [{MIN_IMAGE_SIZE}, {MAX_IMAGE_SIZE}], got {s.image_size!r}")
    if not (2 <= s.min_objects <= s.max_objects <= MAX_OBJECTS_LIMIT):
        raise ValueError(
            f"synthref needs 2 <= min_objects <= max_objects <= {MAX_OBJECTS_LIMIT}, got {s.min_objects}..{s.max_objects}"
        )
    if not s.images:
        raise ValueError("synthref.images must name at least one split")
    for split, n in s.images.items():
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"synthref.images.{split} must be a non-negative integer, got {n!r}")


def _settings(s: SynthRefSpec, dataset: str, split_by: str, image_dir: str, legacy_order: bool = False) -> dict[str, Any]:
    out = {
        "generator_version": LEGACY_GENERATOR_VERSION if legacy_order else GENERATOR_VERSION,
        "seed": s.seed,
        "image_size": s.image_size,
        "min_objects": s.min_objects,
        "max_objects": s.max_objects,
        "images": [[k, int(v)] for k, v in s.images.items()],
        "dataset": dataset,
        "split_by": split_by,
        "image_dir": image_dir,
    }
    if legacy_order:
        out["legacy_order"] = True
    return out


def settings_hash(spec: TaskSpec) -> str:
    """Short hash (12 hex digits) of everything that determines the generated files."""
    assert spec.synthref is not None
    blob = json.dumps(_settings(spec.synthref, spec.dataset, spec.split_by, spec.image_dir), sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:12]


def cache_dir_name(spec: TaskSpec) -> str:
    """The cache folder name of ``spec``'s generated files (card version and :func:`settings_hash`)."""
    return f"synthref-v{spec.version}-{settings_hash(spec)}"


def image_file_name(image_id: int) -> str:
    """The file name of synthref image ``image_id``."""
    return f"synthref_{image_id:012d}.png"


def _check_rel(path: str, what: str) -> None:
    p = PurePosixPath(path)
    if not path or p.is_absolute() or ".." in p.parts:
        raise ValueError(f"{what} must be a relative path inside the data root, got {path!r}")


def _is_complete(root: Path, dataset: str, refs_file: str) -> bool:
    return (root / "SYNTHREF.json").is_file() and (root / dataset / refs_file).is_file() and (root / dataset / "instances.json").is_file()


def ensure_synthref(spec: TaskSpec, cache_root: Path) -> Path:
    """The data root of ``spec``'s synthref data, generating it into ``cache_root`` if missing.

    Generation writes into a temporary sibling directory that is renamed into place at the end,
    so an interrupted run leaves no half cache and concurrent callers are safe (the loser of the
    rename race uses the winner's directory). Returns at once when the cache exists.
    """
    if spec.synthref is None:
        raise SynthRefError(f"task {spec.name!r} has no 'synthref:' section; it is not a synthref task")
    cache_root = Path(cache_root)
    final = cache_root / cache_dir_name(spec)
    if _is_complete(final, spec.dataset, spec.refs_file):
        return final
    if final.exists():
        raise SynthRefError(f"{final} exists but is not a complete synthref cache; delete it and run again")
    cache_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=cache_root))
    try:
        generate_synthref(spec.synthref, tmp, spec.dataset, spec.split_by, spec.image_dir)
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or final.exists():
                if _is_complete(final, spec.dataset, spec.refs_file):
                    return final
            raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------


def _split_policy(split: str) -> tuple[str, float]:
    """(target mode, probability of a look-alike group in the scene) for a split."""
    if split == POSITION_SPLIT:
        return "position", 1.0
    if split == ATTRIBUTE_SPLIT:
        return "attributes", 0.5
    return "any", 0.5


def _eligible(scene: Scene, mode: str) -> dict[int, list[str]]:
    """Targets allowed by the split's mode and their candidate expressions."""
    out: dict[int, list[str]] = {}
    for i in range(len(scene.objects)):
        if mode == "position":
            if needs_position(scene, i):
                opts = valid_expressions(scene, i, "position")
                if opts:
                    out[i] = opts
        elif mode == "attributes":
            opts = valid_expressions(scene, i, "attributes")
            if opts:
                out[i] = opts
        else:
            attr = valid_expressions(scene, i, "attributes")
            pos = valid_expressions(scene, i, "position")
            if attr or pos:
                out[i] = [attr, pos]  # type: ignore[list-item]
    return out


def _choose_sentences(rng: np.random.Generator, opts, mode: str) -> list[str]:
    n = int(rng.choice(_SENTS_PER_REF[0], p=_SENTS_PER_REF[1]))
    if mode == "any":
        attr, pos = opts
        # Pick the kind of the first sentence half and half when both exist.
        if attr and pos:
            first_pool = attr if rng.random() < 0.5 else pos
        else:
            first_pool = attr or pos
        first = first_pool[int(rng.integers(len(first_pool)))]
        rest = [e for e in attr + pos if e != first]
    else:
        first = opts[int(rng.integers(len(opts)))]
        rest = [e for e in opts if e != first]
    sents = [first]
    if n > 1 and rest:
        sents.append(rest[int(rng.integers(len(rest)))])
    return sents


def sample_split_image(s: SynthRefSpec, split: str, index: int, *, legacy_order: bool = False
                       ) -> tuple[Scene, list[tuple[int, list[str]]]]:
    """Scene ``index`` of ``split`` and its refs as ``[(object index, [sentence, ...]), ...]``, in the
    random order the targets were drawn in (``legacy_order``: sorted by object index, version 1)."""
    rng = scene_rng(s.seed, split, index)
    mode, p_twins = _split_policy(split)
    for _ in range(_MAX_SCENE_TRIES):
        n = int(rng.integers(s.min_objects, s.max_objects + 1))
        twins = int(rng.integers(1, min(2, n - 1) + 1)) if rng.random() < p_twins else 0
        scene = sample_scene(rng, s.image_size, n, twins=twins)
        eligible = _eligible(scene, mode)
        if eligible:
            break
    else:  # pragma: no cover - needs an absurd spec
        raise SynthRefError(f"no usable scene for split {split!r} image {index} after {_MAX_SCENE_TRIES} tries")
    targets = sorted(eligible)
    n_refs = min(int(rng.choice(_REFS_PER_IMAGE[0], p=_REFS_PER_IMAGE[1])), len(targets))
    chosen = [int(t) for t in rng.choice(targets, size=n_refs, replace=False)]
    if legacy_order:
        chosen.sort()
    return scene, [(t, _choose_sentences(rng, eligible[t], mode)) for t in chosen]


def _plain(obj: Any) -> Any:
    """A canonical copy made of plain JSON types only (lists, dicts, str, int, float, bool, None)."""
    return json.loads(json.dumps(obj, sort_keys=True, allow_nan=False))


def _split_ids(s: SynthRefSpec, split: str, kind: str, start: int, n: int, legacy_order: bool) -> list[int]:
    """Ids ``start .. start + n - 1`` for the split's refs or sentences in writing order: a random
    permutation from the split's own stream (consecutive with ``legacy_order``)."""
    if legacy_order:
        return list(range(start, start + n))
    return [start + int(i) for i in scene_rng(s.seed, f"{split}/{kind}-ids", 0).permutation(n)]


def generate_synthref(spec_synthref: SynthRefSpec, out_root: Path, dataset: str, split_by: str, image_dir: str,
                      *, legacy_order: bool = False) -> dict[str, dict[str, int]]:
    """Write the benchmark files under ``out_root`` (see the module docstring for the layout).

    Deterministic: the same settings give byte-identical files. Returns the counts per split
    ``{split: {"images", "refs", "sentences"}}``. ``legacy_order`` writes version 1's ordering
    (refs sorted by target, consecutive ids): a leaky fixture for the shortcut audit's tests.
    """
    from PIL import Image

    s = spec_synthref
    validate_synthref_spec(s)
    _check_rel(dataset, "dataset")
    _check_rel(image_dir, "image_dir")
    if not split_by or "/" in split_by:
        raise ValueError(f"split_by must be a plain name, got {split_by!r}")
    out_root = Path(out_root)
    ann_dir = out_root / dataset
    img_dir = out_root / image_dir
    ann_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)

    images: list[dict] = []
    annotations: list[dict] = []
    refs: list[dict] = []
    counts: dict[str, dict[str, int]] = {}
    image_id = 0
    ref_id = 0
    sent_id = 0
    for split, n_images in s.images.items():
        c = counts.setdefault(split, {"images": 0, "refs": 0, "sentences": 0})
        scenes = [sample_split_image(s, split, index, legacy_order=legacy_order) for index in range(int(n_images))]
        n_refs = sum(len(r) for _, r in scenes)
        n_sents = sum(len(sents) for _, r in scenes for _, sents in r)
        ref_ids = iter(_split_ids(s, split, "ref", ref_id, n_refs, legacy_order))
        sent_ids = iter(_split_ids(s, split, "sent", sent_id, n_sents, legacy_order))
        ref_id += n_refs
        sent_id += n_sents
        for scene, scene_refs in scenes:
            image_id += 1
            fname = image_file_name(image_id)
            Image.fromarray(render_scene(scene)).save(img_dir / fname, format="PNG")
            images.append({"id": image_id, "file_name": fname, "width": s.image_size, "height": s.image_size})
            ann_ids = []
            for k, obj in enumerate(scene.objects):
                ann_id = image_id * 100 + k  # readable: image 12, object 3 -> 1203
                ann_ids.append(ann_id)
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": obj.category_id,
                        "bbox": [float(v) for v in obj.xywh],
                        "area": round(obj.area, 2),
                        "iscrowd": 0,
                        "segmentation": [[float(v) for v in obj.polygon]],
                    }
                )
            for target, sents in scene_refs:
                obj = scene.objects[target]
                rid = next(ref_ids)
                sentences = []
                for text in sents:
                    sentences.append({"sent_id": next(sent_ids), "sent": text.lower(), "raw": text, "tokens": text.lower().split()})
                refs.append(
                    {
                        "ref_id": rid,
                        "ann_id": ann_ids[target],
                        "image_id": image_id,
                        "category_id": obj.category_id,
                        "split": split,
                        "sent_ids": [x["sent_id"] for x in sentences],
                        "sentences": sentences,
                        "file_name": f"synthref_{image_id:012d}_{rid}.png",
                    }
                )
                c["refs"] += 1
                c["sentences"] += len(sentences)
            c["images"] += 1

    instances = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(SHAPES)],
    }
    (ann_dir / "instances.json").write_text(json.dumps(instances, sort_keys=True, separators=(",", ":")), encoding="utf-8")
    with open(ann_dir / f"refs({split_by}).p", "wb") as fh:
        pickle.dump(_plain(refs), fh, protocol=4)
    meta = {"settings": _settings(s, dataset, split_by, image_dir, legacy_order), "counts": counts}
    (out_root / "SYNTHREF.json").write_text(json.dumps(meta, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    return counts

