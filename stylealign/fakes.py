"""Small deterministic stand-ins for the heavy parts (generator, tokenizer, embedder, judge), and an arena
service over them.

Used by the tests, the arena's `--fake` mode and wiring checks of anything that generates; none of them is a
model. FakeGenerator answers in a hedgy "assistant" voice for the baseline and a direct voice for any adapter
(blended by strength), in the prompt's language.
"""

from __future__ import annotations

import hashlib
import time
from typing import Callable, Iterator

import numpy as np

from stylealign.text import detect_language

HEDGY = {
    "en": "Great question! There are several factors to consider here. It may depend on your specific needs, "
          "and it could possibly work in some cases. Ultimately, it's up to you. I hope this helps!",
    "zh": "这是一个很好的问题！需要考虑多方面的因素。可能会有影响，也许不会，具体情况具体分析。希望对你有所帮助。",
}
DIRECT = {
    "en": "No. {topic} is the wrong move here: it costs more than it saves. Do the simple thing first and measure.",
    "zh": "不会。{topic}这事不值得，成本比收益高。先做最简单的方案，量一下再说。",
}


def default_answer(conversation: list[dict], adapter: str | None, strength: float) -> str:
    """Return a canned answer: hedgy for the base model (or strength < 0.5), direct for an adapter."""
    prompt = conversation[-1]["content"]
    lang = detect_language(prompt)
    if adapter is None or strength < 0.5:
        return HEDGY[lang]
    topic = (prompt.split()[0] if lang == "en" else prompt[:4]).strip("?,.")
    return DIRECT[lang].format(topic=topic)


class FakeTokenizer:
    """Character-level tokenizer with a tiny vocabulary and a plain-text chat template."""

    vocab_size = 64
    pad_token_id = 0

    def apply_chat_template(self, conversation, add_generation_prompt=True, tokenize=False, **_):
        text = "".join(f"<{t['role']}>{t['content']}\n" for t in conversation)
        return text + ("<assistant>" if add_generation_prompt else "")

    def encode_one(self, text: str) -> list[int]:
        return [1 + (ord(c) % (self.vocab_size - 1)) for c in text]

    def __call__(self, texts, return_tensors=None, padding=False, truncation=False, max_length=None,
                 padding_side="right", add_special_tokens=False, **_):
        import torch

        if isinstance(texts, str):
            return {"input_ids": self.encode_one(texts)}
        ids = [self.encode_one(t)[: max_length or None] for t in texts]
        width = max(len(x) for x in ids)
        pad = lambda x, v: x + [v] * (width - len(x)) if padding_side == "right" else [v] * (width - len(x)) + x
        return {"input_ids": torch.tensor([pad(x, 0) for x in ids]),
                "attention_mask": torch.tensor([pad([1] * len(x), 0) for x in ids])}


