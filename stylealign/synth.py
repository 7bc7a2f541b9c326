"""`stylealign synth`: grow a persona's preference (and SFT) data with a teacher and a student.

The teacher answers in character (its answers become `chosen`, and SFT rows with `--sft-out`); the
student — the base model to be trained, without the persona prompt — answers the same conversations,
and its answers become `rejected` (on-policy, `rejected_kind: student`). Teachers: a local HF chat
model through the generation layer (`hf:PATH` or a base alias), an OpenAI-compatible endpoint
(`openai:URL#MODEL`, through stylealign.backend), or a file of in-character conversations
(`file:PATH[,PATH...]`, globs allowed: every assistant turn answers the turns before it).

Every prompt passes the filters below, and the decision is counted in the summary. Work is done in
batches; each batch's rows are appended to the output with one write + fsync, and every decision to a
log beside it (`<out>.log`), so a rerun skips what is done and `kill -9` loses at most the batch
in flight. A partial last line (a kill mid-write) is cut off on restart.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from stylealign.config import REQUIRED, option
from stylealign.errors import UserError
from stylealign.files import append_durable, check_writable, read_jsonl

FILTERS = ("near_duplicate", "empty", "truncated", "unfinished", "wrong_language", "repetition",
           "chosen_like_rejected", "misses_targets")
SAME_ANSWER = 0.9  # char n-gram cosine at which chosen and rejected say the same thing
_END = re.compile(r"[.!?。！？…)\]\"'”’」』`*:：~]\s*$|```\s*$")


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


@dataclass
class Job:
    """One conversation to answer: `prompt` ends with the user turn the pair is about."""

    key: str  # the preference row id; also the resume key
    prompt: list[dict]
    language: str
    category: str
    source: str  # where the prompt came from (file:line, topic, ...)
    answer: str | None = None  # a file teacher's answer, known up front
    sft_id: str | None = None
    follow_up: bool = False  # the teacher writes a second user turn after answering the first


@dataclass
class Summary:
    """Counts of every decision, including those logged by earlier runs."""

    counts: dict[str, int] = field(default_factory=lambda: {"kept": 0, **{f: 0 for f in FILTERS}})
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, status: str, key: str = "") -> None:
        self.counts[status] = self.counts.get(status, 0) + 1
        self.examples.setdefault(status, key)

    def format(self) -> str:
        total = sum(self.counts.values())
        lines = [f"synth: {total} prompts, {self.counts['kept']} pairs kept"]
        lines += [f"  {name:<22}{n:>6}" + (f"   e.g. {self.examples[name]}" if n and name in self.examples else "")
                  for name, n in self.counts.items()]
        return "\n".join(lines)


# ---------------------------------------------------------------- ids, keys, files


def digest(turns: list[dict]) -> str:
    """Return a short stable hash of a conversation's turns."""
    text = json.dumps([[t["role"], " ".join(t["content"].split())] for t in turns], ensure_ascii=False)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def pair_id(source_id: str, turn: int) -> str:
    """Return the id of the pair answering user turn `turn` (1-based) of the row `source_id`."""
    return f"pair-{source_id}-t{turn}"


def repair_tail(path: Path) -> int:
    """Cut a partial last line (no newline: a write killed midway) off `path`; return the bytes removed."""
    if not path.exists() or path.stat().st_size == 0:
        return 0
    data = path.read_bytes()
    if data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
        f.flush()
        os.fsync(f.fileno())
    return len(data) - keep


