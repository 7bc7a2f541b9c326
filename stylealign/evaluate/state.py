"""What the evaluation's stages share: the variants (adapter x strength), the state that collects answers and
features per model label, and the row helpers (conversation, prompt text, known-answer rows).

Kept apart from the stages so generation, scoring and the report sections depend on it, not on each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stylealign.evaluate.metrics import metric_table
from stylealign.text import plain_turns

BASELINE = "baseline"


@dataclass(frozen=True)
class Variant:
    """One adapter at one LoRA strength; `label` names it in the report."""

    label: str
    adapter: str
    strength: float
    run: str | None = None


@dataclass
class EvalState:
    """What the scoring stages share: rows, answers and per-answer features by model label."""

    rows: list[dict]
    variants: list[Variant]
    answers: dict[str, list[str]] = field(default_factory=dict)
    features: dict[str, list[dict]] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=metric_table)  # with the persona's targets (targets.py)
    probe_answers: dict[str, list[str]] = field(default_factory=dict)  # greedy, no repetition penalty
    probe_stopped: dict[str, list] = field(default_factory=dict)
    pushback_answers: dict[str, dict[str, list]] = field(default_factory=dict)  # label -> kind -> answer or None


def make_variants(adapters, strengths, runs: dict[str, str] | None = None) -> list[Variant]:
    """Return the adapter x strength variants; labels are the adapter name, plus "@s" when several strengths ran."""
    many = len(strengths) > 1
    return [Variant(f"{a}@{s:g}" if many else a, a, float(s), (runs or {}).get(a))
            for a in adapters for s in strengths]


def conversation(row: dict, system_prompt: str | dict | None) -> list[dict]:
    """Return the row's turns as {"role","content"} with the (per-language) system prompt prepended if given."""
    turns = plain_turns(row["messages"])
    text = system_prompt.get(row.get("language")) if isinstance(system_prompt, dict) else system_prompt
    if text and turns[0]["role"] != "system":
        turns = [{"role": "system", "content": text}, *turns]
    return turns


def prompt_text(row: dict) -> str:
    """Return the last user turn of a row (what the answer must be relevant to)."""
    return next((t["content"] for t in reversed(row["messages"]) if t["role"] == "user"), "")


def known_rows(state: EvalState) -> list[int]:
    return [i for i, r in enumerate(state.rows) if r.get("expected") in ("yes", "no")]


def variant_label(variants: list[Variant], adapter: str, strength: float) -> str:
    """Return the label of the variant for `adapter` at `strength`."""
    return next(v.label for v in variants if v.adapter == adapter and v.strength == strength)
