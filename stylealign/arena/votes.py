"""Arena votes in SQLite: one row per vote with both conversations, the sides and the settings.

WAL mode plus a busy timeout lets many voters write at once without losing a row; every write
opens its own short-lived connection, so the store is safe to share across threads.
"""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

WINNERS = ("A", "B", "tie", "both_bad")
BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    session_id TEXT NOT NULL,
    battle_id TEXT NOT NULL,
    model_a TEXT NOT NULL,
    model_b TEXT NOT NULL,
    winner TEXT NOT NULL CHECK (winner IN ('A', 'B', 'tie', 'both_bad')),
    conversation_a TEXT NOT NULL,
    conversation_b TEXT NOT NULL,
    settings TEXT NOT NULL
)
"""


@dataclass
class Vote:
    """One vote: side A's and side B's contestant and conversation, and which side won."""

    model_a: str
    model_b: str
    winner: str
    conversation_a: list[dict]
    conversation_b: list[dict]
    settings: dict = field(default_factory=dict)
    session_id: str = ""
    battle_id: str = ""
    ts: float = field(default_factory=time.time)
    id: int | None = None

    def __post_init__(self) -> None:
        if self.winner not in WINNERS:
            raise ValueError(f"winner must be one of {WINNERS}, got {self.winner!r}")
        if self.model_a == self.model_b:
            raise ValueError(f"a vote needs two different contestants, got {self.model_a!r} twice")

    @property
    def decisive(self) -> bool:
        return self.winner in ("A", "B")

    def to_dict(self) -> dict:
        return asdict(self)


class VoteStore:
    """Append-only vote table in one SQLite file; safe for concurrent writers (threads or processes)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn, conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def add(self, vote: Vote) -> int:
        """Store a vote and return its row id."""
        row = (
            vote.ts, vote.session_id, vote.battle_id, vote.model_a, vote.model_b, vote.winner,
            _dump(vote.conversation_a), _dump(vote.conversation_b), _dump(vote.settings),
        )
        with closing(self._connect()) as conn:
            # BEGIN IMMEDIATE takes the write lock up front, so a busy writer waits (busy_timeout)
            # instead of failing half-way through a deferred transaction.
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO votes (ts, session_id, battle_id, model_a, model_b, winner,"
                    " conversation_a, conversation_b, settings) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        vote.id = cur.lastrowid
        return vote.id

    def __iter__(self) -> Iterator[Vote]:
        with closing(self._connect()) as conn:
            rows = conn.execute("SELECT * FROM votes ORDER BY id").fetchall()
        for r in rows:
            yield _vote_from_row(r)

    def all(self) -> list[Vote]:
        """Return every vote, oldest first."""
        return list(self)

    def __len__(self) -> int:
        with closing(self._connect()) as conn:
            return conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0]


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _vote_from_row(r: tuple) -> Vote:
    vid, ts, session_id, battle_id, model_a, model_b, winner, conv_a, conv_b, settings = r
    return Vote(
        model_a=model_a, model_b=model_b, winner=winner,
        conversation_a=json.loads(conv_a), conversation_b=json.loads(conv_b),
        settings=json.loads(settings), session_id=session_id, battle_id=battle_id, ts=ts, id=vid,
    )
