"""A synthetic results store over the tiny refer fixture: real example ids and candidates, made-up
predictions with a chosen accuracy per method (no model runs). For aggregate/compare/plot/report tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from cptbench.core.boxes import iou_matrix
from cptbench.results.store import ResultsStore
from record_fixture import make_record

# the methods' default options (made-up runs of default configs carry the plain labels default runs carry)
CPT_CONFIG = {"template": 3, "palette": "red", "alpha": 127 / 255, "score": "auto", "steps": 500, "lr": 3e-5,
              "batch_size": 0, "weight_decay": 0.01, "warmup": 0.1, "model_seed": 88, "save_weights": False,
              "category_segment": False}


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def load_splits(task: str, data_root: Path):
    from cptbench.data.source import open_dataset
    from cptbench.tasks.cards import get_task

    spec = get_task(task)
    ds = open_dataset(spec, data_root)
    return spec, {s: ds.load_split(s) for s in spec.eval_splits}


def write_runs(store: ResultsStore, splits, *, task: str, method: str, config: dict, shots: int, seeds, p_right: float,
               model: str = "tiny", hard: frozenset = frozenset(), easy: frozenset = frozenset(), rng_seed: int = 0,
               limit=None, proposals: str = "gt", data_fingerprint: str = "data0", uses_eval_labels: bool = False) -> list:
    """One record (and predictions file) per seed and split. ``hard`` example ids are wrong at
    every seed, ``easy`` ones right; the rest right with probability ``p_right``."""
    chash = config_hash(config)
    out = []
    for seed in seeds:
        rng = np.random.default_rng([rng_seed, seed, len(method), shots, int(1000 * p_right)])
        for split, data in splits.items():
            rows = []
            examples = data.examples[:limit] if limit else data.examples
            for ex in examples:
                label = data.labels[ex.example_id]
                ious = iou_matrix(ex.boxes, label.box, "inclusive")[:, 0]
                gt = int(np.argmax(ious))
                right = ex.example_id in easy or (ex.example_id not in hard and rng.random() < p_right)
                pred = gt if right else (gt + 1) % ex.n_candidates
                scores = rng.normal(size=ex.n_candidates)
                scores[pred] = scores.max() + 0.5 + rng.random()
                rows.append({"example_id": ex.example_id, "pred": pred, "iou": round(float(ious[pred]), 6),
                             "correct": bool(ious[pred] > 0.5), "status": "ok", "scores": [round(float(s), 6) for s in scores]})
            run_id = hashlib.sha256(f"{task}|{split}|{method}|{chash}|{model}|{shots}|{seed}|{limit}|{proposals}".encode()).hexdigest()[:24]
            sha = store.finalize_predictions(run_id, rows)
            n_correct = sum(r["correct"] for r in rows)
            rec = make_record(
                run_id=run_id, task=task, split=split, method=method, method_config=config, method_config_hash=chash,
                model=model, model_fingerprint=f"fp-{model}", data_fingerprint=data_fingerprint, proposals=proposals,
                shots=shots, seed=seed, limit=limit, accuracy=100.0 * n_correct / len(rows), n=len(rows), n_correct=n_correct,
                manifest_sha256=f"m-{shots}-{seed}", manifest_path=f"splits/{task}/k{shots}_s{seed}.json",
                predictions_path=f"predictions/{run_id}.jsonl", predictions_sha256=sha, uses_eval_labels=uses_eval_labels,
                versions={"cptbench": "0.1.0", "torch": "2.13.0", "python": "3.11"}, git_revision="abc1234",
                created_at=f"2025-01-0{1 + seed}T10:00:00+00:00", task_card=f"tasks/{task}.yaml")
            store.append_record(rec)
            out.append(rec)
    return out


def study(store: ResultsStore, splits, task: str = "toyref", seeds=(0, 1, 2, 3, 4)) -> dict[str, frozenset]:
    """cpt-blk (k 0, 1, 2) well above ft (k 0, 1, 2), random at k 0 over all seeds, oracle once;
    the first val expression is wrong for cpt-blk at every seed. Returns the hard/easy id sets."""
    val_ids = [ex.example_id for ex in splits["val"].examples]
    hard, easy = frozenset(val_ids[:1]), frozenset(val_ids[1:3])
    ft_cfg = {"steps": 500, "lr": 6e-5}
    write_runs(store, splits, task=task, method="cpt-blk", config=CPT_CONFIG, shots=0, seeds=[0], p_right=0.6, hard=hard, easy=easy)
    write_runs(store, splits, task=task, method="ft", config=ft_cfg, shots=0, seeds=[0], p_right=0.3)
    for k in (1, 2):
        write_runs(store, splits, task=task, method="cpt-blk", config=CPT_CONFIG, shots=k, seeds=seeds, p_right=0.7, hard=hard, easy=easy)
        write_runs(store, splits, task=task, method="ft", config=ft_cfg, shots=k, seeds=seeds, p_right=0.35)
    write_runs(store, splits, task=task, method="random", config={}, shots=0, seeds=seeds, p_right=1 / 3, model="none")
    write_runs(store, splits, task=task, method="oracle", config={}, shots=0, seeds=[0], p_right=1.0, model="none",
               uses_eval_labels=True)
    return {"hard": hard, "easy": easy}
