"""The run loop: build the jobs, drop near-duplicates, then per batch teacher -> filters -> student ->
pair filters -> one durable append (`run_synth`, the function `stylealign synth` calls)."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from stylealign.files import read_jsonl
from stylealign.synth.config import SynthConfig, SynthError
from stylealign.synth.filters import alike_pairs, answer_problem, near_duplicates, pair_problem
from stylealign.synth.jobs import Job, conversation_jobs, hash_share, prompt_jobs, read_rows
from stylealign.synth.outputs import Outputs, Summary, pair_row, prompts_path, sft_row
from stylealign.synth.teachers import FileTeacher, ModelTeacher, Student, open_teacher
from stylealign.synth.topics import add_follow_ups, write_prompts


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
    todo = sorted((j for j in todo if j.key not in dups), key=lambda j: hash_share(j.key))
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
