"""Turn decisive arena votes into DPO preference rows (TRL conversational prompt/chosen/rejected).

Each side of a battle has its own history (its own earlier answers). The prompt is the winner's
conversation up to the last user turn; chosen is the winner's last answer and rejected the
loser's. In a single-turn battle (the usual case) the two prompts are identical; for multi-turn
battles this is an approximation, so `multi_turn="skip"` drops them instead. System messages
(the persona prompt shown at vote time) are dropped unless `keep_system` is set, because the
adapter is meant to carry the style without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from stylealign.files import write_jsonl
from stylealign.text import detect_language


def vote_to_preference(vote, keep_system: bool = False, multi_turn: str = "last") -> dict | None:
    """Return the preference row for a decisive vote, or None (tie, both bad, skipped multi-turn)."""
    if vote.winner not in ("A", "B"):
        return None
    win, lose = (vote.conversation_a, vote.conversation_b)
    if vote.winner == "B":
        win, lose = lose, win
    if multi_turn == "skip" and sum(m["role"] == "user" for m in win) > 1:
        return None
    prompt = [dict(role=m["role"], content=m["content"]) for m in win[:-1]
              if keep_system or m["role"] != "system"]
    chosen, rejected = _last_answer(win), _last_answer(lose)
    if not prompt or prompt[-1]["role"] != "user" or not chosen or not rejected or chosen == rejected:
        return None  # nothing to learn from (or a row the preference loader would refuse)
    return {
        "id": f"arena-vote-{vote.id}",
        "language": detect_language(prompt[-1]["content"]),
        "source": "arena",
        "chosen_model": vote.model_a if vote.winner == "A" else vote.model_b,
        "rejected_model": vote.model_b if vote.winner == "A" else vote.model_a,
        "prompt": prompt,
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
    }


def _last_answer(conversation: list[dict]) -> str:
    last = conversation[-1] if conversation else {}
    return last.get("content", "").strip() if last.get("role") == "assistant" else ""


def votes_to_preferences(votes: Iterable, **options) -> list[dict]:
    """Return preference rows for every decisive vote, without repeats of the same pair."""
    out, seen = [], set()
    for row in (vote_to_preference(v, **options) for v in votes):
        key = row and json.dumps([row["prompt"], row["chosen"], row["rejected"]], ensure_ascii=False)
        if row is not None and key not in seen:  # the same seeded pair voted twice is one example
            seen.add(key)
            out.append(row)
    return out


def validate(rows: list[dict]) -> None:
    """Raise stylealign.data.DataError if the rows are not valid preference rows."""
    from stylealign.data import validate_preference

    validate_preference(rows, source="arena-votes")


def export_preferences(votes_path: str | Path, out: str | Path, **options) -> int:
    """Export the decisive votes in a vote database to a preference JSONL file; return the row count."""
    from stylealign.arena.votes import VoteStore

    rows = votes_to_preferences(VoteStore(votes_path, create=False), **options)
    validate(rows)  # never write a file that `stylealign train dpo` would refuse
    return write_jsonl(out, rows)
