"""The bench's data: the persona's own rows, the same for every arm, chosen once per invocation.

Rows that fail validation (a data file being edited, a row longer than the bench's cap) are skipped
and counted, not fatal: the bench measures speed, `stylealign personas validate` judges data.
With `seq_len`, rows are stitched from the persona's answers to about that many tokens (for
`--shape` stand-ins measured at long context).
"""

from __future__ import annotations

from stylealign.errors import ConfigError
from stylealign.text import plain_turns


def usable(records_and_problems, kind: str, count, max_tokens: int) -> tuple[list[dict], int]:
    """Return (rows without problems, number skipped) for `kind` rows up to `max_tokens` tokens."""
    from stylealign import data

    records, problems = records_and_problems
    problems = list(problems) + data.check_records(records, kind, count, max_tokens)
    bad = {(p.file, p.line) for p in problems}
    rows = [r.row for r in records if (r.file, r.line) not in bad and isinstance(r.row, dict)]
    return rows, len(records) - len(rows)


def select(persona, tokenizer, *, sft_rows: int, pref_rows: int, prompts: int, max_tokens: int,
           seq_len: int | None = None) -> dict:
    """Return {"sft", "preference", "prompts", "skipped", "lengths"}: rows in file order, enough for
    the steps asked for (the trainers shuffle them with the same seed in every arm)."""
    from stylealign import data
    from stylealign.train import count_tokens_fn

    count = count_tokens_fn(tokenizer)
    sft, skipped_sft = usable(data.read_records(persona.sft_files()), "sft", count, 10**9 if seq_len else max_tokens)
    pref, skipped_pref = usable(data.read_records(persona.preference_files()), "preference", count,
                                10**9 if seq_len else max_tokens)
    if not sft or not pref:
        raise ConfigError(f"persona {persona.name!r}: no usable SFT or preference rows within {max_tokens} tokens")
    questions = [[t for t in row["messages"][:1] if t["role"] == "user"] or row["messages"][:2] for row in sft]
    questions = [q for q in questions if q and q[-1]["role"] == "user"]
    questions.sort(key=lambda q: len(q[0]["content"]))  # short prompts: decode cost dominates, as in eval
    if seq_len:
        sft = [stitch_sft(sft, tokenizer, seq_len, i) for i in range(sft_rows)]
        pref = [stitch_pref(pref, tokenizer, seq_len, i) for i in range(pref_rows)]
    out = {
        "sft": [_strip(r, ("messages",)) for r in _cycle(sft, sft_rows)],
        "preference": [_strip(r, ("prompt", "chosen", "rejected")) for r in _cycle(pref, pref_rows)],
        "prompts": _cycle(questions, prompts),
        "skipped": {"sft": skipped_sft, "preference": skipped_pref},
    }
    out["lengths"] = {"sft": [count(r) for r in out["sft"]],
                      "preference": [count(r) for r in out["preference"]]}
    return out


def _strip(row: dict, keys) -> dict:
    return {k: plain_turns(row[k]) for k in keys}


def _cycle(rows: list, n: int) -> list:
    return [rows[i % len(rows)] for i in range(n)] if rows else []


def _grow(texts: list[str], tokenizer, budget: int, start: int) -> str:
    """Return answers joined from `texts` (starting at `start`, cycling) up to about `budget` tokens."""
    parts, used, i = [], 0, start
    while used < budget:
        text = texts[i % len(texts)]
        parts.append(text)
        used += len(tokenizer(text, add_special_tokens=False)["input_ids"]) + 2
        i += 1
    return "\n\n".join(parts)


def stitch_sft(rows: list[dict], tokenizer, seq_len: int, i: int) -> dict:
    """Return one single-turn SFT row of about `seq_len` tokens: a question and a long answer."""
    answers = [t["content"] for r in rows for t in r["messages"] if t["role"] == "assistant"]
    question = next(t for t in rows[i % len(rows)]["messages"] if t["role"] == "user")
    return {"messages": [{"role": "user", "content": question["content"]},
                         {"role": "assistant", "content": _grow(answers, tokenizer, seq_len - 64, 7 * i)}]}


def stitch_pref(rows: list[dict], tokenizer, seq_len: int, i: int) -> dict:
    """Return one preference row whose prompt+chosen and prompt+rejected are each about `seq_len` tokens."""
    chosen = [t["content"] for r in rows for t in r["chosen"]]
    rejected = [t["content"] for r in rows for t in r["rejected"]]
    prompt = [t for t in rows[i % len(rows)]["prompt"] if t["role"] == "user"][-1:]
    return {"prompt": prompt,
            "chosen": [{"role": "assistant", "content": _grow(chosen, tokenizer, seq_len - 64, 5 * i)}],
            "rejected": [{"role": "assistant", "content": _grow(rejected, tokenizer, seq_len - 64, 5 * i)}]}
