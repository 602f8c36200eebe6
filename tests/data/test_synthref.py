"""synthref: the procedural referring-expression benchmark (generator, scenes, cache)."""

from __future__ import annotations

import collections
import hashlib
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from cptbench.data import synthref as sr
from cptbench.data.scenes import COLOURS, PALETTE, Scene, make_object, sample_scene, scene_rng
from cptbench.data.scene_render import object_mask, render_scene
from cptbench.data.scene_expressions import (POSITIONS, ExprParts, expression_text, needs_position, parse_expression,
                                             resolve_expression, valid_expressions)
from cptbench.tasks.spec import SynthRefSpec, TaskSpec

SMALL = SynthRefSpec(seed=3, image_size=64, min_objects=3, max_objects=8, images={"train": 10, "val": 6, "testA": 8, "testB": 8})


def _task(synth: SynthRefSpec = SMALL, version: int = 1) -> TaskSpec:
    return TaskSpec(
        name="synthref",
        version=version,
        description="test",
        source="synthref",
        dataset="synthref",
        split_by="synth",
        train_split="train",
        eval_splits=("val", "testA", "testB"),
        default_model="bundled:mini-vilt",
        image_dir="images",
        synthref=synth,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthref")
    sr.generate_synthref(SMALL, root, "synthref", "synth", "images")
    return root


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module, name):  # any class reference means a non-plain object
        raise pickle.UnpicklingError(f"refused {module}.{name}")


def _load(root: Path):
    refs = _PlainUnpickler(io.BytesIO((root / "synthref" / "refs(synth).p").read_bytes())).load()
    inst = json.loads((root / "synthref" / "instances.json").read_text())
    return refs, inst


def _tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generation_is_deterministic(generated, tmp_path):
    sr.generate_synthref(SMALL, tmp_path, "synthref", "synth", "images")
    assert _tree_digest(tmp_path) == _tree_digest(generated)
    # A different seed gives different data.
    other = tmp_path / "other"
    sr.generate_synthref(SynthRefSpec(seed=4, images=SMALL.images), other, "synthref", "synth", "images")
    assert (other / "synthref" / "refs(synth).p").read_bytes() != (generated / "synthref" / "refs(synth).p").read_bytes()


def test_layout_and_plain_pickle(generated):
    refs, inst = _load(generated)  # the restricted unpickler refuses any class

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return x is None or type(x) in (str, int, float, bool)

    assert isinstance(refs, list) and plain(refs)
    assert set(inst) == {"images", "annotations", "categories"}
    assert [c["name"] for c in inst["categories"]] == ["circle", "square", "triangle", "diamond"]
    images = {im["id"]: im for im in inst["images"]}
    anns = {a["id"]: a for a in inst["annotations"]}
    assert len(images) == len(inst["images"]) and len(anns) == len(inst["annotations"])
    for im in inst["images"]:
        assert im["file_name"] == f"synthref_{im['id']:012d}.png"
        assert (generated / "images" / im["file_name"]).is_file()
        assert im["width"] == im["height"] == SMALL.image_size
    ref_ids, sent_ids = set(), set()
    for r in refs:
        assert set(r) == {"ref_id", "ann_id", "image_id", "category_id", "split", "sent_ids", "sentences", "file_name"}
        assert r["ref_id"] not in ref_ids
        ref_ids.add(r["ref_id"])
        ann = anns[r["ann_id"]]
        assert ann["image_id"] == r["image_id"] and ann["category_id"] == r["category_id"]
        assert r["file_name"] == f"synthref_{r['image_id']:012d}_{r['ref_id']}.png"
        assert 1 <= len(r["sentences"]) <= 2 and r["sent_ids"] == [s["sent_id"] for s in r["sentences"]]
        for s in r["sentences"]:
            assert s["sent_id"] not in sent_ids
            sent_ids.add(s["sent_id"])
            assert s["sent"] == s["sent"].lower() and not s["sent"].endswith(".")
            assert s["tokens"] == s["sent"].split()
    meta = json.loads((generated / "SYNTHREF.json").read_text())
    for split, n in SMALL.images.items():
        c = meta["counts"][split]
        assert c["images"] == n
        assert c["refs"] == sum(r["split"] == split for r in refs)
        assert c["sentences"] == sum(len(r["sentences"]) for r in refs if r["split"] == split)


def test_splits_are_disjoint_by_image(generated):
    refs, inst = _load(generated)
    split_of_image: dict[int, str] = {}
    for r in refs:
        assert split_of_image.setdefault(r["image_id"], r["split"]) == r["split"]
    per_split = collections.Counter(split_of_image.values())
    assert per_split == dict(SMALL.images)  # every image has at least one ref
    # No two images have the same pixels (so no scene is shared across splits either).
    digests = [hashlib.sha256((generated / "images" / im["file_name"]).read_bytes()).hexdigest() for im in inst["images"]]
    assert len(set(digests)) == len(digests)