def append_rows(path: Path, rows: list[dict]) -> None:
    """Append `rows` as JSONL with one write, then fsync: a batch lands whole or (after repair_tail) not at all."""
    if rows:
        append_durable(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def log_path(out: Path) -> Path:
    """Return the decision log beside the output file (named so that no `*.jsonl` data glob matches it)."""
    return out.with_name(out.name + ".log")


def prompts_path(out: Path) -> Path:
    """Return the cache of teacher-written prompts beside the output file."""
    return out.with_name(out.name + ".prompts")


# ---------------------------------------------------------------- prompts (jobs)


def conversation_jobs(rows: list[dict], where: str, category: str) -> list[Job]:
    """Return one job per assistant turn of each SFT-format row: the turns before it are the prompt,
    the turn itself the (file) teacher's answer. Rows without an id get one from their content."""
    jobs = []
    for n, row in enumerate(rows, 1):
        turns = [{"role": t["role"], "content": t["content"]} for t in row["messages"] if t["role"] != "system"]
        source = row.get("id") or f"synth-{digest(turns)}"
        users = 0
        for i, turn in enumerate(turns):
            users += turn["role"] == "user"
            if turn["role"] == "assistant" and i and turns[i - 1]["role"] == "user":
                jobs.append(Job(pair_id(source, users), turns[:i], _language(row, turns[:i]), row.get("category") or category,
                                f"{where}:{n}", answer=turn["content"], sft_id=source))
    return jobs


def prompt_jobs(rows: list[dict], where: str, category: str) -> list[Job]:
    """Return one job per prompt row: `messages` ending with a user turn (an eval-suite row), `prompt`
    (a string or turns), or an SFT row (its last assistant turn is dropped)."""
    jobs = []
    for n, row in enumerate(rows, 1):
        turns = row.get("messages") or row.get("prompt")
        turns = [{"role": "user", "content": turns}] if isinstance(turns, str) else list(turns or [])
        turns = [{"role": t["role"], "content": t["content"]} for t in turns if t.get("role") != "system"]
        while turns and turns[-1]["role"] == "assistant":
            turns.pop()
        if not turns or not all(t.get("content", "").strip() for t in turns):
            raise SynthError(f"{where}:{n}: no user turn to answer (expected messages/prompt ending with a user turn)")
        source, follow = f"synth-{digest(turns)}", bool(row.get("follow_up"))
        jobs.append(Job(pair_id(source, sum(t["role"] == "user" for t in turns) + follow), turns, _language(row, turns),
                        row.get("category") or category, f"{where}:{n}", sft_id=source, follow_up=follow))
    return jobs


def _language(row: dict, turns: list[dict]) -> str:
    from stylealign.text import detect_language

    return row.get("language") or detect_language(turns[-1]["content"])


def read_rows(spec: str) -> tuple[list[dict], str]:
    """Return (rows, label) from comma-separated paths or globs of JSONL/JSON/CSV/Parquet files."""
    from stylealign import data as D

    paths = [p for part in spec.split(",") if part.strip() for p in (sorted(Path().glob(part.strip())) if any(c in part for c in "*?[") else [Path(part.strip())])]
    missing = [str(p) for p in paths if not p.exists()]
    if not paths or missing:
        raise SynthError(f"{spec}: no such file {', '.join(missing) or spec} (give JSONL paths or globs)")
    records, problems = D.read_records(paths)
    if problems:
        raise SynthError("\n".join(str(p) for p in problems))
    return [r.row for r in records], ",".join(D.show_path(p) for p in paths)


# ---------------------------------------------------------------- teachers and the student


class FileTeacher:
    """Answers from a file of in-character conversations: each assistant turn answers the turns before it."""

    def __init__(self, spec: str, category: str = "life"):
        rows, self.where = read_rows(spec)
        self.jobs = conversation_jobs(rows, self.where, category)
        self.answers = {digest(j.prompt): j.answer for j in self.jobs}
        self.spec, self.tokenizer = f"file:{spec}", None  # as given (a glob stays a glob)

    def answer(self, jobs: list[Job]) -> list[str]:
        """Return the file's answer for each job's conversation ("" when the file has none)."""
        return [j.answer if j.answer is not None else self.answers.get(digest(j.prompt), "") for j in jobs]


class ModelTeacher:
    """A chat model (any Backend) answering in character: the persona's system prompt, then a few of its
    SFT conversations in the job's language as examples, then the conversation."""

    def __init__(self, spec: str, backend, persona, config: SynthConfig):
        self.spec, self.backend, self.persona = spec, backend, persona
        self.tokenizer = getattr(backend, "tokenizer", None)
        self.gen = generation(config.teacher_tokens, config)
        self.batch_size = config.batch_size
        self.shots = _examples(persona, config.few_shot)
        self.ended: list[bool | None] = []  # per answer of the last call: ended before the budget (None: unknown)

    def frame(self, job: Job) -> list[dict]:
        """Return the conversation the teacher sees for `job`."""
        system = [{"role": "system", "content": self.persona.system_prompt_for(job.language)}]
        shots = [t for row in self.shots.get(job.language, []) for t in row]
        return system + shots + job.prompt

    def answer(self, jobs: list[Job]) -> list[str]:
        """Return the teacher's in-character answer to each job (`ended`: whether each stopped before the budget)."""
        return self.complete([self.frame(j) for j in jobs])

    def complete(self, conversations: list[list[dict]]) -> list[str]:
        """Return the backend's answers to `conversations` (base model, the teacher's settings); `ended`
        gets, per answer, whether it stopped before the token budget (a stop token, or the server's
        finish_reason), where the backend reports it."""
        texts, self.ended = generate_ended(self.backend, conversations, self.gen, self.batch_size)
        return texts


def generation(tokens: int, config: SynthConfig):
    """Return the GenerationConfig for a token budget under the run's settings (temperature 0: greedy)."""
    from stylealign.generate import GenerationConfig

    if config.temperature == 0:
        return GenerationConfig(max_new_tokens=tokens, do_sample=False, seed=config.seed)
    return GenerationConfig(max_new_tokens=tokens, temperature=config.temperature, seed=config.seed)


def generate_ended(backend, conversations: list[list[dict]], gen, batch_size: int) -> tuple[list[str], list]:
    """Return (answers, ended) from a Backend: `ended[i]` whether answer i stopped before the budget, as the
    backend reports it (Backend.generate's `stopped`); None for a backend that does not."""
    import inspect

    adapters = [None] * len(conversations)
    try:
        reports = "stopped" in inspect.signature(backend.generate).parameters
    except (TypeError, ValueError):
        reports = False
    if not reports:
        return backend.generate(conversations, adapters, gen, batch_size=batch_size), [None] * len(conversations)
    stopped: list = []
    texts = backend.generate(conversations, adapters, gen, batch_size=batch_size, stopped=stopped)
    return texts, list(stopped) if len(stopped) == len(texts) else [None] * len(texts)


def _examples(persona, n: int) -> dict[str, list[list[dict]]]:
    """Return up to `n` single-turn SFT conversations of the persona per language (the few-shot examples)."""
    from stylealign.data import load_sft

    if n <= 0 or not persona.sft_files():
        return {}
    out: dict[str, list[list[dict]]] = {}
    for row in load_sft(persona.sft_files(), schema=False):
        turns = [t for t in row["messages"] if t["role"] != "system"]
        lang = row.get("language", "en")
        if len(turns) == 2 and len(out.setdefault(lang, [])) < n:
            out[lang].append([{"role": t["role"], "content": t["content"]} for t in turns])
    return out


def open_backend_for(spec: str, cache: dict):
    """Return the Backend for a model spec: `openai:URL#MODEL` (stylealign.backend), else an in-process
    Generator (`hf:` prefix optional); `cache` shares one Generator between teacher and student."""
    if spec.startswith("openai:"):
        from stylealign.backend import open_backend

        return open_backend(spec)
    name = spec.removeprefix("hf:")
    if name not in cache:
        from stylealign.generate import Generator

        cache[name] = Generator(base=name, quant="none")
    return cache[name]


def open_teacher(config: SynthConfig, persona, cache: dict):
    """Return the teacher named by config.teacher."""
    if config.teacher.startswith("file:"):
        return FileTeacher(config.teacher.removeprefix("file:"), config.category)
    if not config.teacher.strip():
        raise SynthError("--teacher is empty (give hf:PATH, openai:URL#MODEL or file:PATH)")
    return ModelTeacher(config.teacher, open_backend_for(config.teacher, cache), persona, config)


class Student:
    """The base model to be trained, answering without the persona prompt, batched."""

    def __init__(self, spec: str, config: SynthConfig, cache: dict):
        self.spec, self.backend = spec, open_backend_for(spec, cache)
        self.gen = generation(config.student_tokens, config)
        self.batch_size = config.batch_size

    def answer(self, jobs: list[Job]) -> list[str]:
        convs = [j.prompt for j in jobs]
        return self.backend.generate(convs, [None] * len(convs), self.gen, batch_size=self.batch_size)


# ---------------------------------------------------------------- teacher-written prompts

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
        rows = [{"slot": _slot(s), "category": s[0], "language": s[2], "follow_up": _hash_share(_slot(s)) < config.follow_ups,
                 "messages": [{"role": "user", "content": _clean_message(t)}]} for s, t in zip(batch, texts)]
        append_rows(cache_file, rows)
        have.update({r["slot"]: r for r in rows})
    return [have[_slot(s)] for s in slots if have[_slot(s)]["messages"][0]["content"]]


def _slot(spec: tuple) -> str:
    return "/".join(str(x) for x in spec)


def _hash_share(text: str) -> float:
    """Return a stable number in [0, 1) for `text` (which prompts get follow-ups does not depend on order)."""
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 2 ** 32


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


# ---------------------------------------------------------------- filters


def answer_problem(text: str, language: str, cut_off: bool = False) -> str | None:
    """Return the filter an in-character answer fails (empty, truncated: `cut_off` at the token budget,
    unfinished, wrong_language, repetition), or None."""
    from stylealign.evaluate.probe import repetition_reason
    from stylealign.text import language_problem

    if not text.strip():
        return "empty"
    if cut_off:
        return "truncated"
    if not _END.search(text):
        return "unfinished"
    if language_problem(text, language):
        return "wrong_language"
    if repetition_reason(text, language):  # the coherence probe's rule
        return "repetition"
    return None


def pair_problem(row: dict, persona, lexicons: dict, same: set[str]) -> str | None:
    """Return the filter a finished pair fails (empty rejected, wrong language of the whole row, chosen ≈
    rejected, misses the persona's targets), or None. `same`: keys whose chosen ≈ rejected."""
    from stylealign.evaluate.targets import target_comparison
    from stylealign.persona_data import row_text
    from stylealign.text import language_problem

    chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
    if not rejected.strip() or not all(t["content"].strip() for t in row["prompt"]):
        return "empty"
    if language_problem(row_text(row), row["language"]):
        return "wrong_language"
    if row["id"] in same or " ".join(chosen.split()) == " ".join(rejected.split()):
        return "chosen_like_rejected"
    wins, losses = target_comparison(chosen, rejected, row["language"], persona, lexicons)
    return "misses_targets" if len(losses) > len(wins) else None


def alike_pairs(rows: list[dict], threshold: float = SAME_ANSWER) -> set[str]:
    """Return the ids of rows whose chosen and rejected answers are near-identical (char n-gram cosine)."""
    from stylealign.neardup import PromptRef, similar_prompts

    refs = [PromptRef(side, r["id"], r["id"], r[side][0]["content"]) for r in rows for side in ("chosen", "rejected")
            if r[side][0]["content"].strip()]
    pairs = similar_prompts(refs, min_score=threshold, compare=lambda a, b: a.id == b.id and a.set != b.set)
    return {p.a.id for p in pairs if p.score >= threshold}


def near_duplicates(jobs: list[Job], persona, threshold: float) -> dict[str, str]:
    """Return {job key: what it nearly duplicates} for jobs whose first user turn is a near-duplicate of
    the persona's data, an eval suite, or an earlier job (from another source row); checker's search."""
    from stylealign.neardup import PromptRef, same_source, similar_prompts

    existing = existing_prompts(persona)
    refs = existing + [PromptRef("synth", j.source, j.key, j.prompt[0]["content"]) for j in jobs]
    order = {j.key: i for i, j in enumerate(jobs)}
    compare = lambda a, b: "synth" in (a.set, b.set) and not same_source(a, b)
    found: dict[str, str] = {}
    for p in similar_prompts(refs, min_score=threshold + 1e-9, compare=compare):
        if p.score <= threshold:
            break
        a, b = (p.a, p.b) if p.b.set == "synth" else (p.b, p.a)  # b: the synth job to drop
        if a.set == "synth" and order[a.id] > order[b.id]:
            a, b = b, a
        found.setdefault(b.id, f"{a.set}:{a.id} ({a.where}) {p.score:.2f}")
    return found


def existing_prompts(persona) -> list:
    """Return the first user turns of the persona's SFT, preference and eval rows, and of the kit's eval suites."""
    from stylealign import data as D
    from stylealign.neardup import PromptRef
    from stylealign.persona_data import load_sets

    sets, _ = load_sets(persona)
    refs = [PromptRef(kind, f"{r.file}:{r.line}", r.row.get("id"), D.first_user_turn(r.row))
            for kind, loaded in sets.items() if kind != "baseline" for r in loaded.records if D.first_user_turn(r.row)]
    seen = {ref.where.rsplit(":", 1)[0] for ref in refs}
    for path in sorted(Path(persona.path).resolve().parents[1].glob("eval/suites/*.jsonl")) + persona.eval_suite_files():
        if D.show_path(path) in seen:
            continue
        records, _ = D.read_file(path)
        refs += [PromptRef("eval", f"{r.file}:{r.line}", r.row.get("id"), D.first_user_turn(r.row))
                 for r in records if D.first_user_turn(r.row)]
        seen.add(D.show_path(path))
    return refs


# ---------------------------------------------------------------- the run


def pair_row(job: Job, chosen: str, rejected: str, provenance: dict) -> dict:
    """Return the preference row for a job (rejected_kind "student": the base model's own answer)."""
    return {"id": job.key, "category": job.category, "language": job.language, "rejected_kind": "student",
            "prompt": job.prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "provenance": provenance}


def sft_row(job: Job, chosen: str, provenance: dict) -> dict:
    """Return the SFT row for a job: its conversation with the teacher's answer."""
    from stylealign.data import VERDICTS
    from stylealign.evaluate.verdict import parse_verdict

    verdict = parse_verdict(chosen, job.language)
    return {"id": job.sft_id, "category": job.category, "language": job.language,
            "verdict": verdict if verdict in VERDICTS else "none",
            "messages": [*job.prompt, {"role": "assistant", "content": chosen}], "provenance": provenance}


@dataclass
class Outputs:
    """The files a run appends to, and what earlier runs already decided."""

    pref: Path
    log: Path
    sft: Path | None
    done: set[str] = field(default_factory=set)
    summary: Summary = field(default_factory=Summary)
    sft_ids: set[str] = field(default_factory=set)

    @classmethod
    def open(cls, pref: Path, sft: Path | None) -> "Outputs":
        """Repair partial last lines, then read what is done: logged decisions, and pairs written before
        their log line (a kill between the two appends), whose "kept" line is appended to the log now."""
        out = cls(pref, log_path(pref), sft)
        for folder in {p.parent for p in (pref, out.log, sft) if p is not None}:
            check_writable(folder)
        for path in (pref, out.log, sft):
            if path is not None:
                repair_tail(path)
        for entry in read_jsonl(out.log, missing_ok=True):
            out.done.add(entry["key"])
            out.summary.add(entry["status"], entry["key"])
        unlogged = [{"key": row["id"], "status": "kept"} for row in read_jsonl(pref, missing_ok=True) if row["id"] not in out.done]
        append_rows(out.log, unlogged)
        for entry in unlogged:
            out.done.add(entry["key"])
            out.summary.add("kept", entry["key"])
        out.sft_ids = {r["id"] for r in read_jsonl(sft, missing_ok=True)} if sft else set()
        return out

    def write(self, sft_rows: list[dict], pref_rows: list[dict], log_rows: list[dict]) -> None:
        """Append one batch: SFT rows, then pairs, then the decisions. A kill between them loses that batch's
        pairs, never repeats a row: an SFT row already written (its pair lost) is not written again when the
        rerun redoes its job."""
        if self.sft is not None:
            sft_rows = [r for r in sft_rows if r["id"] not in self.sft_ids]
            append_rows(self.sft, sft_rows)
            self.sft_ids.update(r["id"] for r in sft_rows)
        append_rows(self.pref, pref_rows)
        append_rows(self.log, log_rows)
        for entry in log_rows:
            self.done.add(entry["key"])
            self.summary.add(entry["status"], entry["key"])


def build_jobs(config: SynthConfig, teacher, persona, outputs: Outputs) -> list[Job]:
    """Return every job of the run, in a stable order (the resume key is each job's id)."""
    if config.prompts is None and isinstance(teacher, FileTeacher):
        jobs = teacher.jobs
    elif config.prompts == "persona":
        from stylealign.data import load_sft

        if config.sft_out:
            raise SynthError("--prompts persona answers the persona's own SFT prompts: they have SFT rows already "
                             "(drop --sft-out)")
        jobs = conversation_jobs(load_sft(persona.sft_files(), schema=False), persona.name, config.category)
        jobs = [Job(j.key, j.prompt, j.language, j.category, j.source, sft_id=j.sft_id) for j in jobs]  # teacher answers
    elif config.prompts:
        rows, where = read_rows(config.prompts)
        jobs = prompt_jobs(rows, where, config.category)
    elif config.topics and isinstance(teacher, ModelTeacher):
        cache = prompts_path(outputs.pref)
        rows = write_prompts(teacher, persona, config, cache)
        blank = [{"key": f"prompt-{r['slot']}", "status": "empty"} for r in read_jsonl(cache, missing_ok=True)
                 if not r["messages"][0]["content"] and f"prompt-{r['slot']}" not in outputs.done]
        outputs.write([], [], blank)  # a prompt the teacher left empty is decided too: counted, never retried
        jobs = prompt_jobs(rows, _show(cache), config.category)
    else:
        raise SynthError("no prompts: give --prompts persona|FILE, --topic CATEGORY:TOPIC (model teachers), "
                         "or a file: teacher")
    jobs = [j for j in jobs if j.language in persona.languages]
    return jobs[: config.limit] if config.limit else jobs


def _show(path: Path) -> str:
    from stylealign.data import show_path

    return show_path(path)


def provenance(teacher, student: Student, config: SynthConfig, job: Job) -> dict:
    """Return what made a row: teacher, student, settings, date, the prompt's source."""
    from stylealign import __version__

    return {"tool": f"stylealign synth {__version__}", "teacher": teacher.spec, "student": student.spec,
            "settings": config.settings(), "source": job.source,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def process_batch(jobs: list[Job], teacher, student: Student, persona, lexicons: dict, config: SynthConfig):
    """Return (sft rows, pairs, decisions) for one batch: teacher answers, answer filters, student
    answers for the survivors, pair filters."""
    answers = teacher.answer(jobs)
    ended = list(getattr(teacher, "ended", None) or [None] * len(jobs))
    if isinstance(teacher, ModelTeacher) and any(j.follow_up for j in jobs):
        jobs = add_follow_ups(teacher, jobs, answers)
        second, second_ended = _second(teacher, jobs)
        takes = [j.follow_up and len(j.prompt) >= 3 for j in jobs]
        answers = [b if t else a for t, a, b in zip(takes, answers, second)]
        ended = [e2 if t else e for t, e, e2 in zip(takes, ended, second_ended)]
    decisions = {j.key: answer_problem(a, j.language, _cut_off(teacher, a, e)) for j, a, e in zip(jobs, answers, ended)}
    live = [i for i, j in enumerate(jobs) if decisions[j.key] is None]
    rejected = dict(zip(live, student.answer([jobs[i] for i in live]))) if live else {}
    pairs = {i: pair_row(jobs[i], answers[i], rejected[i], provenance(teacher, student, config, jobs[i])) for i in live}
    same = alike_pairs(list(pairs.values()))
    for i, row in pairs.items():
        decisions[jobs[i].key] = pair_problem(row, persona, lexicons, same)
    kept = [i for i in live if decisions[jobs[i].key] is None]
    sft = [sft_row(jobs[i], answers[i], pairs[i]["provenance"]) for i in kept] if config.sft_out else []
    log = [{"key": j.key, "status": decisions[j.key] or "kept"} for j in jobs]
    return sft, [pairs[i] for i in kept], log


def _second(teacher: ModelTeacher, jobs: list[Job]) -> tuple[list[str], list]:
    """Return the teacher's answers to the follow-up turn of follow-up jobs ("" for the others) and
    whether each ended before the budget."""
    idx = [i for i, j in enumerate(jobs) if j.follow_up and len(j.prompt) >= 3]
    out, ended = [""] * len(jobs), [None] * len(jobs)
    texts = teacher.answer([jobs[i] for i in idx]) if idx else []
    for i, text, end in zip(idx, texts, teacher.ended if idx else []):
        out[i], ended[i] = text, end
    return out, ended


def _cut_off(teacher, text: str, ended: bool | None) -> bool:
    """Return whether a model teacher's answer hit its token budget: the backend's own report (a stop
    token; a server's finish_reason), else a count of the answer's tokens. A file teacher has no budget."""
    if not isinstance(teacher, ModelTeacher) or not text:
        return False
    if ended is not None:
        return not ended
    tok = teacher.tokenizer
    return tok is not None and len(tok(text, add_special_tokens=False)["input_ids"]) >= teacher.gen.max_new_tokens


def run_synth(persona, config: SynthConfig, backends: dict | None = None) -> Summary:
    """Build preference pairs (and SFT rows) for `persona`; resumable; return the summary of every decision.

    `backends`: model spec -> a ready Backend (anything with Generator.generate's signature), used
    instead of loading that model (tests pass fakes; a caller may share a loaded Generator)."""
    from tqdm.auto import tqdm

    from stylealign.evaluate.targets import persona_lexicons
    from stylealign.neardup import NEAR_DUPLICATE_MAX

    outputs = Outputs.open(Path(config.out or persona.path / "data" / "pref_synth.jsonl"),
                           Path(config.sft_out) if config.sft_out else None)
    cache: dict = {k.removeprefix("hf:"): v for k, v in (backends or {}).items()}
    teacher = open_teacher(config, persona, cache)
    jobs = build_jobs(config, teacher, persona, outputs)
    todo = [j for j in jobs if j.key not in outputs.done]
    dups = near_duplicates(jobs, persona, persona.requirements.get("near_duplicate_max", NEAR_DUPLICATE_MAX))
    outputs.write([], [], [{"key": j.key, "status": "near_duplicate", "of": dups[j.key]} for j in todo if j.key in dups])
    # a stable mixed order: a run stopped early leaves a sample of every file, language and category
    todo = sorted((j for j in todo if j.key not in dups), key=lambda j: _hash_share(j.key))
    _say(config, f"{len(jobs)} prompts: {len(jobs) - len(todo)} decided already or near-duplicates, {len(todo)} to do")
    if not todo:
        return outputs.summary
    student, lexicons = Student(config.student, config, cache), persona_lexicons(persona)
    bar = tqdm(total=len(todo), desc="synth", unit="prompt", disable=not config.progress)
    for start in range(0, len(todo), config.batch_size):
        batch = todo[start:start + config.batch_size]
        outputs.write(*process_batch(batch, teacher, student, persona, lexicons, config))
        bar.update(len(batch))
        bar.set_postfix(kept=outputs.summary.counts["kept"])
    bar.close()
    return outputs.summary


def _say(config: SynthConfig, message: str) -> None:
    if config.progress:
        import sys

        print(f"[synth] {message}", file=sys.stderr, flush=True)

