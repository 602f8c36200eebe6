"""CPT score rules on hand-made logits."""

from __future__ import annotations

import numpy as np
import pytest

from cptbench.cpt.score_rules import resolve_rule, score_candidates

# vocabulary: 0 "red", 1 "blue", 2 "none", 3 other
ROW = np.array([2.0, -1.0, 4.0, 0.5])


def test_resolve_rule():
    assert resolve_rule("auto", trained=False) == "logit"
    assert resolve_rule("auto", trained=True) == "ratio"
    assert resolve_rule("auto-safe", trained=False) == "logit"
    assert resolve_rule("auto-safe", trained=True) == "logsoftmax"
    assert resolve_rule("logsoftmax", trained=False) == "logsoftmax"
    with pytest.raises(ValueError, match="choose one of"):
        resolve_rule("softmax", trained=False)


def test_logit_rule():
    assert score_candidates(ROW, [0, 1], 2, "logit").tolist() == [2.0, -1.0]


def test_ratio_rule_is_sign_sensitive_as_published():
    assert score_candidates(ROW, [0, 1], 2, "ratio").tolist() == [0.5, -0.25]
    negative_none = np.array([2.0, 1.0, -4.0])
    # the larger colour logit gets the smaller ratio when logit("none") < 0
    assert score_candidates(negative_none, [0, 1], 2, "ratio").tolist() == [-0.5, -0.25]


def test_logsoftmax_rule_equals_explicit_log_softmax_difference():
    log_sm = ROW - np.log(np.exp(ROW).sum())
    expected = [log_sm[0] - log_sm[2], log_sm[1] - log_sm[2]]
    assert np.allclose(score_candidates(ROW, [0, 1], 2, "logsoftmax"), expected)
    assert score_candidates(ROW, [0, 1], 2, "logsoftmax").tolist() == [-2.0, -5.0]


def test_degenerate_ratios_and_batches():
    zero_none = np.array([0.0, 3.0, 0.0])
    out = score_candidates(zero_none, [0, 1], 2, "ratio")
    assert out[0] == -np.inf and out[1] == np.inf  # 0/0 never wins the arg-max; 3/0 follows IEEE
    with pytest.raises(ValueError, match="resolve"):
        score_candidates(ROW, [0], 2, "auto")


@pytest.mark.parametrize("rule", ["logit", "ratio", "logsoftmax"])
def test_batch_scores_equal_the_per_pass_rule(rule):
    from cptbench.cpt.score_rules import score_rows

    rng = np.random.default_rng(3)
    logits = rng.normal(size=(9, 6)).astype(np.float32)
    logits[2, 5] = 0.0  # none = 0: ratio divides by zero
    logits[4, 1] = np.nan  # a NaN logit scores -inf, never a pick
    logits[6, :] = np.inf  # inf - inf, inf / inf
    rows = score_rows(logits, 5, rule)
    for b in range(len(logits)):
        want = score_candidates(logits[b], range(5), 5, rule)
        assert np.array_equal(rows[b], want), (rule, b)
    with pytest.raises(ValueError, match="resolve"):
        score_rows(logits, 5, "auto")
