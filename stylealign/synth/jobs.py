"""Jobs: the conversations a run answers, where they come from, and their stable keys.

A job's key (the preference row id) is also its resume key, so keys are derived from content
(`digest`, `pair_id`, `hash_share`), never from the order of a run. Prompts come from files here:
SFT-format conversations (one job per assistant turn) or prompt rows; the prompts a teacher writes
itself are in `topics`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from stylealign.synth.config import SynthError
from stylealign.text import plain_turns


@dataclass
class Job:
    """One conversation to answer: `prompt` ends with the user turn the pair is about."""

    key: str  # the preference row id; also the resume key
    prompt: list[dict]
    language: str
    category: str
    source: str  # where the prompt came from (file:line, topic, ...)
    answer: str | None = None  # a file teacher's answer, known up front
    sft_id: str | None = None
    follow_up: bool = False  # the teacher writes a second user turn after answering the first


def digest(turns: list[dict]) -> str:
    """Return a short stable hash of a conversation's turns."""
    text = json.dumps([[t["role"], " ".join(t["content"].split())] for t in turns], ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def pair_id(source_id: str, turn: int) -> str:
    """Return the id of the pair answering user turn `turn` (1-based) of the row `source_id`."""
    return f"pair-{source_id}-t{turn}"


def hash_share(text: str) -> float:
    """Return a stable number in [0, 1) for `text` (which prompts get follow-ups does not depend on order)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 2 ** 32


def conversation_jobs(rows: list[dict], where: str, category: str) -> list[Job]:
    """Return one job per assistant turn of each SFT-format row: the turns before it are the prompt,
    the turn itself the (file) teacher's answer. Rows without an id get one from their content."""
    jobs = []
    for n, row in enumerate(rows, 1):
        turns = plain_turns(row["messages"], drop_system=True)
        source = row.get("id") or f"synth-{digest(turns)}"
        users = 0
        for i, turn in enumerate(turns):
            users += turn["role"] == "user"
            if turn["role"] == "assistant" and i and turns[i - 1]["role"] == "user":
                jobs.append(Job(pair_id(source, users), turns[:i], _language(row, turns[:i]), row.get("category") or category,
                                f"{where}:{n}", answer=turn["content"], sft_id=source))
    return jobs


def prompt_jobs(rows: list[dict], where: str, category: str) -> list[Job]:
    """Return one job per prompt row: `messages` ending with a user turn (an eval-suite row), `prompt`
    (a string or turns), or an SFT row (its last assistant turn is dropped)."""
    jobs = []
    for n, row in enumerate(rows, 1):
        turns = row.get("messages") or row.get("prompt")
        turns = [{"role": "user", "content": turns}] if isinstance(turns, str) else list(turns or [])
        turns = plain_turns(turns, drop_system=True)
        while turns and turns[-1]["role"] == "assistant":
            turns.pop()
        if not turns or not all(t.get("content", "").strip() for t in turns):
            raise SynthError(f"{where}:{n}: no user turn to answer (expected messages/prompt ending with a user turn)")
        source, follow = f"synth-{digest(turns)}", bool(row.get("follow_up"))
        jobs.append(Job(pair_id(source, sum(t["role"] == "user" for t in turns) + follow), turns, _language(row, turns),
                        row.get("category") or category, f"{where}:{n}", sft_id=source, follow_up=follow))
    return jobs


def _language(row: dict, turns: list[dict]) -> str:
    from stylealign.text import detect_language

    return row.get("language") or detect_language(turns[-1]["content"])


def read_rows(spec: str) -> tuple[list[dict], str]:
    """Return (rows, label) from comma-separated paths or globs of JSONL/JSON/CSV/Parquet files."""
    from stylealign import data as D

    paths = [p for part in spec.split(",") if part.strip() for p in (sorted(Path().glob(part.strip())) if any(c in part for c in "*?[") else [Path(part.strip())])]
    missing = [str(p) for p in paths if not p.exists()]
    if not paths or missing:
        raise SynthError(f"{spec}: no such file {', '.join(missing) or spec} (give JSONL paths or globs)")
    records, problems = D.read_records(paths)
    if problems:
        raise SynthError("\n".join(str(p) for p in problems))
    return [r.row for r in records], ",".join(D.show_path(p) for p in paths)
