"""Small deterministic stand-ins for the heavy parts (generator, tokenizer, embedder, judge).

Used by the tests and handy for wiring checks of anything that calls `run_eval`; none of them is a
model. FakeGenerator answers in a hedgy "assistant" voice for the baseline and a direct voice for
any adapter (blended by strength), in the prompt's language.
"""

from __future__ import annotations

import hashlib
from typing import Callable

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
    """Implements the Generator API used by evaluation: generate, logits, tokenizer, strengths."""

    def __init__(self, adapters=("persona",), answer: Callable = default_answer, seed: int = 0):
        import torch

        self.base = "fake-base"
        self.adapter_names = list(adapters)
        self.tokenizer = FakeTokenizer()
        self.answer = answer
        self.calls: list[dict] = []
        self._scale: dict[str, float] = {}
        g = torch.Generator().manual_seed(seed)
        v = self.tokenizer.vocab_size
        self._w = torch.randn(v, v, generator=g)
        self._delta = {a: 0.5 * torch.randn(v, v, generator=g) for a in adapters}

    def generate(self, conversations, adapters, config, strengths=None, batch_size=8, progress=False, stopped=None):
        """Return one canned answer per row; records the call (adapters per row, config, strengths). Every
        canned answer counts as finished before the budget (`stopped`)."""
        self.calls.append({"adapters": list(adapters), "config": config, "strengths": dict(strengths or {}),
                           "batch_size": batch_size, "last_turns": [c[-1]["content"] for c in conversations]})
        if stopped is not None:
            stopped[:] = [True] * len(conversations)
        return [self.answer(c, a, (strengths or {}).get(a, 1.0) if a else 0.0) for c, a in zip(conversations, adapters)]

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