def test_candidates_and_boxes(generated):
    _, inst = _load(generated)
    per_image = collections.Counter(a["image_id"] for a in inst["annotations"])
    assert set(per_image.values()) <= set(range(3, 9))
    n = SMALL.image_size
    for a in inst["annotations"]:
        x, y, w, h = a["bbox"]
        assert all(isinstance(v, float) for v in a["bbox"])
        assert 0 <= x and 0 <= y and w > 0 and h > 0 and x + w <= n and y + h <= n
        (poly,) = a["segmentation"]
        xs, ys = poly[0::2], poly[1::2]
        assert len(poly) >= 6 and len(poly) % 2 == 0
        assert (min(xs), min(ys)) == pytest.approx((x, y), abs=1e-6)
        assert (max(xs), max(ys)) == pytest.approx((x + w, y + h), abs=1e-6)
        assert 0 < a["area"] <= w * h + 0.01 and a["iscrowd"] == 0


def _split_images():
    for split, n in SMALL.images.items():
        for index in range(n):
            yield split, index


def test_written_refs_match_scenes_and_expressions_are_unique(generated):
    refs, inst = _load(generated)
    anns_by_image = collections.defaultdict(list)
    for a in inst["annotations"]:
        anns_by_image[a["image_id"]].append(a)
    refs_by_image = collections.defaultdict(list)
    for r in refs:
        refs_by_image[r["image_id"]].append(r)
    image_id = 0
    for split, index in _split_images():
        image_id += 1
        scene, scene_refs = sr.sample_split_image(SMALL, split, index)
        anns = anns_by_image[image_id]
        assert len(anns) == len(scene.objects)
        for a, obj in zip(anns, scene.objects):
            assert a["bbox"] == pytest.approx(list(obj.xywh))
        written = refs_by_image[image_id]
        assert [(r["ann_id"], [s["sent"] for s in r["sentences"]]) for r in written] == [
            (anns[t]["id"], sents) for t, sents in scene_refs
        ]
        assert 1 <= len(written) <= 3
        for target, sents in scene_refs:
            assert len(set(sents)) == len(sents)
            for s in sents:
                assert resolve_expression(scene, s) == [target], (split, index, s)
                has_pos = any(w in POSITIONS for w in s.split())
                if split == "testA":
                    assert has_pos and needs_position(scene, target)
                elif split == "testB":
                    assert not has_pos and not needs_position(scene, target)


def test_resolver_semantics():
    def obj(shape, colour, size, x, y):
        return make_object(shape, colour, PALETTE[colour], size, (x, y), 4.5 if size == "small" else 9.0)

    scene = Scene(
        64,
        (210, 210, 210),
        (
            obj("circle", "blue", "small", 10, 10),
            obj("circle", "blue", "small", 50, 12),
            obj("circle", "blue", "big", 30, 50),
            obj("square", "green", "big", 52, 48),
        ),
    )
    assert resolve_expression(scene, "the blue circle") == [0, 1, 2]
    assert resolve_expression(scene, "the small blue circle on the left") == [0]
    assert resolve_expression(scene, "the right small blue circle") == [1]
    assert resolve_expression(scene, "the big circle") == [2]
    assert resolve_expression(scene, "the circle at the bottom") == [2]
    assert resolve_expression(scene, "the square") == [3]
    assert resolve_expression(scene, "the square on the right") == [3]  # lone object on that side
    assert resolve_expression(scene, "the square on the left") == []  # lone object on the other side
    assert resolve_expression(scene, "the small circle at the top") == [0, 1]  # within the margin: ambiguous
    assert resolve_expression(scene, "the small circle at the bottom") == []  # both are at the top
    assert needs_position(scene, 0) and not needs_position(scene, 2)
    opts = valid_expressions(scene, 0)
    assert "the small blue circle on the left" in opts and all(resolve_expression(scene, e) == [0] for e in opts)
    assert valid_expressions(scene, 0, "attributes") == []
    assert all(not any(w in POSITIONS for w in e.split()) for e in valid_expressions(scene, 3, "attributes"))
    for text in opts + ["the top big yellow diamond", "the triangle"]:
        assert expression_text(parse_expression(text)) == text
    for bad in ["a circle", "the red circle", "the circle on top", "the left circle on the left", "the blue"]:
        with pytest.raises(ValueError):
            parse_expression(bad)
    assert parse_expression("the left small blue circle") == ExprParts("circle", "small", "blue", "left", True)


