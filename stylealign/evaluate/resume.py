"""Evaluation that loses nothing: answers appended batch by batch, resumable, and a judge checked up front.

`answers.progress.jsonl` in the output folder starts with the settings that shape the answers, then holds
one line per generated answer, appended a whole batch per write (a torn last line, from a kill mid-write,
is dropped on reading). `stylealign eval --resume` generates only what is missing, and refuses when a
setting differs. A judge is called once before any generation, and its failure later keeps the answers
and every other score (its report section says "failed" and why).
"""

from __future__ import annotations

import json
from pathlib import Path

from stylealign.decoding import batch_order
from stylealign.errors import UserError, one_line
from stylealign.files import append_durable, write_atomic
from stylealign.options import flatten

PROGRESS = "answers.progress.jsonl"


class AnswerLog:
    """The answers generated so far for one evaluation, keyed (row key, model label or None, strength)."""

    def __init__(self, out: str | Path | None, settings: dict, resume: bool = False):
        self.path = Path(out) / PROGRESS if out is not None else None
        self.done: dict[tuple, str] = {}
        self.stopped: dict[tuple, bool | None] = {}  # probe answers: stopped by the model, not the budget
        if self.path is None:
            return
        if resume and self.path.exists():
            saved, self.done, self.stopped = read_log(self.path)
            _same_settings(saved, json.loads(json.dumps(settings, default=str)), self.path)
        else:
            # written now, so a read-only or full disk fails before the generation, not after it
            write_atomic(self.path, json.dumps({"settings": settings}, ensure_ascii=False, default=str) + "\n")

    def append(self, answers: list[tuple[tuple, str]], stopped: list | None = None) -> None:
        """Record a batch of (job key, text), and for probe answers whether each stopped, with one write."""
        ends = stopped if stopped else [None] * len(answers)
        lines = []
        for (key, text), end in zip(answers, ends):
            self.done[key], self.stopped[key] = text, end
            lines.append(json.dumps({"job": list(key), "text": text, **({} if end is None else {"stopped": end})},
                                    ensure_ascii=False) + "\n")
        if self.path is not None and answers:
            append_durable(self.path, "".join(lines))

    def finish(self) -> None:
        """Drop the progress file once answers.jsonl holds everything."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def read_log(path: Path) -> tuple[dict, dict[tuple, str], dict[tuple, bool | None]]:
    """Return (settings, {job key: text}, {job key: stopped}) from a progress file, skipping a torn last line."""
    lines = path.read_text(encoding="utf-8").split("\n")
    try:
        settings = json.loads(lines[0])["settings"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not an evaluation progress file; delete it or run without --resume") from None
    done, stopped = {}, {}
    for line in lines[1:]:
        try:
            item = json.loads(line)
            key = tuple(item["job"])
            done[key], stopped[key] = item["text"], item.get("stopped")
        except (ValueError, KeyError, TypeError):
            continue  # the write a kill cut short
    return settings, done, stopped


def _same_settings(saved: dict, now: dict, path: Path) -> None:
    for name in sorted(set(flatten(saved)) | set(flatten(now))):
        old, new = flatten(saved).get(name, "(unset)"), flatten(now).get(name, "(unset)")
        if old != new:
            raise UserError(f"--resume: setting {name!r} differs from the interrupted evaluation in {path.parent} "
                            f"({old!r} then, {new!r} now); resume with the same settings, or drop --resume to start over")


def generate_logged(generator, convs: list, jobs: list[tuple[int, str | None]], keys: list[tuple], gen_config,
                    strengths: dict, batch_size: int, log: AnswerLog, progress: bool = False,
                    stopped: list | None = None) -> list[str]:
    """Return the answer of each job (row index, adapter or None), generating only those `log` lacks, a batch at
    a time in the generator's own order (decoding.batch_order: by adapter, longest first), each batch appended to
    the log when done.

    `stopped` (the probe's): a list filled with, per job, whether the model stopped before the budget
    (None where the backend cannot tell)."""
    import inspect

    from tqdm.auto import tqdm

    params = inspect.signature(generator.generate).parameters.values()
    # A backend that cannot tell a stop from the budget leaves `stopped` None: those answers get nan.
    tells = stopped is not None and any(p.name == "stopped" or p.kind is p.VAR_KEYWORD for p in params)

    order = batch_order([convs[i] for i, _ in jobs], [adapter for _, adapter in jobs])
    todo = [j for j in order if keys[j] not in log.done]
    bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="generating", unit="answer", disable=not progress)
    for start in range(0, len(todo), batch_size):
        batch = todo[start:start + batch_size]
        ends: list = []
        texts = generator.generate([convs[jobs[j][0]] for j in batch], [jobs[j][1] for j in batch], gen_config,
                                   strengths=strengths, batch_size=batch_size, **({"stopped": ends} if tells else {}))
        log.append([(keys[j], t) for j, t in zip(batch, texts)], ends)
        bar.update(len(batch))
    bar.close()
    if stopped is not None:
        stopped.extend(log.stopped.get(k) for k in keys)
    return [log.done[k] for k in keys]


def check_judge(judge, spec: str | None) -> None:
    """Call the judge once (before minutes of generation); UserError if it does not answer."""
    if judge is None:
        return
    try:
        judge("Reply with A.", "A", "B")
    except Exception as e:  # connection refused, HTTP error, timeout, a broken local model
        raise UserError(f"judge {spec or ''}: not answering ({one_line(e)}); start it, fix --judge, or drop --judge") from e


def judge_or_failed(section_fn, *args) -> dict:
    """Return the judge section, or {"status": "failed", "reason"} when the judge breaks mid-way."""
    try:
        return section_fn(*args)
    except Exception as e:
        return {"status": "failed", "reason": one_line(f"{type(e).__name__}: {e}")}
