"""The leaderboard: ratings with bootstrap CIs, win/tie/loss records and the pairwise win-rate matrix."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Sequence

from stylealign.arena.ratings import as_battles, bootstrap, fit_bt, record, win_matrix


@dataclass
class Leaderboard:
    """Rows sorted by rating (unrated contestants last), the win-rate matrix and fit details."""

    rows: list[dict]
    names: list[str]
    win_rate: list[list[float | None]]
    battles: list[list[int]]
    votes: int
    style_control: bool = False
    style: dict[str, float] = field(default_factory=dict)


def build_leaderboard(votes: Iterable, names: Sequence[str] = (), rounds: int = 100,
                      style_control: bool = False, seed: int = 0) -> Leaderboard:
    """Return the leaderboard for these votes; `names` adds contestants that have no votes yet."""
    battles = as_battles(votes)
    fit = fit_bt(battles, style_control=style_control)
    ci = bootstrap(battles, rounds=rounds, seed=seed, style_control=style_control) if rounds and battles else {}
    stats = record(battles)
    all_names = sorted(set(names) | set(fit.ratings))
    rows = [_row(n, fit.ratings.get(n), ci.get(n), stats.get(n)) for n in all_names]
    rows.sort(key=lambda r: (r["rating"] is None, -(r["rating"] or 0.0), r["contestant"]))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank if row["rating"] is not None else None
    order = [r["contestant"] for r in rows]
    rate, count = win_matrix(battles, order)
    return Leaderboard(
        rows=rows, names=order, votes=len(battles), style_control=style_control, style=fit.style,
        win_rate=[[None if x != x else round(float(x), 3) for x in line] for line in rate],
        battles=count.astype(int).tolist(),
    )


def _row(name: str, rating: float | None, ci: tuple[float, float] | None, stats: dict | None) -> dict:
    stats = stats or {"battles": 0, "wins": 0, "ties": 0, "losses": 0}
    return {
        "contestant": name,
        "rating": None if rating is None else round(rating, 1),
        "ci_low": None if ci is None else round(ci[0], 1),
        "ci_high": None if ci is None else round(ci[1], 1),
        **stats,
    }
