"""What `stylealign synth` builds, from what, and how: SynthConfig (its flags come from these fields).

Kept apart from the work so that `stylealign synth --help` and the config tests read the options
without the teachers, filters and run loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from stylealign.errors import UserError
from stylealign.options import REQUIRED, option


class SynthError(UserError, ValueError):
    """Bad synth input (teacher spec, prompt file, persona): the message says what, where and how to fix it."""


TEACHER_HELP = ("hf:PATH or a base alias (local HF chat model), openai:http://HOST:PORT/v1#MODEL (any OpenAI-compatible "
                "server; key from $STYLEALIGN_API_KEY or $OPENAI_API_KEY; ?concurrency=N&retries=N&timeout=S), or "
                "file:PATH[,PATH] (JSONL conversations whose assistant turns are the in-character answers; globs allowed)")


@dataclass
class SynthConfig:
    """What `synth` builds, from what, and how (`stylealign synth`'s flags come from these fields)."""

    teacher: str = option(REQUIRED, TEACHER_HELP, metavar="SPEC")
    student: str = option("smollm2-135m", "the base model to be trained (default: the embedded one); it answers "
                          "without the persona prompt")
    prompts: str | None = option(None, "prompts: 'persona' (its SFT prompts), a JSONL file (messages ending with a "
                                 "user turn, or prompt strings); default: the file teacher's own conversations",
                                 metavar="persona|FILE")
    topics: tuple[str, ...] = option((), "the teacher writes prompts about this topic, in each of the persona's "
                                     "languages (repeatable)", flag="--topic", action="append", metavar="CATEGORY:TOPIC")
    per_topic: int = option(2, "teacher-written prompts per topic and language")
    follow_ups: float = option(0.25, "share of teacher-written prompts with a follow-up turn")
    out: str | None = option(None, "preference JSONL to append to (default: <persona>/data/pref_synth.jsonl)",
                             metavar="FILE")
    sft_out: str | None = option(None, "also append the teacher's conversations as SFT rows here", metavar="FILE")
    category: str = option("life", "category for prompts that carry none")
    limit: int | None = option(None, "use only the first N prompts (after the prompt-level filters)", metavar="N")
    batch_size: int = option(8, "prompts per batch (one fsync'd append each)")
    few_shot: int = option(2, "persona SFT examples shown to a model teacher before each prompt", metavar="N")
    teacher_tokens: int = option(256, "token budget of a model teacher's answers")
    student_tokens: int = option(160, "token budget of the student's answers")
    temperature: float = option(0.7, "sampling temperature of teacher and student (0: greedy)")
    seed: int = option(0, "seed of the sampling and of the teacher-written prompts")
    progress: bool = option(True, "no progress bar", flag="--quiet")

    def __post_init__(self):
        self.topics = tuple(self.topics)
        rules = [("per_topic", self.per_topic >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                 ("teacher_tokens", self.teacher_tokens >= 1, ">= 1"), ("student_tokens", self.student_tokens >= 1, ">= 1"),
                 ("few_shot", self.few_shot >= 0, ">= 0"), ("follow_ups", 0 <= self.follow_ups <= 1, "in [0, 1]"),
                 ("temperature", self.temperature >= 0, ">= 0 (0 = greedy)"), ("limit", self.limit is None or self.limit >= 1, ">= 1")]
        for name, ok, need in rules:
            if not ok:
                raise SynthError(f"synth: --{name.replace('_', '-')} must be {need}, got {getattr(self, name)!r}")

    def settings(self) -> dict:
        """Return the settings recorded in every row's provenance."""
        keep = ("few_shot", "teacher_tokens", "student_tokens", "temperature", "seed", "follow_ups")
        return {k: v for k, v in asdict(self).items() if k in keep}