def test_sample_and_render():
    for image_size in (32, 64, 200, 384):
        for k in range(6):
            rng = scene_rng(0, "render-test", k)
            n = 3 + k
            scene = sample_scene(rng, image_size, n, twins=min(2, n - 1))
            assert len(scene.objects) == n
            looks = collections.Counter(o.attributes for o in scene.objects)
            assert max(looks.values()) >= 3
            img = render_scene(scene)
            assert img.shape == (image_size, image_size, 3) and img.dtype == np.uint8
            masks = [object_mask(o, image_size) for o in scene.objects]
            assert (np.sum(masks, axis=0) <= 1).all()  # no overlap
            for o, m in zip(scene.objects, masks):
                assert o.colour in COLOURS
                cx, cy = o.center
                assert tuple(img[int(cy), int(cx)]) == o.rgb
                x1, y1, x2, y2 = o.xyxy
                assert 0 <= x1 < x2 <= image_size and 0 <= y1 < y2 <= image_size
                rows, cols = np.nonzero(m)
                assert m.sum() > 0
                # The mask lies inside the box and reaches (within 1.5 px) each of its sides.
                assert cols.min() >= np.floor(x1) and cols.max() + 1 <= np.ceil(x2)
                assert rows.min() >= np.floor(y1) and rows.max() + 1 <= np.ceil(y2)
                assert abs(cols.min() - x1) <= 1.5 and abs(cols.max() + 1 - x2) <= 1.5
                assert abs(rows.min() - y1) <= 1.5 and abs(rows.max() + 1 - y2) <= 1.5
    # The same rng state gives the same scene; rendering at another size scales it.
    a = sample_scene(scene_rng(1, "x", 0), 64, 5)
    assert a == sample_scene(scene_rng(1, "x", 0), 64, 5)
    assert render_scene(a, 128).shape == (128, 128, 3)
    # Palette colours stay away from CPT's red paint (240, 0, 30).
    for rgb in PALETTE.values():
        assert not (rgb[0] > 150 and rgb[1] < 120 and rgb[2] < 120)


def test_ensure_synthref_caches_and_is_atomic(tmp_path, monkeypatch):
    task = _task()
    name = sr.cache_dir_name(task)
    assert name.startswith("synthref-v1-") and len(name) == len("synthref-v1-") + 12
    # A leftover temp directory of an interrupted run does not get in the way.
    junk = tmp_path / f".{name}.tmp-leftover"
    (junk / "synthref").mkdir(parents=True)
    (junk / "synthref" / "instances.json").write_text("{")
    root = sr.ensure_synthref(task, tmp_path)
    assert root == tmp_path / name
    assert (root / "synthref" / "refs(synth).p").is_file() and (root / "images").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, junk.name])  # our temp dir is gone
    before = _tree_digest(root)
    mtime = (root / "synthref" / "instances.json").stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("the cache exists: must not regenerate")

    monkeypatch.setattr(sr, "generate_synthref", boom)
    assert sr.ensure_synthref(task, tmp_path) == root
    assert (root / "synthref" / "instances.json").stat().st_mtime_ns == mtime and _tree_digest(root) == before
    monkeypatch.undo()

    # A changed card (settings or version) gets its own cache directory.
    other = _task(SynthRefSpec(seed=4, images={"train": 2, "val": 2, "testA": 2, "testB": 2}))
    assert sr.cache_dir_name(other) != name and sr.cache_dir_name(_task(version=2)) != name


