"""Damaged images: `data check` names them, a run refuses them with the file and the repair command,
`data download --repair` fetches them again (checked after download); COCO_train2014_000000167126.jpg,
truncated in the official train2014.zip, is decoded in full wherever images are checked."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cptbench.cli.main import cli
from cptbench.data.catalog import MIRROR_ENV, SOURCES_ENV
from cptbench.data.image_download import IMAGE_MIRROR_ENV, ImageNeed, fetch_images
from cptbench.data.images import KNOWN_DAMAGED, check_image_file
from http_fixture import FileServer
from refer_shapes import IMAGES, write_refer_shapes, write_shapes_card

KNOWN = "COCO_train2014_000000167126.jpg"


@pytest.fixture
def server():
    s = FileServer()
    yield s
    s.close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    write_shapes_card(tmp_path / "cards")
    monkeypatch.setenv("CPTBENCH_TASKS_PATH", str(tmp_path / "cards"))
    monkeypatch.setenv("CPTBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "250")
    for var in (MIRROR_ENV, IMAGE_MIRROR_ENV):
        monkeypatch.delenv(var, raising=False)
    sources = tmp_path / "sources.yaml"  # the images come from the local server only
    sources.write_text(f"format: 1\nannotations: {{}}\nimages:\n  train2014: ['{server.base}/img/{{file_name}}']\n")
    monkeypatch.setenv(SOURCES_ENV, str(sources))
    return tmp_path


def _shapes(tmp_path, server, images=IMAGES):
    s = write_refer_shapes(tmp_path / "refer", images_list=images)
    p = s.dataset_dir / "instances.json"
    data = json.loads(p.read_text())
    for img in data["images"]:  # coco_url on the local server: no test leaves 127.0.0.1
        img["coco_url"] = server.url(f"/img/{img['file_name']}")
    p.write_text(json.dumps(data))
    return s


def _truncate(path):
    data = path.read_bytes()
    good = data
    path.write_bytes(data[: len(data) // 2])  # as an interrupted copy, or the official zip's 167126
    return good


def test_check_names_a_damaged_image_and_a_run_refuses_it_with_the_repair_command(env, server):
    s = _shapes(env, server)
    bad = s.image_dir / "COCO_train2014_000000000049.jpg"  # a val image
    _truncate(bad)
    r = CliRunner().invoke(cli, ["data", "check", "realref", "--data-root", str(s.root), "-k", "1", "--seeds", "0"])
    assert r.exit_code == 1 and f"val: damaged image: {bad}: JPEG image is truncated" in r.output, r.output
    assert f"cptbench data download realref --to {s.root} --repair" in r.output
    r = CliRunner().invoke(cli, ["run", "-t", "realref", "-m", "oracle", "-k", "0", "--data-root", str(s.root),
                                 "--results", str(env / "res"), "--no-leaderboard"])
    assert r.exit_code == 1 and str(bad) in r.output and "Traceback" not in r.output, r.output
    assert f"cptbench data download realref --to {s.root} --repair" in r.output
    assert not (env / "res" / "runs.jsonl").exists()


def test_repair_fetches_damaged_train_images_no_draw_needs_and_checks_them(env, server):
    images = [(167126 if i == 34 else i, w, h, split) for i, w, h, split in IMAGES]  # a train image
    s = _shapes(env, server, images)
    known = s.image_dir / KNOWN
    good = _truncate(known)
    from cptbench.data.image_download import select_images
    from cptbench.data.source import open_dataset
    from cptbench.tasks.cards import get_task

    task = get_task("realref")
    seed = next(sd for sd in range(20) if 167126 not in {n.image_id for n in select_images(
        task, open_dataset(task, s.root), shots=(1,), seeds=(sd,)).needs})
    grid = ["-k", "1", "--seeds", str(seed)]
    r = CliRunner().invoke(cli, ["data", "check", "realref", "--data-root", str(s.root), *grid])
    assert r.exit_code == 1 and f"train: damaged image: {known}" in r.output, r.output
    # a plain download leaves it (no run of this grid reads it); --repair fetches it again
    server.add(f"/img/{KNOWN}", good[: len(good) // 3])  # the server's copy is damaged too: refused after download
    r = CliRunner().invoke(cli, ["data", "download", "realref", "--to", str(s.root), *grid])
    assert r.exit_code == 0 and not server.requests(f"/img/{KNOWN}"), r.output
    r = CliRunner().invoke(cli, ["data", "download", "realref", "--to", str(s.root), "--repair", *grid])
    assert r.exit_code == 1 and "1 damaged image(s) on disk" in r.output and KNOWN in r.output, r.output
    assert "not a usable image" in r.output and known.read_bytes() == good[: len(good) // 2]  # left as it was
    server.add(f"/img/{KNOWN}", good)
    r = CliRunner().invoke(cli, ["data", "download", "realref", "--to", str(s.root), "--repair", *grid])
    assert r.exit_code == 0, r.output
    assert known.read_bytes() == good
    r = CliRunner().invoke(cli, ["data", "check", "realref", "--data-root", str(s.root), *grid])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["data", "download", "realref", "--to", str(s.root), "--repair", "--no-images"])
    assert r.exit_code == 2 and "--no-images" in r.output


def test_the_known_damaged_file_is_decoded_in_full(tmp_path):
    """Damage the cheap check (header, size, end marker) cannot see is caught for 167126 by name."""
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    at = data.find(b"IDAT")
    for k in range(at + 20, at + 60):
        data[k] ^= 0x5A  # a broken data stream; the end marker is intact
    other, known = tmp_path / "COCO_train2014_000000000049.jpg", tmp_path / KNOWN
    other.write_bytes(bytes(data))
    known.write_bytes(bytes(data))
    assert check_image_file(other, (64, 48)) is None  # what the cheap check alone sees
    problem = check_image_file(known, (64, 48))
    assert problem.startswith(f"{known}: cannot decode the image") and KNOWN_DAMAGED[KNOWN] in problem


def test_an_image_without_any_url_fails_cleanly_and_is_named(tmp_path):
    """fetch_images once raised IndexError writing the list of missing URLs for such an image."""
    needs = [ImageNeed(1, "COCO_train2014_000000000001.jpg", (0, 0), ())]
    missing = tmp_path / "missing.txt"
    rep = fetch_images(needs, tmp_path / "img", missing_list=missing)
    assert len(rep.failed) == 1 and rep.without_url == ["COCO_train2014_000000000001.jpg"] and not missing.exists()
    msg = rep.message("refcoco")
    assert "No URL is known for 1 of them (e.g. COCO_train2014_000000000001.jpg)" in msg and "--image-source" in msg
