"""Turn the service's plain results into what Gradio components show (tables, labels, text)."""

from __future__ import annotations

import pandas as pd

from stylealign.arena.leaderboard import Leaderboard

RATING_COLUMNS = ["Rank", "Contestant", "Rating", "95% CI", "Battles", "Wins", "Ties", "Losses"]


def ratings_table(board: Leaderboard) -> pd.DataFrame:
    """Return the ratings table: rank, name, rating, CI and the win/tie/loss record."""
    rows = [[
        r["rank"] or "–", r["contestant"], _num(r["rating"]),
        "–" if r["ci_low"] is None else f"{r['ci_low']:.0f} – {r['ci_high']:.0f}",
        r["battles"], r["wins"], r["ties"], r["losses"],
    ] for r in board.rows]
    return pd.DataFrame(rows, columns=RATING_COLUMNS)


def win_rate_table(board: Leaderboard) -> pd.DataFrame:
    """Return the pairwise matrix: how often the row beat the column (ties count half), with counts."""
    rows = []
    for name, rates, counts in zip(board.names, board.win_rate, board.battles):
        cells = ["–" if r is None else f"{100 * r:.0f}% ({n})" for r, n in zip(rates, counts)]
        rows.append([name] + cells)
    return pd.DataFrame(rows, columns=["row beats column →"] + board.names)


def summary(board: Leaderboard) -> str:
    """Return a one-paragraph Markdown note on what the table shows."""
    rated = {r["contestant"] for r in board.rows if r["rating"] is not None}
    anchor = "baseline" if "baseline" in rated else "the mean rating"
    votes = f"{board.votes} vote" + ("" if board.votes == 1 else "s")
    text = (f"**{votes}.** Bradley–Terry ratings on the Elo scale, {anchor} anchored at 1000; "
            "ties and *both bad* count as half a win each way; 95% bootstrap intervals.")
    if board.style_control and board.style:
        coefs = ", ".join(f"{k} {v:+.2f}" for k, v in board.style.items())
        text += f" Style control on (log-odds per s.d. of each difference): {coefs}."
    return text


def pane_label(adapter: str | None, strength: float) -> str:
    """Return the right pane's label for an adapter at a strength."""
    return f"Adapter: {adapter} · strength {strength:g}" if adapter else "Baseline (no adapters loaded)"


def _num(x: float | None) -> str:
    return "–" if x is None else f"{x:.0f}"
