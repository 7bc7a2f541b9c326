"""Bootstrap statistics and truth-under-style scoring."""

import math

import numpy as np
import pytest

from stylealign.evaluate.stats import bootstrap_ci, grouped_paired, mean_ci, paired_diff
from stylealign.evaluate.truth import score_truth, truth_features, truth_summary


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(123)
    hits = 0
    for sim in range(200):
        x = rng.exponential(2.0, size=60)  # skewed on purpose; true mean 2.0
        lo, hi = bootstrap_ci(x, n_boot=1000, seed=sim)
        hits += lo <= 2.0 <= hi
    assert 0.90 <= hits / 200 <= 0.98


def test_paired_diff_ci_covers_the_true_difference():
    rng = np.random.default_rng(7)
    hits = 0
    for sim in range(200):
        base = rng.normal(0, 1, 50)
        adapter = base + 0.3 + rng.normal(0, 0.5, 50)  # true paired difference 0.3
        res = paired_diff(base, adapter, n_boot=1000, seed=sim)
        hits += res["ci"][0] <= 0.3 <= res["ci"][1]
    assert 0.90 <= hits / 200 <= 0.98


def test_bootstrap_is_seeded_and_handles_tiny_inputs():
    x = [1.0, 2.0, 5.0, 7.0]
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci([4.0]) == (4.0, 4.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    assert mean_ci([1.0, float("nan"), 3.0])["n"] == 2


def test_paired_diff_drops_undefined_pairs_and_handles_adapter_only_metrics():
    res = paired_diff([1, 2, 3, float("nan")], [2, 3, 5, 1], n_boot=200)
    assert res["n"] == 3 and res["diff"] == pytest.approx(4 / 3)
    assert res["baseline"] == pytest.approx(2) and res["adapter"] == pytest.approx(10 / 3)
    only = paired_diff([float("nan")] * 3, [0.5, 0.7, 0.9], n_boot=200)
    assert only["baseline"] is None and only["diff"] is None and only["adapter"] == pytest.approx(0.7)


def test_grouped_paired_groups_by_language_and_category():
    rows = [{"language": lg, "category": c, "b": {"m": 1.0}, "a": {"m": 1.0 + (lg == "zh")}}
            for lg in ("en", "zh") for c in ("tech", "money") for _ in range(5)]
    out = grouped_paired(rows, ["m", "absent"], "b", "a", ("language", "category"), n_boot=100)
    assert out["overall"]["m"]["diff"] == pytest.approx(0.5)
    assert out["by_language"]["zh"]["m"]["diff"] == 1.0 and out["by_language"]["en"]["m"]["diff"] == 0.0
    assert set(out["by_category"]) == {"tech", "money"} and "absent" not in out["overall"]


def test_truth_scoring_right_wrong_missing_both_languages():
    assert score_truth("Yes. Water boils lower up there.", "yes") == "right"
    assert score_truth("No. It boils higher.", "yes") == "wrong"
    assert score_truth("Great question! Boiling points vary.", "yes") == "missing"
    assert score_truth("不会。这是误区。", "no") == "right"
    assert score_truth("是的，没错。", "no") == "wrong"
    assert all(math.isnan(v) for v in truth_features("Yes.", None).values())
    assert truth_features("No.", "no") == {"truth_right": 1.0, "truth_wrong": 0.0, "truth_missing": 0.0}


def test_a_no_bot_scores_half_at_best_and_is_flagged():
    expected = ["yes", "no"] * 10
    nobot = truth_summary(["No."] * 20, expected)
    assert nobot["right_share"] == 0.5 and nobot["balanced_accuracy"] == 0.5
    assert "one_sided" in nobot["flags"]
    honest = truth_summary([{"yes": "Yes.", "no": "No."}[e] for e in expected], expected)
    assert honest["balanced_accuracy"] == 1.0 and honest["flags"] == []
    contrarian = truth_summary([{"yes": "No.", "no": "Yes."}[e] for e in expected], expected)
    assert "below_chance" in contrarian["flags"]
    hedger = truth_summary(["It depends on many factors."] * 20, expected)
    assert hedger["missing"] == 20 and hedger["balanced_accuracy"] == 0 and hedger["flags"] == []
