"""The COCO images a benchmark run will read, and fetching only those over HTTP.

:func:`select_images` lists the images runs will need: the eval splits' plus those of the k-shot
training draws (drawn exactly as the runner draws them), or the whole train split;
:func:`fetch_images` fetches them by file name with a bounded thread pool and reports fetched /
skipped (already present and valid) / failed. Every image is verified: header, annotated size, end
marker and a full decode (:func:`cptbench.data.images.verify_image`).
"""

from __future__ import annotations

import os
import urllib.parse
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from cptbench.core.defaults import DEFAULT_SEEDS
from cptbench.data.catalog import Catalog, join_url, load_catalog
from cptbench.data.fetch import (EventFn, FetchError, HostGate, HttpPolicy, ProgressFn, fetch_first, no_event,
                                 no_progress)
from cptbench.data.images import verify_image

IMAGE_MIRROR_ENV = "CPTBENCH_IMAGE_MIRROR"
#: URLs of the images that could not be fetched, for a manual download (beside the annotations)
MISSING_IMAGES_FILE = "cptbench-missing-images.txt"


@dataclass(frozen=True)
class ImageNeed:
    """One image a run reads: its id, file name, annotated size and the URLs to try in order."""

    image_id: int
    file_name: str
    size: tuple[int, int]  # (W, H) from the annotations; (0, 0) when unknown
    urls: tuple[str, ...]


@dataclass
class ImageSelection:
    """The images to fetch, counted per reason, with notes on the k the split cannot give and a description
    of the selection."""

    needs: list[ImageNeed]
    counts: dict[str, int]  # images per reason: eval splits, k-shot draws (new ones), whole train split
    notes: list[str]
    description: str


def image_urls(file_name: str, coco_url: str | None, catalog: Catalog, image_sources: Sequence[str] = ()) -> tuple[str, ...]:
    """The URLs to try for one image, in order: ``image_sources``, the image mirror, the record's
    ``coco_url`` (when it names this file), then the sources file's patterns."""
    out = [join_url(p, file_name) for p in image_sources]
    mirror = os.environ.get(IMAGE_MIRROR_ENV, "").strip()
    if mirror:
        out.append(join_url(mirror, file_name))
    if coco_url and coco_url.rstrip("/").rpartition("/")[2] == file_name:
        out.append(coco_url)
    out += [p.format(file_name=urllib.parse.quote(file_name)) for p in catalog.image_patterns]
    return tuple(dict.fromkeys(out))


#: the k-shot grid whose training images ``data download`` fetches and ``data check`` requires
#: (the CLI defaults of -k / --seeds are derived from these)
DEFAULT_SHOTS = (1, 2, 4, 8, 16)


def kshot_images(task, ds, shots: Sequence[int], seeds: Sequence[int], *, strict: bool = False) -> tuple[set[int], list[str]]:
    """The image ids of the k-shot training draws (each k > 0 x seed): the very manifests a run
    draws (:func:`cptbench.data.sampling.draw_manifest` over the usable train pairs: the pool with
    degenerate expressions left out is the one every run that can run draws from), and notes on the
    k that the split cannot give."""
    from cptbench.data.sampling import draw_manifest

    ref_image = {int(r["ref_id"]): int(r["image_id"]) for r in ds.refs_of(task.train_split)}
    if not ref_image:
        return set(), []
    pairs = ds.pairs(task.train_split, skip_bad=True, strict=strict)
    n_pairs = len(pairs)
    ids: set[int] = set()
    notes = []
    for k in sorted({int(k) for k in shots if int(k) > 0}):
        if k > n_pairs:
            notes.append(f"k={k} left out: the {task.train_split!r} split has only {n_pairs} usable expressions")
            continue
        for seed in seeds:
            ids |= {ref_image[r] for r, _ in draw_manifest(task, pairs, k, int(seed)).examples}
    return ids, notes


