"""Bradley–Terry ratings from arena votes: logistic regression on Elo's scale, bootstrap CIs.

A battle between A and B becomes two weighted rows of a logistic regression with +1 in A's
column and -1 in B's: (y=1, weight=score) and (y=0, weight=1-score), where score is 1 if A won,
0 if B won and 0.5 for a tie or "both bad" — ties count as half a win each way. Coefficients
are scaled by 400/ln(10) (Elo points) and shifted so the baseline sits at 1000.

Style control (as the LMSYS arena does) adds covariates for the normalized difference in
answer length and in markdown use (headers, list items, bold), so a contestant is not rated up
merely for writing longer or more formatted answers.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np

SCALE = 400 / math.log(10)
ANCHOR_NAME = "baseline"
ANCHOR_RATING = 1000.0
STYLE_FEATURES = ("length", "headers", "lists", "bold")
SCORES = {"A": 1.0, "B": 0.0, "tie": 0.5, "both_bad": 0.5}
_MARKDOWN = {
    "headers": re.compile(r"^\s{0,3}#{1,6}\s", re.M),
    "lists": re.compile(r"^\s*(?:[-*+]|\d+[.)])\s", re.M),
    "bold": re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__"),
}


@dataclass(frozen=True)
class Battle:
    """What the fit needs from a vote: who sat on each side, who won, and the answers' style."""

    model_a: str
    model_b: str
    winner: str
    style_a: tuple[float, ...] = ()
    style_b: tuple[float, ...] = ()

    @classmethod
    def from_vote(cls, vote) -> "Battle":
        return cls(vote.model_a, vote.model_b, vote.winner,
                   style_counts(vote.conversation_a), style_counts(vote.conversation_b))


@dataclass
class Fit:
    """Fitted ratings (Elo scale) and, with style control, the style coefficients (log-odds)."""

    ratings: dict[str, float]
    style: dict[str, float] = field(default_factory=dict)

    def win_prob(self, a: str, b: str) -> float:
        """Return the fitted probability that `a` beats `b`."""
        return 1.0 / (1.0 + 10 ** ((self.ratings[b] - self.ratings[a]) / 400))


def style_counts(conversation: Sequence[dict]) -> tuple[float, ...]:
    """Return (characters, headers, list items, bold spans) over the assistant turns."""
    text = "\n".join(m.get("content", "") for m in conversation if m.get("role") == "assistant")
    return (float(len(text)),) + tuple(float(len(p.findall(text))) for p in _MARKDOWN.values())


def as_battles(votes: Iterable) -> list[Battle]:
    """Return battles from votes (anything with model_a/model_b/winner/conversation_a/_b) or battles."""
    return [v if isinstance(v, Battle) else Battle.from_vote(v) for v in votes]


def fit_bt(battles: Sequence[Battle], style_control: bool = False, C: float = 1.0,
           anchor: str = ANCHOR_NAME) -> Fit:
    """Fit Bradley–Terry ratings. C is the inverse L2 strength: a N(0, C) prior in log-odds units."""
    from sklearn.linear_model import LogisticRegression

    names = contestants(battles)
    if len(names) < 2:
        return Fit({n: ANCHOR_RATING for n in names})
    X, y, w = _design(battles, names, style_control)
    model = LogisticRegression(C=C, fit_intercept=False, max_iter=1000, tol=1e-8)
    model.fit(X, y, sample_weight=w)
    coef = model.coef_[0]
    ratings = _anchor(dict(zip(names, SCALE * coef[: len(names)])), anchor)
    style = dict(zip(STYLE_FEATURES, coef[len(names):].tolist())) if style_control else {}
    return Fit(ratings, style)


def contestants(battles: Iterable[Battle]) -> list[str]:
    """Return the contestants that appear in the battles, sorted."""
    return sorted({n for b in battles for n in (b.model_a, b.model_b)})


def _design(battles: Sequence[Battle], names: list[str], style_control: bool):
    index = {n: i for i, n in enumerate(names)}
    n = len(battles)
    X = np.zeros((n, len(names)))
    rows = np.arange(n)
    X[rows, [index[b.model_a] for b in battles]] = 1.0
    X[rows, [index[b.model_b] for b in battles]] = -1.0
    if style_control:
        X = np.hstack([X, _style_matrix(battles)])
    score = np.array([SCORES[b.winner] for b in battles])
    # Each battle twice: a win with weight `score` and a loss with weight `1 - score`.
    return np.vstack([X, X]), np.r_[np.ones(n), np.zeros(n)], np.r_[score, 1.0 - score]


def _style_matrix(battles: Sequence[Battle]) -> np.ndarray:
    a = np.array([b.style_a or (0.0,) * len(STYLE_FEATURES) for b in battles])
    b = np.array([b.style_b or (0.0,) * len(STYLE_FEATURES) for b in battles])
    total = a + b
    diff = np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)
    std = diff.std(axis=0)
    return (diff - diff.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _anchor(ratings: dict[str, float], anchor: str) -> dict[str, float]:
    shift = ratings[anchor] if anchor in ratings else float(np.mean(list(ratings.values())))
    return {n: float(ANCHOR_RATING + r - shift) for n, r in ratings.items()}


def bootstrap(battles: Sequence[Battle], rounds: int = 100, seed: int = 0, style_control: bool = False,
              C: float = 1.0, alpha: float = 0.05) -> dict[str, tuple[float, float]]:
    """Return each contestant's (low, high) percentile interval over `rounds` resampled fits."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {n: [] for n in contestants(battles)}
    for _ in range(rounds):
        sample = [battles[i] for i in rng.integers(0, len(battles), len(battles))]
        for name, rating in fit_bt(sample, style_control, C).ratings.items():
            draws[name].append(rating)
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    return {n: tuple(float(x) for x in np.percentile(d, q)) for n, d in draws.items() if d}


def win_matrix(battles: Iterable[Battle], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return (win rate of row over column with ties as halves, battle counts); NaN where none."""
    index = {n: i for i, n in enumerate(names)}
    score = np.zeros((len(names), len(names)))
    count = np.zeros_like(score)
    for b in battles:
        i, j, s = index.get(b.model_a), index.get(b.model_b), SCORES[b.winner]
        if i is None or j is None:
            continue
        score[i, j] += s
        score[j, i] += 1 - s
        count[i, j] += 1
        count[j, i] += 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, score / count, np.nan), count


def record(battles: Iterable[Battle]) -> dict[str, dict[str, int]]:
    """Return each contestant's battles, wins, ties (incl. both bad) and losses."""
    out: dict[str, dict[str, int]] = {}
    for b in battles:
        for name, side in ((b.model_a, "A"), (b.model_b, "B")):
            r = out.setdefault(name, {"battles": 0, "wins": 0, "ties": 0, "losses": 0})
            r["battles"] += 1
            key = "ties" if b.winner not in ("A", "B") else ("wins" if b.winner == side else "losses")
            r[key] += 1
    return out
