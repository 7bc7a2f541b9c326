"""Sampling settings from the arena's controls, clamped to the server's input limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stylealign.generate import READING


@dataclass(frozen=True)
class Limits:
    """Server-side caps: the browser's sliders are a convenience, these are what is enforced."""

    max_message_chars: int = 2000
    max_turns: int = 8
    max_new_tokens: int = 512
    max_temperature: float = 2.0
    max_strength: float = 3.0


@dataclass(frozen=True)
class Settings:
    """What the user picked: sampling, seed, persona prompt on/off and style strength."""

    temperature: float = READING["temperature"]  # the measured reading settings
    top_p: float = READING["top_p"]
    max_new_tokens: int = 160
    seed: int = 0
    persona_prompt: bool = False
    strength: float = 1.0
    repetition_penalty: float = READING["repetition_penalty"]

    def clamped(self, limits: Limits = Limits()) -> "Settings":
        """Return a copy with every value forced into its valid range."""
        return Settings(
            temperature=_clip(float(self.temperature or 0.0), 0.0, limits.max_temperature),
            top_p=_clip(float(self.top_p or 1.0), 0.05, 1.0),
            max_new_tokens=int(_clip(int(self.max_new_tokens or 1), 1, limits.max_new_tokens)),
            seed=int(_clip(int(self.seed or 0), 0, 2**31 - 1)),
            persona_prompt=bool(self.persona_prompt),
            strength=_clip(float(self.strength if self.strength is not None else 1.0), 0.0, limits.max_strength),
            repetition_penalty=_clip(float(self.repetition_penalty or 1.0), 1.0, 2.0),
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def generation_config(self):
        """Return the generation layer's GenerationConfig (greedy when temperature is 0)."""
        from stylealign.generate import GenerationConfig

        return GenerationConfig(
            max_new_tokens=self.max_new_tokens, do_sample=self.temperature > 0,
            temperature=self.temperature if self.temperature > 0 else 1.0, top_p=self.top_p, seed=self.seed,
            repetition_penalty=self.repetition_penalty,
        )


def _clip(x, lo, hi):
    return max(lo, min(hi, x))
