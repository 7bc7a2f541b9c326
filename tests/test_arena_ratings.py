"""Bradley–Terry fit: recovers known win probabilities, ties as half wins, bootstrap CIs cover the truth,
style control discounts length, and the leaderboard tables add up."""

import math

import numpy as np
import pytest

from stylealign.arena.leaderboard import build_leaderboard
from stylealign.arena.ratings import Battle, bootstrap, fit_bt, record, style_counts, win_matrix

TRUE = {"baseline": 1000.0, "sharp": 1120.0, "calm": 930.0}


def p_win(a: float, b: float) -> float:
    return 1 / (1 + 10 ** ((b - a) / 400))


def simulate(n: int, seed: int, true=TRUE, tie_rate: float = 0.0) -> list[Battle]:
    rng = np.random.default_rng(seed)
    names = list(true)
    out = []
    for _ in range(n):
        a, b = rng.choice(names, 2, replace=False)
        if rng.random() < tie_rate:
            out.append(Battle(a, b, "tie"))
        else:
            out.append(Battle(a, b, "A" if rng.random() < p_win(true[a], true[b]) else "B"))
    return out


def test_fit_recovers_pairwise_win_probabilities():
    fit = fit_bt(simulate(3000, seed=0))
    assert fit.ratings["baseline"] == 1000.0  # anchored
    for a in TRUE:
        for b in TRUE:
            if a != b:
                assert abs(fit.win_prob(a, b) - p_win(TRUE[a], TRUE[b])) < 0.05, (a, b)


def test_elo_scale_400_over_ln10():
    # A beats B 3 times in 4 (ties none): BT gives P = 0.75 exactly at the optimum (with a weak prior ~).
    battles = [Battle("baseline", "x", "A")] * 300 + [Battle("baseline", "x", "B")] * 100
    fit = fit_bt(battles)
    expected = 1000 - 400 * math.log10(3)
    assert fit.ratings["x"] == pytest.approx(expected, abs=2.0)


def test_ties_count_as_half_wins():
    only_ties = [Battle("baseline", "x", "tie")] * 50 + [Battle("x", "baseline", "both_bad")] * 50
    assert fit_bt(only_ties).ratings["x"] == pytest.approx(1000.0, abs=1e-6)
    # 1 win + 2 ties = 2 of 3 points, the same as 2 wins and 1 loss.
    with_ties = ([Battle("baseline", "x", "A")] + [Battle("baseline", "x", "tie")] * 2) * 100
    decisive = ([Battle("baseline", "x", "A")] * 2 + [Battle("baseline", "x", "B")]) * 100
    assert fit_bt(with_ties).ratings["x"] == pytest.approx(fit_bt(decisive).ratings["x"], abs=0.5)


def test_sides_do_not_matter():
    battles = simulate(600, seed=1)
    mirrored = [Battle(b.model_b, b.model_a, {"A": "B", "B": "A"}.get(b.winner, b.winner)) for b in battles]
    r1, r2 = fit_bt(battles).ratings, fit_bt(mirrored).ratings
    assert r1 == pytest.approx(r2, abs=1e-3)


def test_bootstrap_ci_covers_true_ratings():
    battles = simulate(3000, seed=2)
    ci = bootstrap(battles, rounds=100, seed=0)
    assert ci["baseline"] == (1000.0, 1000.0)
    for name, true in TRUE.items():
        lo, hi = ci[name]
        assert lo <= true <= hi, (name, lo, hi)
        if name != "baseline":
            assert 10 < hi - lo < 120  # informative, not degenerate


def test_bootstrap_coverage_rate():
    """Across independent arenas, the 95% interval holds the truth most of the time."""
    hits = total = 0
    for seed in range(12):
        ci = bootstrap(simulate(400, seed=100 + seed), rounds=40, seed=seed)
        for name in ("sharp", "calm"):
            hits += ci[name][0] <= TRUE[name] <= ci[name][1]
            total += 1
    assert hits / total >= 0.8


def test_style_control_discounts_length():
    """Voters here only reward length; "verbose" tends to be longer: style control evens them out."""
    rng = np.random.default_rng(3)
    battles = []
    for _ in range(3000):
        a, b = rng.choice(["baseline", "verbose"], 2, replace=False)
        length = {"baseline": rng.uniform(100, 500), "verbose": rng.uniform(250, 650)}
        diff = (length[a] - length[b]) / (length[a] + length[b])
        winner = "A" if rng.random() < 1 / (1 + math.exp(-8 * diff)) else "B"
        battles.append(Battle(a, b, winner, (length[a], 0, 0, 0), (length[b], 0, 0, 0)))
    plain = fit_bt(battles).ratings["verbose"]
    controlled = fit_bt(battles, style_control=True)
    assert plain > 1100
    assert abs(controlled.ratings["verbose"] - 1000) < 30
    assert controlled.style["length"] > 0.5


def test_style_counts_reads_markdown():
    conv = [{"role": "user", "content": "# not counted"},
            {"role": "assistant", "content": "# Title\n- one\n- two\n1. three\n**bold** and __bold__"}]
    chars, headers, lists, bold = style_counts(conv)
    assert (headers, lists, bold) == (1, 3, 2)
    assert chars == len(conv[1]["content"])


def test_record_and_win_matrix():
    battles = [Battle("baseline", "x", "A"), Battle("x", "baseline", "A"), Battle("x", "baseline", "tie")]
    assert record(battles)["x"] == {"battles": 3, "wins": 1, "ties": 1, "losses": 1}
    rate, count = win_matrix(battles, ["baseline", "x"])
    assert count[0, 1] == 3 and rate[0, 1] == pytest.approx(0.5) and rate[1, 0] == pytest.approx(0.5)
    assert np.isnan(rate[0, 0])


def test_leaderboard_rows_sorted_and_unrated_listed():
    board = build_leaderboard(simulate(500, seed=4), names=["baseline", "sharp", "calm", "new"], rounds=20)
    assert [r["contestant"] for r in board.rows] == ["sharp", "baseline", "calm", "new"]
    assert board.rows[-1]["rating"] is None and board.rows[-1]["battles"] == 0
    assert [r["rank"] for r in board.rows] == [1, 2, 3, None]
    assert all(r["ci_low"] <= r["rating"] <= r["ci_high"] for r in board.rows[:3])
    assert board.votes == 500 and sum(map(sum, board.battles)) == 1000


def test_empty_leaderboard():
    board = build_leaderboard([], names=["baseline", "x"], rounds=10)
    assert board.votes == 0 and all(r["rating"] is None for r in board.rows)
