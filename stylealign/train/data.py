"""A training stage's rows: read and validated from the persona's files (nothing loads a model before the data
is clean), filtered to the recipe's languages, split, mixed with neutral rows, and shaped into TRL's columns."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from stylealign.config import Recipe
from stylealign.errors import ConfigError, NotFound
from stylealign.files import file_record
from stylealign.text import plain_turns


@dataclass
class StageData:
    """A stage's validated rows and what the manifest records about them."""

    train: list[dict]
    eval: list[dict]
    files: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- data


def count_tokens_fn(tokenizer):
    """Return a function giving a row's token count under the chat template (for max_length checks)."""

    def n_template(turns, **kw) -> int:
        return len(tokenizer.apply_chat_template(turns, tokenize=True, return_dict=False, **kw))

    def count(row: dict) -> int:
        if "messages" in row:
            return n_template(row["messages"])
        prompt = n_template(row["prompt"], add_generation_prompt=True)
        return prompt + max(len(tokenizer(t["content"])["input_ids"]) for t in row["chosen"] + row["rejected"]) + 1

    return count


def load_stage_data(persona, stage: str, recipe: Recipe, tokenizer, files=None) -> StageData:
    """Return the validated, split rows of one stage; raises DataError naming file, line and field."""
    from stylealign import data

    files = [Path(f) for f in (files or (persona.sft_files() if stage == "sft" else persona.preference_files()))]
    if not files:
        raise NotFound(f"persona {persona.name!r} declares no {stage} data files")
    loader = data.load_sft if stage == "sft" else data.load_preference
    rows = loader(files, count_tokens=count_tokens_fn(tokenizer), max_length=recipe.max_length)
    if recipe.language_list:
        rows = [r for r in rows if r.get("language") in recipe.language_list]
        if not rows:
            raise ConfigError(f"{stage}: no rows in languages {recipe.language_list} (recipe field 'languages') "
                             f"in {', '.join(map(str, files))}")
    if persona.bake_system_prompt:
        rows = data.with_system_prompt(rows, lambda r: persona.system_prompt_for(r.get("language")))
    train, held = data.split(rows, recipe.eval_fraction, recipe.seed)
    records = [file_record(f) for f in files]
    if stage == "sft" and recipe.sft.neutral_mix > 0:
        neutral, neutral_files = neutral_rows(persona, recipe, tokenizer, round(recipe.sft.neutral_mix * len(train)))
        train, records = train + neutral, records + neutral_files
    return StageData(train, held, records)


def neutral_rows(persona, recipe: Recipe, tokenizer, n: int) -> tuple[list[dict], list[dict]]:
    """Return `n` of the persona's neutral baseline conversations (recipe languages, seeded sample) and
    their file records: plain answers mixed into SFT keep the base model's fluency."""
    import random

    from stylealign import data

    files = persona.baseline_files()
    if not files:
        raise NotFound(f"sft.neutral_mix needs data.baseline files in persona {persona.name!r}")
    rows = data.load_sft(files, count_tokens=count_tokens_fn(tokenizer), max_length=recipe.max_length)
    if recipe.language_list:
        rows = [r for r in rows if r.get("language") in recipe.language_list]
    return random.Random(recipe.seed).sample(rows, min(n, len(rows))), [file_record(f) for f in files]


def sft_rows(rows: list[dict]) -> list[dict]:
    """Return prompt/completion rows: one per assistant turn, so loss falls on every assistant turn
    and never on the user's words, with any chat template (no generation markers needed). `fact` marks the
    first answer of a row that carries a known answer (`expected`: its opening verdict is a fact)."""
    out = []
    for row in rows:
        msgs = plain_turns(row["messages"])
        answers = 0
        for i, turn in enumerate(msgs):
            if turn["role"] == "assistant":
                fact = answers == 0 and row.get("expected") in ("yes", "no")
                out.append({"prompt": msgs[:i], "completion": [turn], "fact": fact})
                answers += 1
    return out


def dpo_rows(rows: list[dict]) -> list[dict]:
    """Return preference rows reduced to TRL's conversational columns."""
    return [{k: plain_turns(r[k]) for k in ("prompt", "chosen", "rejected")} for r in rows]


def length_grouped(rows: list[dict], batch_size: int, seed: int, window: int = 16) -> list[dict]:
    """Return `rows` reordered so that consecutive runs of `batch_size` rows have similar lengths: shuffle,
    sort within windows of `window` batches, then shuffle the batches. Fed to the trainer in order."""
    import random

    rng = random.Random(seed)
    rows = list(rows)
    rng.shuffle(rows)
    size = lambda r: len(json.dumps(r, ensure_ascii=False))  # noqa: E731  (a proxy for tokens)
    batches = []
    for i in range(0, len(rows), batch_size * window):
        chunk = sorted(rows[i:i + batch_size * window], key=size, reverse=True)
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [r for b in batches for r in b]


def as_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None
