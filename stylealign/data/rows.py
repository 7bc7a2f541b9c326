"""Helpers over loaded rows: the train/eval split, a row's first user turn, a baked-in system prompt."""

from __future__ import annotations

import random
from typing import Callable, Sequence

from stylealign.errors import ConfigError


def split(rows: Sequence[dict], eval_fraction: float, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Return (train, eval): a deterministic shuffle-split for `seed`. Rows sharing a first user turn
    stay on one side, so the eval set never sees a prompt the model trained on."""
    if not 0 <= eval_fraction < 1:
        raise ConfigError(f"eval_fraction must be in [0, 1), got {eval_fraction}")
    groups: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        groups.setdefault(first_user_turn(row) or f"#{i}", []).append(i)
    keys = sorted(groups)  # sorted first so the result does not depend on dict order
    random.Random(seed).shuffle(keys)
    want = round(len(rows) * eval_fraction)
    if eval_fraction > 0 and len(rows) > 1:
        want = max(1, want)
    held: set[int] = set()
    for key in keys:
        if len(held) >= want:
            break
        held.update(groups[key])
    train = [row for i, row in enumerate(rows) if i not in held]
    held_rows = [row for i, row in enumerate(rows) if i in held]
    return train, held_rows


def first_user_turn(row: dict) -> str | None:
    """Return the content of the first user turn of an SFT, preference or eval row (None if none)."""
    for turn in row.get("messages") or row.get("prompt") or []:
        if isinstance(turn, dict) and turn.get("role") == "user":
            return turn.get("content")
    return None


def with_system_prompt(rows: Sequence[dict], prompt: str | Callable[[dict], str | None]) -> list[dict]:
    """Return copies of `rows` with a system turn first (for bake_system_prompt). `prompt` is a string
    or a function of the row (e.g. by language); rows that already start with a system turn keep it."""
    out = []
    for row in rows:
        text = prompt(row) if callable(prompt) else prompt
        key = "prompt" if "chosen" in row else "messages"
        turns = row[key]
        if text and not (turns and turns[0].get("role") == "system"):
            row = {**row, key: [{"role": "system", "content": text}, *turns]}
        out.append(row)
    return out