def select_images(task, ds, *, shots: Sequence[int] = DEFAULT_SHOTS, seeds: Sequence[int] = DEFAULT_SEEDS,
                  all_train: bool = False, image_sources: Sequence[str] = (), catalog: Catalog | None = None,
                  strict: bool = False, repair: Sequence[int] = ()) -> ImageSelection:
    """The images a run of ``task`` reads: every image of the eval splits, plus the images of the
    k-shot training expressions for each (k, seed), drawn with :func:`cptbench.data.sampling.sample_k_shot`
    exactly as a run draws them (:func:`kshot_images`; ``strict``: under --strict-data); or, with
    ``all_train``, every image of the train split. ``repair``: damaged images on disk
    (:func:`damaged_images`) to fetch again as well."""
    catalog = catalog or load_catalog()
    eval_ids: set[int] = set()
    for split in task.eval_splits:
        eval_ids |= {int(r["image_id"]) for r in ds.refs_of(split)}
    notes: list[str] = []
    if all_train:
        train_ids = {int(r["image_id"]) for r in ds.refs_of(task.train_split)}
        what = "whole train split"
        description = f"eval splits {', '.join(task.eval_splits)} + the whole {task.train_split} split"
    else:
        train_ids, notes = kshot_images(task, ds, shots, seeds, strict=strict)
        what = "k-shot draws"
        description = (f"eval splits {', '.join(task.eval_splits)} + the k-shot training images for k in "
                       f"{','.join(map(str, shots))} x seeds {','.join(map(str, seeds))}")
    damaged = {int(i) for i in repair} - eval_ids - train_ids
    needs = []
    for image_id in sorted(eval_ids | train_ids | damaged):
        info = ds.coco.imgs[image_id]
        name = ds.image_path(image_id).name
        needs.append(ImageNeed(image_id, name, ds.image_size(image_id), image_urls(name, info.get("coco_url"), catalog, image_sources)))
    counts = {"eval splits": len(eval_ids), what: len(train_ids - eval_ids)}
    if repair:
        counts["damaged images"] = len(set(map(int, repair)))
        description += f" + {len(set(map(int, repair)))} damaged image(s) to fetch again"
    return ImageSelection(needs, counts, notes, description)


def damaged_images(ds, image_ids, *, jobs: int = 8, progress: ProgressFn = no_progress) -> list[tuple[int, str]]:
    """(image id, what is wrong) of the images of ``image_ids`` whose file is on disk but is not a
    complete image of its annotated size (a full decode, :func:`cptbench.data.images.verify_image`,
    in ``jobs`` threads: the decoder releases the GIL). Missing files are not listed."""
    present = [i for i in sorted(set(image_ids)) if ds.image_path(i).is_file()]
    out: list[tuple[int, str]] = []
    progress("checking images", 0, len(present))
    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        results = pool.map(lambda i: (i, verify_image(ds.image_path(i), ds.image_size(i))), present)
        for n, (image_id, problem) in enumerate(results, 1):
            if problem:
                out.append((image_id, problem))
            progress("checking images", n, len(present))
    return out


def _not_an_image(path: Path, size) -> str | None:
    problem = verify_image(path, size)
    if problem is None:
        return None
    head = path.read_bytes()[:64].lstrip().lower()
    looks = " (it looks like an HTML page: a proxy or an error page?)" if head.startswith((b"<!doctype", b"<html", b"<?xml")) else ""
    return f"not a usable image: {problem.split(': ', 1)[-1]}{looks}"


