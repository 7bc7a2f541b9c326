"""Prompts the teacher writes: one per topic, language and slot, and follow-up turns after its answers.

Written prompts are cached beside the output (`<out>.prompts`, appended per batch), so a rerun reuses
them rather than asking again; which prompts get a follow-up depends on the slot's hash, not on order.
"""

from __future__ import annotations

import re
from pathlib import Path

from stylealign.files import read_jsonl
from stylealign.synth.config import SynthConfig, SynthError
from stylealign.synth.jobs import Job, hash_share
from stylealign.synth.outputs import append_rows, repair_tail
from stylealign.synth.teachers import ModelTeacher

_LANGUAGE_NAMES = {"en": "English", "zh": "Chinese (简体中文)"}
ASK = ("Write one realistic message that a user might send to this assistant: {title} — {description}\n"
       "Topic: {topic} (category: {category}). Write it in {language}, as the user, in one to three sentences. "
       "Reply with the message only.")
FOLLOW = ("Here is a conversation with {title}.\n\n{conversation}\n\nWrite the user's next message: a natural "
          "follow-up question in {language}, one or two sentences. Reply with the message only.")


def topic_specs(topics: tuple[str, ...], category: str) -> list[tuple[str, str]]:
    """Return (category, topic) for "category:topic" items (plain topics get `category`)."""
    from stylealign.data import CATEGORIES

    out = []
    for item in topics:
        cat, _, topic = item.partition(":") if ":" in item else (category, "", item)
        if cat not in CATEGORIES:
            raise SynthError(f"--topic {item!r}: unknown category {cat!r} (known: {', '.join(CATEGORIES)})")
        out.append((cat, topic.strip()))
    return out


def write_prompts(teacher: ModelTeacher, persona, config: SynthConfig, cache_file: Path) -> list[dict]:
    """Return the teacher-written prompt rows, cached in `cache_file` (appended per batch, reused on rerun)."""
    repair_tail(cache_file)
    have = {r["slot"]: r for r in read_jsonl(cache_file, missing_ok=True)}
    slots = [(cat, topic, lang, k) for cat, topic in topic_specs(config.topics, config.category)
             for lang in persona.languages for k in range(config.per_topic)]
    todo = [s for s in slots if _slot(s) not in have]
    for start in range(0, len(todo), config.batch_size):
        batch = todo[start:start + config.batch_size]
        asks = [[{"role": "user", "content": ASK.format(title=persona.title, description=" ".join(persona.description.split()),
                                                         topic=t, category=c, language=_LANGUAGE_NAMES[lg])}] for c, t, lg, _ in batch]
        texts = teacher.complete(asks)
        rows = [{"slot": _slot(s), "category": s[0], "language": s[2], "follow_up": hash_share(_slot(s)) < config.follow_ups,
                 "messages": [{"role": "user", "content": _clean_message(t)}]} for s, t in zip(batch, texts)]
        append_rows(cache_file, rows)
        have.update({r["slot"]: r for r in rows})
    return [have[_slot(s)] for s in slots if have[_slot(s)]["messages"][0]["content"]]


def _slot(spec: tuple) -> str:
    return "/".join(str(x) for x in spec)


def _clean_message(text: str) -> str:
    """Return a teacher-written user message without quotes or a "User:" label around it."""
    text = re.sub(r"^\s*(?:user|用户)\s*[:：]\s*", "", text.strip(), flags=re.I)
    return text.strip().strip('"“”').strip()


def add_follow_ups(teacher: ModelTeacher, jobs: list[Job], answers: list[str]) -> list[Job]:
    """Return the jobs with a teacher-written follow-up turn where the job asks for one (answers: turn 1)."""
    out = list(jobs)
    idx = [i for i, j in enumerate(jobs) if j.follow_up and answers[i].strip()]
    if not idx:
        return out
    asks = [[{"role": "user", "content": FOLLOW.format(title=teacher.persona.title, language=_LANGUAGE_NAMES.get(jobs[i].language, "English"),
                                                       conversation=f"User: {jobs[i].prompt[-1]['content']}\nAssistant: {answers[i]}")}]
            for i in idx]
    for i, text in zip(idx, teacher.complete(asks)):
        j = jobs[i]
        prompt = [*j.prompt, {"role": "assistant", "content": answers[i]}, {"role": "user", "content": _clean_message(text)}]
        out[i] = Job(j.key, prompt, j.language, j.category, j.source, sft_id=j.sft_id, follow_up=True)
    return out
