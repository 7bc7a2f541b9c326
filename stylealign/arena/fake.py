"""A deterministic stand-in for stylealign.generate.Generator, for tests and UI work without a model.

It honours the Generator contract the arena relies on: per-row adapters (None = baseline),
per-adapter strengths (0 reproduces the baseline), a seed, max_new_tokens (in words) and
streaming partial text per row. A user message containing `fail_on` raises mid-stream.
"""

from __future__ import annotations

import hashlib
import time
from typing import Iterator

_OPENERS = ("Bluntly:", "Straight up:", "Look:", "Short version:")
_WORDS = ("clear", "plain", "direct", "useful", "short", "honest", "careful", "simple", "calm", "exact")


class FakeGenerator:
    """Answers with seeded filler words; adapters prefix their name and strength so panes differ."""

    def __init__(self, adapter_names=(), delay: float = 0.0, words: int = 12, fail_on: str = "FAIL"):
        self.adapter_names = list(adapter_names)
        self.delay, self.words, self.fail_on = delay, words, fail_on
        self.calls: list[dict] = []

    def add_adapter(self, name: str, path: str) -> None:
        self.adapter_names.append(name)

    def reply(self, conversation: list[dict], adapter: str | None, config, strength: float = 1.0) -> list[str]:
        """Return the reply for one row, as the list of words it streams."""
        if adapter is not None and adapter not in self.adapter_names:
            raise KeyError(f"unknown adapter {adapter!r}")
        user = conversation[-1]["content"]
        key = f"{config.seed}|{len(conversation)}|{user}".encode()
        digest = hashlib.sha256(key).digest()
        n = min(self.words, config.max_new_tokens)
        words = [_WORDS[b % len(_WORDS)] for b in digest[:n]]
        if adapter is None or strength == 0:
            return ["Baseline:"] + words[: n - 1]
        # Styled but anonymous (no adapter name in the text), so blind battles stay blind.
        opener = _OPENERS[hashlib.sha256(adapter.encode()).digest()[0] % len(_OPENERS)]
        tag = [] if strength == 1 else [f"(x{strength:g})"]
        return [opener] + tag + [w.upper() for w in words[: n - 1 - len(tag)]]

    def stream(self, conversations, adapters, config, strengths=None) -> Iterator[list[str]]:
        """Yield the partial text of every row after each word."""
        strengths = strengths or {}
        self.calls.append({"conversations": conversations, "adapters": list(adapters), "strengths": dict(strengths)})
        replies = [self.reply(c, a, config, strengths.get(a, 1.0)) for c, a in zip(conversations, adapters)]
        for step in range(1, max(map(len, replies), default=0) + 1):
            if self.delay:
                time.sleep(self.delay)
            if step == 2 and any(self.fail_on and self.fail_on in c[-1]["content"] for c in conversations):
                raise RuntimeError("fake generator failure (requested by the prompt)")
            yield [" ".join(r[:step]) for r in replies]

    def generate(self, conversations, adapters, config, strengths=None, batch_size: int = 8,
                 progress: bool = False) -> list[str]:
        """Return the finished text of every row."""
        out = [""] * len(conversations)
        for out in self.stream(conversations, adapters, config, strengths):
            pass
        return out


def fake_service(votes_path, adapters=("sharp-candid", "calm"), seed: int | None = 0, **generator_options):
    """Return an ArenaService over a FakeGenerator with these adapter names (tests, UI demos)."""
    from stylealign.arena.contestants import Contestant, baseline
    from stylealign.arena.service import ArenaService
    from stylealign.arena.votes import VoteStore

    contestants = [baseline()] + [
        Contestant(a, a, persona=a, system_prompts={"en": f"You are {a}.", "zh": f"你是{a}。"}) for a in adapters
    ]
    return ArenaService(FakeGenerator(list(adapters), **generator_options), contestants, VoteStore(votes_path),
                        seed=seed)
