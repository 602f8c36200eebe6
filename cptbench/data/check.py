"""``cptbench data check``: validate a download against the task card's known sizes."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..taskspec import TaskSpec
from .refer import ReferDataset


@dataclass
class SplitReport:
    split: str
    sentences: int
    refs: int
    images: int
    expected: dict[str, int | None]
    missing_images: int
    missing_examples: list[str] = field(default_factory=list)

    @property
    def mismatches(self) -> list[str]:
        out = []
        for key in ("sentences", "refs", "images"):
            want = self.expected.get(key)
            if want is not None and getattr(self, key) != want:
                out.append(f"{key} {getattr(self, key)} != expected {want}")
        return out


@dataclass
class CheckReport:
    task: str
    refs_path: str
    images_dir: str
    splits: list[SplitReport]
    shared_images: dict[str, int]  # eval split -> images also in train

    @property
    def ok(self) -> bool:
        return (all(not s.mismatches and not s.missing_images for s in self.splits)
                and not any(self.shared_images.values()))


def check_dataset(task: TaskSpec, ds: ReferDataset, check_images: bool = True) -> CheckReport:
    reports = []
    image_sets: dict[str, set[int]] = {}
    for split in [task.train_split, *task.eval_splits]:
        refs = ds.refs_of(split)
        images = {int(r["image_id"]) for r in refs}
        image_sets[split] = images
        missing = [ds.image_path(i) for i in sorted(images) if check_images and not ds.image_path(i).is_file()]
        exp = task.expected_counts.get(split)
        reports.append(SplitReport(
            split, sum(len(r["sentences"]) for r in refs), len(refs), len(images),
            {"sentences": exp.sentences, "refs": exp.refs, "images": exp.images} if exp else {},
            len(missing), [str(p) for p in missing[:3]],
        ))
    shared = {s: len(image_sets[s] & image_sets[task.train_split]) for s in task.eval_splits}
    return CheckReport(task.name, str(ds.refs_path), str(ds.images_dir), reports, shared)
