"""A persona's data sets, loaded for checks and statistics, and the row measures both use."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass, field

from stylealign import data as D
from stylealign.personas import Persona

SET_KINDS = {"sft": "sft", "preference": "preference", "baseline": "sft", "eval": "eval", "probe": "eval"}
SET_LABELS = {"sft": "SFT", "preference": "preference", "baseline": "baseline", "eval": "eval", "probe": "probe"}


@dataclass
class Loaded:
    """The rows of one data set (sft, preference, baseline, eval) that passed row validation."""

    kind: str
    files: list[str] = field(default_factory=list)
    records: list[D.Record] = field(default_factory=list)

    @property
    def rows(self) -> list[dict]:
        return [r.row for r in self.records]


def load_sets(persona: Persona) -> tuple[dict[str, Loaded], list[str]]:
    """Return ({set kind: Loaded}, problems) for every data kind the persona declares; rows with
    problems are left out of the Loaded sets and reported."""
    sets, problems = {}, []
    where = D.show_path(persona.file)
    for kind in ("sft", "preference", "baseline", "eval", "probe"):
        patterns = getattr(persona.data, kind)
        if not patterns:
            continue
        for pattern in patterns:
            if not _matches(persona, pattern):
                problems.append(f"{where}: data.{kind}: {pattern!r} matches no files")
        loaded = Loaded(kind, [D.show_path(f) for f in persona.files(kind)])
        for path in persona.files(kind):
            records, bad = D.read_file(path)
            bad += D.check_records(records, SET_KINDS[kind], schema=True)
            broken = {(p.file, p.line) for p in bad}
            loaded.records += [r for r in records if (r.file, r.line) not in broken]
            problems += [str(p) for p in bad]
        sets[kind] = loaded
    return sets, problems


def _matches(persona: Persona, pattern: str) -> bool:
    return bool(glob.glob(str(persona.path / pattern)))


def row_text(row: dict) -> str:
    """Return all turn contents of a row (messages, or prompt + chosen + rejected) joined by newlines."""
    turns = [t for key in ("messages", "prompt", "chosen", "rejected") for t in row.get(key) or []]
    return "\n".join(t["content"] for t in turns if isinstance(t, dict) and isinstance(t.get("content"), str))


def zh_share(rows: Sequence[dict]) -> float:
    """Return the share of rows labelled "zh" (0.0 for no rows)."""
    return sum(r.get("language") == "zh" for r in rows) / len(rows) if rows else 0.0


def multi_turn_share(rows: Sequence[dict]) -> float:
    """Return the share of rows with two or more user turns (0.0 for no rows)."""
    return sum(user_turn_count(r) >= 2 for r in rows) / len(rows) if rows else 0.0


def user_turn_count(row: dict) -> int:
    """Return how many user turns a row has (messages or prompt)."""
    return sum(t.get("role") == "user" for t in row.get("messages") or row.get("prompt") or [])
