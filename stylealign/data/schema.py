"""What a data row may hold, and how a problem with one is reported.

The vocabularies (categories, languages, verdicts, ...), each kind's RowSchema, the Record a reader
returns and the Problem / DataError a check reports. Readers and validation both build on these, so
they sit at the bottom of the data package and import nothing of it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from stylealign.errors import UserError

ROLES = ("system", "user", "assistant")
METADATA_KEYS = ("id", "category", "language", "verdict", "rejected_kind", "adversarial", "kind", "expected")
CATEGORIES = (
    "tech", "code_review", "career", "money", "life", "health_myths", "science", "history",
    "writing_feedback", "product_advice", "opinions", "roast_my_plan", "refusal", "provocation", "uncertain",
    "math", "languages", "study",  # a tutor's subjects (personas/warm-tutor)
)
LANGUAGES = ("en", "zh")
VERDICTS = ("yes", "no", "depends", "unknown", "refusal", "none")
# "student": the base model's own answer (on-policy), as `stylealign synth` writes them.
REJECTED_KINDS = ("hedge", "wrong", "rude", "student")
# "known_answer": the known-answer suite (rows carry "expected": yes|no).
EVAL_KINDS = ("open", "provocation", "harmful", "drop_persona", "followup", "known_answer")
EXPECTED = ("yes", "no")
SFT_COLUMNS = ("messages",)
PREFERENCE_COLUMNS = ("prompt", "chosen", "rejected")

PathsLike = str | os.PathLike | Iterable[str | os.PathLike]
CountTokens = Callable[[dict], int]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one row: prints as `file:line: field: message`."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class DataError(UserError, ValueError):
    """Data failed validation; `.problems` holds every Problem, the message has one line per problem."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))

    def message(self) -> str:
        return f"data problems ({len(self.problems)}), found before the step that reads them wrote anything:\n{self}"


@dataclass(frozen=True)
class RowSchema:
    """What a row of one kind must hold: its conversation column and the role its last turn has, the
    single-turn answer columns (preference), and the metadata this project's own files require (with
    `schema`): key -> allowed values (None: any non-empty string or, for adversarial, true/false)."""

    kind: str
    conversation: str
    last_role: str
    answers: tuple[str, ...] = ()
    required: dict[str, tuple[str, ...] | None] = field(default_factory=dict)


_COMMON = {"id": None, "category": CATEGORIES, "language": LANGUAGES}
SCHEMAS = {
    "sft": RowSchema("sft", "messages", "assistant", required={**_COMMON, "verdict": VERDICTS}),
    "preference": RowSchema("preference", "prompt", "user", answers=("chosen", "rejected"),
                            required={**_COMMON, "rejected_kind": REJECTED_KINDS}),
    "eval": RowSchema("eval", "messages", "user", required={**_COMMON, "kind": EVAL_KINDS, "adversarial": None}),
}
STRING_METADATA = ("id", "category", "language", "verdict", "rejected_kind", "kind", "expected")


@dataclass
class Record:
    """One row as read from a file, with where it came from (for messages)."""

    file: str
    line: int
    row: Any


def is_turn_list(value: Any) -> bool:
    """Return whether `value` is a list of objects (the shape of a conversation column)."""
    return isinstance(value, list) and all(isinstance(t, dict) for t in value)


def json_kind(value: Any) -> str:
    """Return the JSON name of `value`'s type, for "expected X, got Y" messages."""
    names = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)
