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

from stylealign.errors import UserError, os_message

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
    """Append-only vote table in one SQLite file; safe for concurrent writers (threads or processes).

    `VoteStore(path)` creates the file if needed and checks it can be written; `create=False` only
    reads an existing one (export). Either raises a UserError saying why the file cannot be used.
    """

    def __init__(self, path: str | Path, create: bool = True):
        self.path = Path(path).expanduser()
        try:
            self._open(create)
        except OSError as e:  # creating its folder
            raise UserError(f"vote file {self.path}: {os_message(e)}") from e
        except sqlite3.Error as e:
            why = _SQLITE_HINTS.get(getattr(e, "sqlite_errorname", None), f"cannot be used ({e})")
            raise UserError(f"vote file {self.path}: {why}") from e

    def _open(self, create: bool) -> None:
        if not create and not self.path.is_file():
            raise UserError(f"vote file {self.path}: no such file; pass the --votes file the arena wrote")
        if create:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as conn:
            tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if "votes" not in tables and (tables or not create):  # never add our table to someone else's database
                raise UserError(f"vote file {self.path}: an SQLite file without arena votes; pass the --votes file "
                                "the arena wrote" + (", or a new path to start one" if create else ""))
            if create:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute(SCHEMA)
                # A read-only file opens and reads fine and would fail only at the first vote: write now
                # (a no-op, rolled back) so the arena refuses to start instead.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.execute("DELETE FROM votes WHERE 0")
                finally:
                    conn.execute("ROLLBACK")

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


_SQLITE_HINTS = {
    "SQLITE_CANTOPEN": "cannot open or create it: SQLite needs to write the file and its folder (it keeps a log "
                       "next to the file); choose a folder you can write to, or fix the permissions",
    "SQLITE_READONLY": "read-only; make it writable (chmod u+w) or pass another --votes file",
    "SQLITE_NOTADB": "not an SQLite file; pass the --votes file the arena wrote",
    "SQLITE_CORRUPT": "damaged (malformed SQLite); restore it from a copy, or pass a new --votes path",
    "SQLITE_BUSY": f"locked by another program for over {BUSY_TIMEOUT_MS // 1000} s; close it and try again",
}


def _dump(obj) -> str:
    return json.dumps(obj, ensure_ascii=False)


def _vote_from_row(r: tuple) -> Vote:
    vid, ts, session_id, battle_id, model_a, model_b, winner, conv_a, conv_b, settings = r
    return Vote(
        model_a=model_a, model_b=model_b, winner=winner,
        conversation_a=json.loads(conv_a), conversation_b=json.loads(conv_b),
        settings=json.loads(settings), session_id=session_id, battle_id=battle_id, ts=ts, id=vid,
    )
