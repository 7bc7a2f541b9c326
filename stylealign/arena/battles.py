"""Blind battles: two anonymous contestants per session, sides randomized, one vote per battle."""

from __future__ import annotations

import random
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field

CHOICES = {"A": "A", "B": "B", "tie": "tie", "both_bad": "both_bad"}


@dataclass
class Battle:
    """One battle's state; the server's copy is the only one that counts (clients see no names)."""

    session_id: str
    model_a: str
    model_b: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    history_a: list[dict] = field(default_factory=list)  # shown turns, no system prompt
    history_b: list[dict] = field(default_factory=list)
    sent_a: list[dict] = field(default_factory=list)  # last full conversation (system prompt + answer)
    sent_b: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    busy: bool = False
    complete: bool = False
    voted: str | None = None

    @property
    def turns(self) -> int:
        return sum(m["role"] == "user" for m in self.history_a)


class BattleRegistry:
    """Each session's current battle, bounded (oldest sessions dropped), guarded by one lock."""

    def __init__(self, names: list[str], rng: random.Random, capacity: int = 10_000):
        self.names, self.rng, self.capacity = list(names), rng, capacity
        self.lock = threading.RLock()
        self._by_session: OrderedDict[str, Battle] = OrderedDict()

    def draw(self) -> tuple[str, str]:
        """Return two different contestants in random order (side A, side B)."""
        if len(self.names) < 2:
            raise ValueError("a battle needs at least two contestants: pass --adapter RUN")
        with self.lock:
            a, b = self.rng.sample(self.names, 2)
        return a, b

    def new(self, session_id: str) -> Battle:
        """Start (and return) a fresh battle for this browser tab's session id, replacing any earlier one."""
        a, b = self.draw()
        battle = Battle(session_id, a, b)
        with self.lock:
            self._by_session[session_id] = battle
            self._by_session.move_to_end(session_id)
            while len(self._by_session) > self.capacity:
                self._by_session.popitem(last=False)
        return battle

    def get(self, session_id: str) -> Battle | None:
        with self.lock:
            return self._by_session.get(session_id)

    def begin_turn(self, session_id: str) -> tuple[Battle | None, str | None]:
        """Mark the session's battle busy for a new turn (a fresh one if none or voted); or say why not."""
        with self.lock:
            battle = self.get(session_id)
            if len(self.names) < 2:
                return None, "Battles need at least one adapter: start the arena with --adapter RUN."
            if battle is None or battle.voted:
                battle = self.new(session_id)
            if battle.busy:
                return None, "Still answering: wait for both answers."
            battle.busy, battle.complete = True, False
            return battle, None

    def claim_vote(self, session_id: str, choice: str) -> tuple[Battle | None, str | None]:
        """Atomically check that a vote is allowed and mark the battle voted; or say why it is refused."""
        if choice not in CHOICES:
            return None, f"Unknown vote {choice!r}."
        with self.lock:
            battle = self.get(session_id)
            if battle is None or not (battle.busy or battle.history_a):
                return None, "Start a battle first: send a message."
            if battle.voted:
                return None, "You already voted on this battle: send a message to start a new one."
            if battle.busy or not battle.complete:
                return None, "Wait until both answers are complete before voting."
            battle.voted = choice
            return battle, None

    def unclaim(self, battle: Battle) -> None:
        """Undo a claimed vote whose storage failed, so the user can vote again."""
        with self.lock:
            battle.voted = None