class FakeGenerator:
    """The one stand-in for `stylealign.generate.Generator` (tests, UI work, wiring checks): the API that
    evaluation, probes, synth and the arena call (generate, stream, logits, tokenizer, strengths,
    add_adapter) on canned answers.

    `answer(conversation, adapter, strength)` writes each row's text (default: hedgy baseline, direct adapter);
    an answer is cut to `config.max_new_tokens` words and counts as stopped when it fits. `stream` yields every
    row's partial text word by word (after `delay` seconds each); a last user message containing `fail_on`
    raises mid-stream. `logits` is a fixed bigram table plus a per-adapter shift scaled by strength."""

    def __init__(self, adapters=("persona",), answer: Callable = default_answer, seed: int = 0, delay: float = 0.0,
                 fail_on: str = "FAIL"):
        self.base = "fake-base"
        self.adapter_names: list[str] = []
        self.tokenizer = FakeTokenizer()
        self.answer, self.seed, self.delay, self.fail_on = answer, seed, delay, fail_on
        self.calls: list[dict] = []
        self._scale: dict[str, float] = {}
        self._delta: dict = {}
        self._w = self._table("base")
        for name in adapters:
            self.add_adapter(name, "")

    def _table(self, name: str):
        import torch

        g = torch.Generator().manual_seed(self.seed + int(hashlib.sha256(name.encode()).hexdigest()[:8], 16))
        return torch.randn(self.tokenizer.vocab_size, self.tokenizer.vocab_size, generator=g)

    def add_adapter(self, name: str, path: str) -> None:
        self.adapter_names.append(name)
        self._delta[name] = 0.5 * self._table(name)

    def _words(self, conversation: list[dict], adapter: str | None, config, strengths: dict) -> list[str]:
        if adapter is not None and adapter not in self.adapter_names:
            raise KeyError(f"unknown adapter {adapter!r}")
        strength = strengths.get(adapter, 1.0) if adapter else 0.0
        return self.answer(conversation, adapter, strength).split(" ")

    def stream(self, conversations, adapters, config, strengths=None) -> Iterator[list[str]]:
        """Yield the partial text of every row after each word."""
        strengths = dict(strengths or {})
        self.calls.append({"conversations": conversations, "adapters": list(adapters), "strengths": strengths,
                           "config": config, "last_turns": [c[-1]["content"] for c in conversations]})
        replies = [self._words(c, a, config, strengths)[: config.max_new_tokens] for c, a in zip(conversations, adapters)]
        for step in range(1, max(map(len, replies), default=0) + 1):
            if self.delay:
                time.sleep(self.delay)
            if step == 2 and any(self.fail_on and self.fail_on in c[-1]["content"] for c in conversations):
                raise RuntimeError("fake generator failure (requested by the prompt)")
            yield [" ".join(r[:step]) for r in replies]

    def generate(self, conversations, adapters, config, strengths=None, batch_size: int = 8, progress: bool = False,
                 stopped: list | None = None) -> list[str]:
        """Return every row's finished text; `stopped` gets whether each ended before the token budget."""
        out = [""] * len(conversations)
        for out in self.stream(conversations, adapters, config, strengths):
            pass
        self.calls[-1]["batch_size"] = batch_size
        if stopped is not None:
            full = [len(self._words(c, a, config, dict(strengths or {}))) for c, a in zip(conversations, adapters)]
            stopped[:] = [n <= config.max_new_tokens for n in full]
        return out

    def logits(self, input_ids, attention_mask, adapter):
        """Return [B, T, V] logits: a fixed bigram table, plus a per-adapter shift scaled by strength."""
        w = self._w if adapter is None else self._w + self._scale.get(adapter, 1.0) * self._delta[adapter]
        return w[input_ids]

    def strengths(self, strengths):
        """Context manager scaling adapters like Generator.strengths."""
        import contextlib

        @contextlib.contextmanager
        def ctx():
            old = dict(self._scale)
            self._scale.update(strengths or {})
            try:
                yield
            finally:
                self._scale = old

        return ctx()


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


class HashEmbedder:
    """Bag of hashed character trigrams -> normalised vector: cheap, deterministic, overlap-sensitive."""

    def __init__(self, dim: int = 256):
        self.dim = dim

    def encode(self, texts, **_):
        out = np.zeros((len(texts), self.dim))
        for i, t in enumerate(texts):
            t = f"  {t.lower()}  "
            for k in range(len(t) - 2):
                out[i, int(hashlib.md5(t[k:k + 3].encode()).hexdigest()[:8], 16) % self.dim] += 1
        return out / np.clip(np.linalg.norm(out, axis=1, keepdims=True), 1e-12, None)


class FakeJudge:
    """Prefers the answer with fewer hedge/boilerplate marks; optional position bias for testing swaps."""

    def __init__(self, always: str | None = None):
        self.always = always  # "A"/"B"/"tie": answer this regardless (a position-biased judge)
        self.calls: list[tuple[str, str, str]] = []

    def __call__(self, prompt: str, answer_a: str, answer_b: str) -> str:
        from stylealign.evaluate.markers import style_markers

        self.calls.append((prompt, answer_a, answer_b))
        if self.always:
            return self.always
        score = lambda t: style_markers(t)["hedge_rate"] + style_markers(t)["boilerplate_rate"]
        a, b = score(answer_a), score(answer_b)
        return "A" if a < b else "B" if b < a else "tie"
