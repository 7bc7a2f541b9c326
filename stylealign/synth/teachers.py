"""Teachers and the student: who answers a job.

A FileTeacher answers from a file of in-character conversations; a ModelTeacher is any Backend (a
local HF chat model, or an OpenAI-compatible server) answering in character, with the persona's
system prompt and a few of its SFT conversations as examples. The Student is the base model to be
trained, answering without the persona prompt: its answers become `rejected`. Models load only when a
run opens them (generate and backend are imported inside the functions).
"""

from __future__ import annotations

from stylealign.synth.config import SynthConfig, SynthError
from stylealign.synth.jobs import Job, conversation_jobs, digest, read_rows
from stylealign.text import plain_turns


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
            out[lang].append(plain_turns(turns))
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
