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
    names = contestants(battles)
    if len(names) < 2:
        return Fit({n: ANCHOR_RATING for n in names})
    X, score = _arrays(battles, names, style_control)
    coef = _fit(X, score, C)
    ratings = _anchor(dict(zip(names, SCALE * coef[: len(names)])), anchor)
    style = dict(zip(STYLE_FEATURES, coef[len(names):].tolist())) if style_control else {}
    return Fit(ratings, style)


def contestants(battles: Iterable[Battle]) -> list[str]:
    """Return the contestants that appear in the battles, sorted."""
    return sorted({n for b in battles for n in (b.model_a, b.model_b)})


def _arrays(battles: Sequence[Battle], names: list[str], style_control: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return the design matrix (+1 for A's column, -1 for B's, then style features) and A's scores."""
    index = {n: i for i, n in enumerate(names)}
    X = np.zeros((len(battles), len(names)))
    rows = np.arange(len(battles))
    X[rows, [index[b.model_a] for b in battles]] = 1.0
    X[rows, [index[b.model_b] for b in battles]] = -1.0
    if style_control:
        X = np.hstack([X, _style_matrix(battles)])
    return X, np.array([SCORES[b.winner] for b in battles])


def _fit(X: np.ndarray, score: np.ndarray, C: float) -> np.ndarray:
    """Return the logistic-regression coefficients, each battle a win weighted `score` and a loss `1 - score`."""
    from sklearn.linear_model import LogisticRegression

    n = len(score)
    Xm, y, w = _merge(np.vstack([X, X]), np.r_[np.ones(n), np.zeros(n)], np.r_[score, 1.0 - score])
    if len(set(y)) < 2:  # cannot happen with both rows per battle unless every weight is on one side
        Xm, y, w = np.vstack([Xm, Xm[:1]]), np.r_[y, 1 - y[:1]], np.r_[w, 0.0]
    model = LogisticRegression(C=C, fit_intercept=False, solver="newton-cholesky", max_iter=200, tol=1e-8)
    model.fit(Xm, y, sample_weight=w)
    return model.coef_[0]


def _merge(X: np.ndarray, y: np.ndarray, w: np.ndarray):
    """Merge identical (row, label) pairs by summing their weights: same fit, far fewer rows."""
    keep = w > 0
    X, y, w = X[keep], y[keep], w[keep]
    rows, inverse = np.unique(np.column_stack([X, y]), axis=0, return_inverse=True)
    weights = np.bincount(inverse.ravel(), weights=w, minlength=len(rows))
    return rows[:, :-1], rows[:, -1], weights


def _style_matrix(battles: Sequence[Battle]) -> np.ndarray:
    a = np.array([b.style_a or (0.0,) * len(STYLE_FEATURES) for b in battles])
    b = np.array([b.style_b or (0.0,) * len(STYLE_FEATURES) for b in battles])
    total = a + b
    diff = np.divide(a - b, total, out=np.zeros_like(total), where=total > 0)
    std = diff.std(axis=0)
    return (diff - diff.mean(axis=0)) / np.where(std > 0, std, 1.0)


def _anchor(ratings: dict[str, float], anchor: str) -> dict[str, float]:
    present = {n: r for n, r in ratings.items() if r == r}  # NaN: absent from this sample
    shift = present[anchor] if anchor in present else float(np.mean(list(present.values())))
    return {n: float(ANCHOR_RATING + r - shift) for n, r in ratings.items()}


def bootstrap(battles: Sequence[Battle], rounds: int = 100, seed: int = 0, style_control: bool = False,
              C: float = 1.0, alpha: float = 0.05, anchor: str = ANCHOR_NAME) -> dict[str, tuple[float, float]]:
    """Return each contestant's (low, high) percentile interval over `rounds` resampled fits."""
    names = contestants(battles)
    if len(names) < 2 or rounds < 1:
        return {}
    X, score = _arrays(battles, names, style_control)
    rng = np.random.default_rng(seed)
    draws = np.full((rounds, len(names)), np.nan)
    for r in range(rounds):
        idx = rng.integers(0, len(battles), len(battles))
        coef = SCALE * _fit(X[idx], score[idx], C)[: len(names)]
        seen = np.abs(X[idx, : len(names)]).sum(axis=0) > 0
        ratings = _anchor(dict(zip(names, np.where(seen, coef, np.nan))), anchor)
        draws[r] = [ratings[n] for n in names]
    q = (100 * alpha / 2, 100 * (1 - alpha / 2))
    return {n: tuple(float(x) for x in np.nanpercentile(draws[:, i], q))
            for i, n in enumerate(names) if not np.isnan(draws[:, i]).all()}


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
