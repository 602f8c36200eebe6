"""Hand-made run records for store and aggregation tests."""

from __future__ import annotations

from cptbench.results.records import RunRecord

BASE = dict(
    run_id="r0", task="toyref", task_version=1, split="val", method="random", method_config={},
    method_config_hash="cfg0", model="none", model_fingerprint="none", data_fingerprint="data0", proposals="gt",
    shots=0, seed=0, limit=None, metric={"iou_convention": "inclusive", "threshold": 0.5, "threshold_rule": "gt"},
    uses_eval_labels=False, accuracy=50.0, n=10, n_correct=5, n_invalid=0, n_no_candidates=0, fit_seconds=0.0,
    predict_seconds=0.1, seconds=0.1, resumed_examples=0, manifest_sha256="m", manifest_path="splits/x.json",
    predictions_path="predictions/r0.jsonl", method_info={},
)


def make_record(**overrides) -> RunRecord:
    """A record with ``overrides``; an ``accuracy`` given without counts gets counts that make it
    true (records with impossible numbers are refused on read): ``n_correct`` of ``n`` = 10, or of
    10,000 where 10 cannot give that accuracy, and ``n`` = 0 for a NaN accuracy."""
    fields = {**BASE, **overrides}
    acc = overrides.get("accuracy")
    if acc is not None and "n_correct" not in overrides:
        if acc != acc:  # NaN: a split without expressions
            fields.update(n=0, n_correct=0)
        else:
            n = overrides.get("n", BASE["n"])
            if "n" not in overrides and abs(round(acc * n / 100) * 100 / n - acc) > 1e-6:
                n = 10_000
            fields.update(n=n, n_correct=round(acc * n / 100))
    return RunRecord(**fields)