def test_ensure_synthref_interrupted_and_race(tmp_path, monkeypatch):
    task = _task(SynthRefSpec(seed=5, images={"train": 3, "val": 2, "testA": 2, "testB": 2}))
    final = tmp_path / sr.cache_dir_name(task)
    real = sr.generate_synthref

    def interrupted(s, out_root, *a):
        real(s, out_root, *a)
        raise KeyboardInterrupt

    monkeypatch.setattr(sr, "generate_synthref", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sr.ensure_synthref(task, tmp_path)
    assert list(tmp_path.iterdir()) == []  # no half cache, no temp directory

    # Another process finishes first: the rename fails and the existing cache is used.
    def racing(s, out_root, dataset, split_by, image_dir):
        real(s, final, dataset, split_by, image_dir)  # "the other process"
        real(s, out_root, dataset, split_by, image_dir)

    monkeypatch.setattr(sr, "generate_synthref", racing)
    assert sr.ensure_synthref(task, tmp_path) == final
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_card_counts_match_generator(tmp_path):
    from cptbench.tasks.cards import get_task

    spec = get_task("synthref")
    assert spec.source == "synthref" and spec.image_dir == "images" and spec.synthref is not None
    assert spec.eval_splits == ("val", "testA", "testB") and spec.train_split == "train"
    root = sr.ensure_synthref(spec, tmp_path)
    counts = json.loads((root / "SYNTHREF.json").read_text())["counts"]
    for split, expected in spec.expected_counts.items():
        assert counts[split] == {"images": expected.images, "refs": expected.refs, "sentences": expected.sentences}, split
    for split in spec.eval_splits:
        assert 100 <= counts[split]["sentences"] <= 150


def test_invalid_settings(tmp_path):
    for bad in (
        SynthRefSpec(image_size=16),
        SynthRefSpec(min_objects=5, max_objects=4),
        SynthRefSpec(max_objects=20),
        SynthRefSpec(seed=-1),
    ):
        with pytest.raises(ValueError):
            sr.generate_synthref(bad, tmp_path, "synthref", "synth", "images")
    with pytest.raises(ValueError):
        sr.generate_synthref(SMALL, tmp_path, "synthref", "synth", "../escape")
    assert not os.path.exists(tmp_path.parent / "escape")


def test_refer_loader_reads_synthref(generated):
    from cptbench.data.refer import ReferDataset

    ds = ReferDataset(generated, "synthref", "synth", generated / "images")
    meta = json.loads((generated / "SYNTHREF.json").read_text())["counts"]
    for split, c in meta.items():
        data = ds.load_split(split)
        assert (len(data.examples), data.n_refs, len(data.image_ids)) == (c["sentences"], c["refs"], c["images"])
        for ex in data.examples[:3]:
            assert ex.image().shape[:2] == ex.image_size[::-1] and 3 <= len(ex.boxes) <= 8


def _refs_by_image(refs):
    out = collections.defaultdict(list)
    for r in refs:
        out[r["image_id"]].append(r)
    return out


def _target_index(inst):
    by_image = collections.defaultdict(list)
    for a in inst["annotations"]:
        by_image[a["image_id"]].append(a["id"])
    return {ann: i for anns in by_image.values() for i, ann in enumerate(anns)}


def test_no_ordering_leak_ids_are_permuted_within_each_split(generated):
    """Version 2: the ref and sentence ids of a split are a permutation of its id range, in an order
    unrelated to where the targets stand among the candidates."""
    refs, inst = _load(generated)
    for split in SMALL.images:
        mine = [r for r in refs if r["split"] == split]
        ids = [r["ref_id"] for r in mine]
        sents = [s for r in mine for s in r["sent_ids"]]
        assert sorted(ids) == list(range(min(ids), min(ids) + len(ids))) and ids != sorted(ids)
        assert sorted(sents) == list(range(min(sents), min(sents) + len(sents))) and sents != sorted(sents)
    meta = json.loads((generated / "SYNTHREF.json").read_text())["settings"]
    assert meta["generator_version"] == sr.GENERATOR_VERSION == 2 and "legacy_order" not in meta


def test_ref_order_within_an_image_says_nothing_about_the_target():
    """Over many scenes, the order refs are drawn (and written) in agrees with the targets' candidate
    order only as often as chance: 1/2 for two refs, 1/6 for three. Version 1 always agreed."""
    spec = SynthRefSpec(seed=7, images={"val": 400})
    agree = collections.Counter()
    total = collections.Counter()
    relative, first, chance = [], [], []
    for index in range(400):
        scene, new = sr.sample_split_image(spec, "val", index)
        _, old = sr.sample_split_image(spec, "val", index, legacy_order=True)
        assert sorted(t for t, _ in new) == [t for t, _ in old]  # the same targets, in another order
        n = len(scene.objects)
        for t, _ in new:  # candidate (annotation) order: the target is anywhere alike
            relative.append(t / (n - 1))
            first.append(t == 0)
            chance.append(1 / n)
        if len(new) > 1:
            targets = [t for t, _ in new]
            total[len(new)] += 1
            agree[len(new)] += targets == sorted(targets)
    assert total[2] > 100 and abs(agree[2] / total[2] - 0.5) < 0.1
    assert total[3] > 20 and agree[3] / total[3] < 0.35
    assert abs(np.mean(relative) - 0.5) < 0.05 and abs(np.mean(first) - np.mean(chance)) < 0.06


def test_legacy_order_fixture_is_version_one(tmp_path):
    """``legacy_order`` writes version 1's layout (the audit's leaky fixture): refs of an image
    sorted by target, ref and sentence ids consecutive in that order."""
    sr.generate_synthref(SMALL, tmp_path, "synthref", "synth", "images", legacy_order=True)
    refs, inst = _load(tmp_path)
    assert [r["ref_id"] for r in refs] == list(range(len(refs)))
    assert [s for r in refs for s in r["sent_ids"]] == list(range(sum(len(r["sent_ids"]) for r in refs)))
    position = _target_index(inst)
    for image_refs in _refs_by_image(refs).values():
        targets = [position[r["ann_id"]] for r in image_refs]
        assert targets == sorted(targets)
    meta = json.loads((tmp_path / "SYNTHREF.json").read_text())["settings"]
    assert meta["generator_version"] == 1 and meta["legacy_order"] is True