@dataclass
class ImageFetchReport:
    """What :func:`fetch_images` did: images fetched, skipped (already valid) and failed (each with why),
    and the hosts found unreachable."""

    image_dir: Path
    needed: int
    fetched: int = 0
    skipped: int = 0  # already present and valid
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    unreachable_hosts: dict[str, str] = field(default_factory=dict)
    missing_list: Path | None = None
    without_url: list[str] = field(default_factory=list)  # failed images no source names a URL for

    @property
    def offline(self) -> bool:
        """Whether nothing could be fetched because the image hosts could not be reached (no network)."""
        return bool(self.failed) and self.fetched == 0 and bool(self.unreachable_hosts)

    def message(self, task_name: str = "", archive: str = "") -> str:
        """What went wrong and what to do by hand (empty when nothing failed)."""
        if not self.failed:
            return ""
        shown = "\n  ".join(f"{n}: {why}" for n, why in self.failed[:5])
        more = f"\n  ... and {len(self.failed) - 5} more" if len(self.failed) > 5 else ""
        listed = (f"Their URLs are listed in {self.missing_list}: fetch them by hand into {self.image_dir} "
                  f"(e.g. `wget -nc -i '{self.missing_list}' -P '{self.image_dir}'`)") if self.missing_list else \
                 f"Put them into {self.image_dir}"
        whole = f", or unpack the whole COCO train2014 archive ({archive}) there" if archive else ""
        if self.without_url:
            listed += (f". No URL is known for {len(self.without_url)} of them (e.g. {self.without_url[0]}): give "
                       f"--image-source URL_PREFIX or set $CPTBENCH_IMAGE_MIRROR, or put them into {self.image_dir}")
        again = f" Then run `cptbench data download {task_name} ...` again (valid images are kept, partial ones resume)."
        head = ("no network? the image host(s) could not be reached: " +
                "; ".join(f"{h} ({why})" for h, why in self.unreachable_hosts.items()) + ".\n  ") if self.offline else ""
        return (f"{head}{len(self.failed)} of the {self.needed} images needed could not be fetched:\n  {shown}{more}\n"
                f"{listed}{whole}.{again}")


def fetch_images(needs: Sequence[ImageNeed], image_dir: str | Path, *, policy: HttpPolicy = HttpPolicy(),
                 jobs: int = 8, progress: ProgressFn = no_progress, event: EventFn = no_event,
                 missing_list: Path | None = None) -> ImageFetchReport:
    """Fetch the images of ``needs`` into ``image_dir`` by file name (a bounded pool of ``jobs``
    threads; each image tries its URLs in order, with retries and resume); images already there
    and valid are skipped, invalid ones fetched again. ``missing_list``: where to write the URLs of
    the images that failed (removed when none failed)."""
    image_dir = Path(image_dir)
    image_dir.mkdir(parents=True, exist_ok=True)
    report = ImageFetchReport(image_dir, len(needs))
    gate = HostGate()

    def one(need: ImageNeed) -> tuple[str, str]:
        dest = image_dir / need.file_name
        if dest.exists() and verify_image(dest, need.size) is None:
            return "skipped", ""
        try:  # an invalid file already there is replaced only by a verified one
            got, _ = fetch_first(need.urls, dest, gate=gate, policy=policy,
                                 check=lambda p: _not_an_image(p, need.size))
        except FetchError as exc:
            tried = getattr(exc, "failures", [exc])
            return "failed", "; ".join(f"{f.url}: {f.detail}" for f in tried)
        return "fetched", got.url

    done = 0
    progress("images", 0, len(needs))
    pool = ThreadPoolExecutor(max_workers=max(1, int(jobs)))
    try:
        futures = {pool.submit(one, need): need for need in needs}
        for fut in as_completed(futures):  # the report is counted here, in the calling thread only
            need = futures[fut]
            status, detail = fut.result()
            if status == "skipped":
                report.skipped += 1
            elif status == "fetched":
                report.fetched += 1
            else:
                report.failed.append((need.file_name, detail))
                event("image_failed", {"file_name": need.file_name, "detail": detail})
            done += 1
            progress("images", done, len(needs))
    finally:  # on Ctrl-C: the queued fetches are dropped, the running ones end (partial files resume later)
        pool.shutdown(wait=True, cancel_futures=True)
    report.failed.sort()
    report.unreachable_hosts = gate.down
    if missing_list is not None:
        by_name = {n.file_name: n for n in needs}
        # one URL a line (for `wget -i`); an image without any URL (no source pattern, coco_url or
        # mirror for it) cannot be listed: the message names it
        urls = [by_name[n].urls[-1] for n, _ in report.failed if by_name[n].urls]
        if urls:
            missing_list.parent.mkdir(parents=True, exist_ok=True)
            missing_list.write_text("".join(u + "\n" for u in urls))
            report.missing_list = missing_list
        else:
            missing_list.unlink(missing_ok=True)
        report.without_url = sorted(n for n, _ in report.failed if not by_name[n].urls)
    return report
