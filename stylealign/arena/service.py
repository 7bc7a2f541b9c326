"""The arena's logic, independent of any UI: side-by-side streaming, blind battles, votes, ratings.

Every handler is a plain method that takes plain values and returns (or yields) plain dicts, so
tests drive it without a browser and the Gradio layer in `ui/` (installed as `stylealign.ui`) only maps dicts to components.
One base model serves every pane: each turn is one batched, mixed-adapter `Generator.stream` call.
"""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path
from typing import Iterator

from stylealign.arena.battles import Battle, BattleRegistry
from stylealign.arena.contestants import BASELINE, Contestant, from_runs
from stylealign.arena.leaderboard import Leaderboard, build_leaderboard
from stylealign.arena.settings import Limits, Settings
from stylealign.arena.votes import Vote, VoteStore
from stylealign.text import detect_language

log = logging.getLogger(__name__)
ERROR_PREFIX = "Error: generation failed"


class ArenaService:
    """Holds the generator, the contestants and the vote store; the UI calls its handlers."""

    def __init__(self, generator, contestants: list[Contestant], store: VoteStore,
                 limits: Limits = Limits(), seed: int | None = None):
        self.generator, self.store, self.limits = generator, store, limits
        self.contestants = {c.name: c for c in contestants}
        if BASELINE not in self.contestants:
            self.contestants = {BASELINE: Contestant(BASELINE), **self.contestants}
        self.battles = BattleRegistry(list(self.contestants), random.Random(seed))
        self._generate_lock = threading.Lock()  # one model in memory: one generation at a time

    @classmethod
    def from_runs(cls, runs: list[str | Path], votes: str | Path, base: str = "smollm2-135m",
                  generator=None, **kwargs) -> "ArenaService":
        """Build the service for run folders: one Generator(base) with each run's adapter added."""
        store = VoteStore(votes)  # an unusable vote file fails now, not after minutes of model loading
        contestants = from_runs(runs)
        if generator is None:
            from stylealign.generate import Generator

            generator = Generator(base)
        for c in contestants[1:]:
            if c.adapter not in generator.adapter_names:  # a generator handed over may already hold it
                generator.add_adapter(c.adapter, c.run)
        return cls(generator, contestants, store, **kwargs)

    def add_runs(self, runs: list[str | Path]) -> list[str]:
        """Load the runs not loaded yet as new contestants (their adapters join the one base model); return
        the names added. Battles drawn from now on can meet them."""
        known = {Path(c.run).resolve() for c in self.contestants.values() if c.run}
        fresh = [r for r in runs if Path(r).resolve() not in known]
        if not fresh:
            return []
        with self._generate_lock:  # no generation reads the adapter list while it grows
            added = from_runs(fresh, taken=list(self.contestants))[1:]
            for c in added:
                self.generator.add_adapter(c.adapter, c.run)
                self.contestants[c.name] = c
            with self.battles.lock:
                self.battles.names = list(self.contestants)
        return [c.name for c in added]

    @property
    def names(self) -> list[str]:
        return list(self.contestants)

    @property
    def adapters(self) -> list[str]:
        return [n for n, c in self.contestants.items() if c.adapter is not None]

    # ---- shared -------------------------------------------------------------------------
    def check_message(self, message: str, turns: int) -> str | None:
        """Return why a message is refused (empty, too long, too many turns), or None."""
        if not (message or "").strip():
            return "Type a message first."
        if len(message) > self.limits.max_message_chars:
            return f"Message too long: {len(message)} characters (limit {self.limits.max_message_chars})."
        if turns >= self.limits.max_turns:
            return f"Conversation limit reached ({self.limits.max_turns} turns): clear to start over."
        return None

    def conversation(self, history: list[dict], message: str, prompt_from: Contestant | None) -> list[dict]:
        """Return the messages sent to the model: persona system prompt (if any), history, new turn."""
        system = prompt_from.system_prompt(detect_language(message)) if prompt_from else None
        head = [{"role": "system", "content": system}] if system else []
        return head + list(history) + [{"role": "user", "content": message}]

    def stream(self, conversations, adapters, settings: Settings, strengths=None) -> Iterator[dict]:
        """Yield {"texts": partial text per row, "error": None or a message}; errors end the stream."""
        texts = [""] * len(conversations)
        try:
            with self._generate_lock:
                for texts in self.generator.stream(conversations, adapters, settings.generation_config(),
                                                   strengths=strengths):
                    yield {"texts": list(texts), "error": None}
        except Exception as e:  # the app keeps running; the message goes to the panes
            log.exception("generation failed")
            yield {"texts": list(texts), "error": f"{type(e).__name__}: {e}"}

    # ---- side by side ---------------------------------------------------------------------
    def side_by_side(self, history: dict | None, message: str, adapter: str | None,
                     settings: Settings) -> Iterator[dict]:
        """Yield pane updates for baseline (left) vs `adapter` (right); the last has the new history."""
        history = history or {"left": [], "right": []}
        settings = settings.clamped(self.limits)
        right = self.contestants.get(adapter or "") or self.contestants[BASELINE]
        refused = self.check_message(message, _turns(history["left"]))
        if refused:
            yield {"history": history, "left": history["left"], "right": history["right"], "status": refused,
                   "done": True}
            return
        prompt_from = right if settings.persona_prompt else None
        convs = [self.conversation(history[s], message, prompt_from) for s in ("left", "right")]
        strengths = {right.adapter: settings.strength} if right.adapter else None
        step = {"texts": ["", ""], "error": None}
        for step in self.stream(convs, [None, right.adapter], settings, strengths):
            yield _pane_update(history, message, step, f"baseline vs {right.name} (strength {settings.strength:g})")
        if step["error"] is None:
            new = {side: history[side] + _turn(message, text) for side, text in zip(("left", "right"), step["texts"])}
            yield {"history": new, "left": new["left"], "right": new["right"], "status": "Done.", "done": True}

    # ---- blind battles --------------------------------------------------------------------
    def new_battle(self, session_id: str) -> dict:
        """Start a new battle for the session and return the cleared view."""
        if len(self.names) < 2:
            return _battle_view(None, "Battles need at least one adapter: start the arena with --adapter RUN.")
        self.battles.new(session_id)
        return {"a": [], "b": [], "status": "New battle: two anonymous contestants are ready.",
                "reveal": "", "done": True}

    def battle_turn(self, session_id: str, message: str, settings: Settings) -> Iterator[dict]:
        """Yield both anonymous panes while they stream; the battle accepts votes only once done."""
        settings = Settings(**{**settings.clamped(self.limits).to_dict(), "strength": 1.0})
        current = self.battles.get(session_id)
        turns = current.turns if current and not current.voted else 0
        refused = self.check_message(message, turns)
        if refused:
            yield _battle_view(current if current and not current.voted else None, refused)
            return
        battle, refused = self.battles.begin_turn(session_id)
        if refused:
            yield _battle_view(current, refused)
            return
        try:
            yield from self._battle_stream(battle, message, settings)
        finally:
            battle.busy = False

    def _battle_stream(self, battle: Battle, message: str, settings: Settings) -> Iterator[dict]:
        sides = [self.contestants[battle.model_a], self.contestants[battle.model_b]]
        histories = (battle.history_a, battle.history_b)
        prompts = [c if settings.persona_prompt else None for c in sides]
        convs = [self.conversation(h, message, p) for h, p in zip(histories, prompts)]
        step = {"texts": ["", ""], "error": None}
        for step in self.stream(convs, [c.adapter for c in sides], settings):
            a, b = (h + _turn(message, t, step["error"]) for h, t in zip(histories, step["texts"]))
            error = step["error"] and f"{ERROR_PREFIX}: {step['error']}. Send again or start a new battle."
            yield {"a": a, "b": b, "status": error or "Answering…", "reveal": "", "done": bool(error)}
        if step["error"] is None:
            self._finish_turn(battle, message, convs, step["texts"], settings)
            yield _battle_view(battle, "Both answers are in: which is better?")

    def _finish_turn(self, battle: Battle, message: str, convs: list, texts: list[str], settings: Settings) -> None:
        """Store the finished turn and open the battle for votes (before the last update reaches the page)."""
        with self.battles.lock:
            battle.history_a = battle.history_a + _turn(message, texts[0])
            battle.history_b = battle.history_b + _turn(message, texts[1])
            battle.sent_a, battle.sent_b = (c + [{"role": "assistant", "content": t}] for c, t in zip(convs, texts))
            battle.settings, battle.complete, battle.busy = settings.to_dict(), True, False

    def vote(self, session_id: str, choice: str) -> dict:
        """Record a vote if the session's battle is complete; reveal the contestants only then."""
        battle, refused = self.battles.claim_vote(session_id, choice)
        if refused:
            return {"ok": False, "status": refused, "reveal": "", "vote_id": None}
        vote = Vote(model_a=battle.model_a, model_b=battle.model_b, winner=choice,
                    conversation_a=battle.sent_a, conversation_b=battle.sent_b, settings=battle.settings,
                    session_id=session_id, battle_id=battle.id)
        try:
            vote_id = self.store.add(vote)
        except Exception as e:
            self.battles.unclaim(battle)
            log.exception("could not store a vote")
            return {"ok": False, "status": f"Vote not saved ({e}); try again.", "reveal": "", "vote_id": None}
        return {"ok": True, "status": "Thanks, vote recorded. Send a message to start a new battle.",
                "reveal": f"**A** was **{battle.model_a}** · **B** was **{battle.model_b}**", "vote_id": vote_id,
                "model_a": battle.model_a, "model_b": battle.model_b}

    # ---- leaderboard ----------------------------------------------------------------------
    def leaderboard(self, rounds: int = 100, style_control: bool = False) -> Leaderboard:
        """Return ratings, CIs, records and the win-rate matrix from every stored vote."""
        rounds = max(0, min(int(rounds), 1000))
        return build_leaderboard(self.store.all(), names=self.names, rounds=rounds, style_control=style_control)


def _turns(history: list[dict]) -> int:
    return sum(m["role"] == "user" for m in history)


def _turn(message: str, answer: str, error: str | None = None) -> list[dict]:
    if error:
        answer = f"{answer}\n\n{ERROR_PREFIX}: {error}".strip()
    return [{"role": "user", "content": message}, {"role": "assistant", "content": answer}]


def _pane_update(history: dict, message: str, step: dict, label: str) -> dict:
    left, right = (history[s] + _turn(message, t, step["error"]) for s, t in zip(("left", "right"), step["texts"]))
    status = f"{ERROR_PREFIX}: {step['error']}" if step["error"] else f"Streaming {label}…"
    return {"history": history, "left": left, "right": right, "status": status, "done": step["error"] is not None}


def _battle_view(battle: Battle | None, status: str) -> dict:
    a, b = (battle.history_a, battle.history_b) if battle else ([], [])
    return {"a": a, "b": b, "status": status, "reveal": "", "done": True}
