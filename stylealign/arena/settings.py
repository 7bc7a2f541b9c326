"""The arena's typed options: the command's (ArenaConfig, ExportConfig, Limits: flags come from the
fields) and the sampling settings from the page's controls, clamped to the server's limits."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stylealign.errors import ConfigError
from stylealign.generate import READING
from stylealign.options import option

DEFAULT_VOTES = ".stylealign/arena/votes.sqlite"


def _need(ok: bool, name: str, rule: str) -> None:
    if not ok:
        raise ConfigError(f"--{name.replace('_', '-')}: must be {rule}")


def parse_auth(auth: str | None) -> tuple[str, str] | None:
    """Return (user, password) from "user:password", or None."""
    if not auth:
        return None
    user, sep, password = auth.partition(":")
    if not sep or not user or not password:  # the value is not echoed: it may hold the password
        raise ConfigError("--auth: must look like USER:PASSWORD, both non-empty (the password may contain ':')")
    return user, password


@dataclass(frozen=True)
class Limits:
    """Server-side caps: the browser's sliders are a convenience, these are what is enforced."""

    max_message_chars: int = option(2000, "Longest message accepted, in characters.")
    max_turns: int = option(8, "User turns per conversation before it must be cleared.")
    max_new_tokens: int = option(512, "Highest max-new-tokens a user may pick.")
    max_temperature: float = option(2.0, "Highest sampling temperature a user may pick.")
    max_strength: float = option(3.0, "Highest style strength (LoRA scale) a user may pick.")

    def __post_init__(self):
        for name in ("max_message_chars", "max_turns", "max_new_tokens"):
            _need(getattr(self, name) >= 1, name, "at least 1")
        for name in ("max_temperature", "max_strength"):
            _need(getattr(self, name) >= 0, name, "0 or more")


@dataclass
class ArenaConfig:
    """How `stylealign arena` serves: contestants, base model, address, login, vote file, queue."""

    adapter: list = option([], "Run folder(s) to load as contestants (repeatable; the baseline is always in).",
                           action="extend", nargs="+", metavar="RUN")
    base: str = option("smollm2-135m", "Base model (alias, HF folder or hub id).")
    host: str = option("127.0.0.1", "Interface to bind (default: localhost only).")
    port: int = option(7860, "Port to serve on.")
    share: bool = option(False, "Also open a public Gradio share link.")
    auth: str | None = option(None, "Require this login.", metavar="USER:PASSWORD")
    votes: str = option(DEFAULT_VOTES, "SQLite vote file.")
    concurrency: int = option(4, "Events served at once (generation is one at a time).")
    fake: bool = option(False, "Canned answers instead of a model (UI work).", hidden=True)
    backend: str | None = option(None, "contestants answer from an OpenAI-compatible server (each run served under "
                                 "its folder name)", metavar="openai:URL#BASE_MODEL")
    limits: Limits = option(Limits(), "Input limits.", group="input limits (enforced server-side)")

    def __post_init__(self):
        _need(0 < self.port < 65536, "port", "between 1 and 65535")
        _need(self.concurrency >= 1, "concurrency", "at least 1")
        parse_auth(self.auth)  # a malformed login fails here, before any model loads


@dataclass
class ExportConfig:
    """What `stylealign arena export-prefs` turns into preference rows, and where it writes them."""

    export_votes: str = option(DEFAULT_VOTES, "SQLite vote file.", flag="--votes")
    out: str | None = option(None, "Output JSONL (written atomically).", required=True)
    keep_system: bool = option(False, "Keep the persona system prompt in the prompt.")
    skip_multi_turn: bool = option(False, "Export single-turn battles only.")


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
