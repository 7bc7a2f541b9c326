"""`stylealign synth`: every filter with fake teachers and students, resumability, output that validates."""

import json
import os
import signal
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
from helpers import kill_after_two_decisions

from stylealign.checker import check_persona
from stylealign.files import read_jsonl as _read_jsonl
from stylealign.personas import load_persona
from stylealign.synth import (
    FILTERS,
    SynthConfig,
    SynthError,
    append_rows,
    log_path,
    pair_id,
    prompts_path,
    repair_tail,
    run_synth,
)


def read_jsonl(path) -> list[dict]:
    """The rows of a JSONL file the run may not have written yet ([] then)."""
    return _read_jsonl(path, missing_ok=True)


PERSONA = """name: toy
title: Toy
languages: [en, zh]
description: Direct and brief.
system_prompt: Be direct.
system_prompt_zh: 直说。
data:
  sft: [data/sft_*.jsonl]
  preference: [data/pref_*.jsonl]
  eval: [eval/*.jsonl]
targets:
  hedge_rate: down
  verdict_first: up
"""

GOOD = "No. Rewriting costs a quarter and buys nothing you can measure."


def _sft(rid, user, answer, lang="en", more=()):
    turns = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}, *more]
    return {"id": rid, "category": "tech", "language": lang, "verdict": "no", "messages": turns}


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "personas" / "toy"
    (folder / "data").mkdir(parents=True)
    (folder / "eval").mkdir()
    (folder / "persona.yaml").write_text(PERSONA, encoding="utf-8")
    (folder / "data" / "sft_01.jsonl").write_text(json.dumps(_sft("sft-en-1", "Is a monorepo worth it for three developers?", GOOD)) + "\n")
    (folder / "eval" / "suite.jsonl").write_text(json.dumps(
        {"id": "ev-1", "category": "tech", "language": "en", "adversarial": False, "kind": "open",
         "messages": [{"role": "user", "content": "Should we adopt GraphQL for our internal admin dashboard?"}]}) + "\n")
    return folder


class FakeBackend:
    """Answers by a function of the last user turn; records calls. Words are its tokens."""

    def __init__(self, answer):
        self.answer, self.calls = answer, []
        self.tokenizer = lambda text, add_special_tokens=False: {"input_ids": text.split()}

    def generate(self, conversations, adapters, config, strengths=None, batch_size=8, progress=False, stopped=None):
        self.calls.append([c[-1]["content"] for c in conversations])
        answers = [self.answer(c) for c in conversations]
        if stopped is not None:  # as Generator / OpenAIBackend report it: ended before the budget
            stopped[:] = [len(a.split()) < config.max_new_tokens for a in answers]
        return answers


class SilentBackend(FakeBackend):
    """A backend that does not report where answers stopped: synth counts the answer's tokens instead."""

    def generate(self, conversations, adapters, config, strengths=None, batch_size=8, progress=False):
        return super().generate(conversations, adapters, config, strengths, batch_size, progress)


def student_answer(conv):
    last = conv[-1]["content"]
    if "ECHO" in last:
        return GOOD
    if "SILENT" in last:
        return ""
    if "BEATS" in last:
        return "No. Direct answer first, then the reason."
    return "Great question! It may depend on many factors, and perhaps it could possibly work."


TEACHER_ROWS = [  # (id, prompt, answer, language) -> the filter it must hit
    ("kept", "Should I pick Postgres or MongoDB for a booking app?", GOOD, "en"),
    ("empty", "What is the best way to learn Rust quickly?", "", "en"),
    ("unfinished", "Do I need a CDN for a blog with 200 readers?", "No. A blog that small does not need", "en"),
    ("wrong_language", "我应该学习 Go 还是 Rust？", "No. Learn Go first, it ships faster.", "zh"),
    ("repetition", "Is TDD worth it on a prototype?",
     "No. Skip it for now and test later. Skip it for now and test later. Skip it for now and test later.", "en"),
    ("near_duplicate", "Should we adopt GraphQL for our internal admin dashboards?", GOOD, "en"),  # eval suite
    ("near_duplicate", "Is a monorepo worth it for three developers??", GOOD, "en"),  # persona SFT data
    ("near_duplicate", "Should I pick Postgres or MongoDB for a booking app??", GOOD, "en"),  # another job
    ("chosen_like_rejected", "ECHO: is serverless cheaper for a cron job?", GOOD, "en"),
    ("misses_targets", "BEATS: should I learn Vim?", "Well, it may depend; perhaps, possibly, it could help.", "en"),
    ("empty", "SILENT: should I buy a standing desk?", GOOD, "en"),  # the student said nothing
]


def _teacher_file(tmp_path, rows=TEACHER_ROWS):
    path = tmp_path / "teacher.jsonl"
    lines = [_sft(f"t-{i}-{name}", prompt, answer, lang) for i, (name, prompt, answer, lang) in enumerate(rows)]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines), encoding="utf-8")
    return path


def _config(teacher, out, **kw):
    return SynthConfig(teacher=teacher, student="fake-student", out=str(out), batch_size=4, progress=False, **kw)


def test_every_filter_is_applied_and_counted(toy, tmp_path):
    out = toy / "data" / "pref_synth.jsonl"
    student = FakeBackend(student_answer)
    summary = run_synth(load_persona(toy), _config(f"file:{_teacher_file(tmp_path)}", out), {"fake-student": student})
    expected = {name: sum(r[0] == name for r in TEACHER_ROWS) for name in ("kept", *FILTERS)}
    expected["truncated"] = 0  # a file teacher has no token budget (see the model-teacher test)
    assert summary.counts == expected
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == ["pair-t-0-kept-t1"]
    row = rows[0]
    assert row["rejected_kind"] == "student" and row["chosen"][0]["content"] == GOOD
    assert row["rejected"][0]["content"].startswith("Great question!")
    assert {"teacher", "student", "settings", "date", "source"} <= set(row["provenance"])
    assert row["provenance"]["teacher"].startswith("file:") and row["provenance"]["student"] == "fake-student"
    # the student only answered prompts whose teacher answer passed (no wasted generation)
    asked = {p for call in student.calls for p in call}
    assert "Do I need a CDN for a blog with 200 readers?" not in asked and "ECHO: is serverless cheaper for a cron job?" in asked
    report = check_persona(load_persona(toy))
    assert report.ok, report.format()


@pytest.mark.parametrize("backend", [FakeBackend, SilentBackend], ids=["backend-reports-stops", "token-count"])
def test_model_teacher_truncated_and_follow_ups(toy, tmp_path, backend):
    long = "No. " + "word " * 40 + "end."
    teacher = backend(lambda conv: long if "LONG" in conv[-1]["content"] else
                          ("What about a team of ten?" if "next message" in conv[-1]["content"] else GOOD))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in [
        {"prompt": "LONG: explain Kubernetes operators in depth.", "language": "en", "category": "tech"},
        {"messages": [{"role": "user", "content": "Is Scrum worth it for two people?"}], "category": "career"}]))
    out, sft = toy / "data" / "pref_synth.jsonl", toy / "data" / "sft_synth.jsonl"
    config = _config("hf:fake-teacher", out, prompts=str(prompts), sft_out=str(sft), teacher_tokens=20, few_shot=1)
    summary = run_synth(load_persona(toy), config, {"fake-student": FakeBackend(student_answer), "fake-teacher": teacher})
    assert summary.counts["truncated"] == 1 and summary.counts["kept"] == 1
    framed = teacher.calls[0]
    assert len(framed) == 2  # both prompts in one batch
    (row,) = read_jsonl(out)
    assert row["category"] == "career" and row["id"].startswith("pair-synth-") and row["id"].endswith("-t1")
    (sft_row,) = read_jsonl(sft)
    assert sft_row["messages"][-1]["content"] == GOOD and pair_id(sft_row["id"], 1) == row["id"]
    assert check_persona(load_persona(toy)).ok


def test_teacher_written_prompts_with_follow_ups(toy, tmp_path):
    def teach(conv):
        last = conv[-1]["content"]
        if last.startswith("Write one realistic message"):
            return "User: \"Should I learn Haskell first?\"" if "English" in last else "我该先学哪门编程语言？"
        if "next message" in last:
            return "And after that, what next?" if "English" in last else "那之后呢？"
        return GOOD if conv[0]["content"] == "Be direct." else "不。先学 Python，上手最快，资料最多。"

    teacher = FakeBackend(teach)
    out, sft = toy / "data" / "pref_synth.jsonl", toy / "data" / "sft_synth.jsonl"
    config = _config("hf:fake-teacher", out, topics=("tech:first programming language",), per_topic=1,
                     follow_ups=1.0, sft_out=str(sft))
    run_synth(load_persona(toy), config, {"fake-student": FakeBackend(lambda c: "Maybe, perhaps, it depends."),
                                          "fake-teacher": teacher})
    rows = {r["language"]: r for r in read_jsonl(out)}
    assert set(rows) == {"en", "zh"}
    en = rows["en"]
    assert [t["role"] for t in en["prompt"]] == ["user", "assistant", "user"] and en["id"].endswith("-t2")
    assert en["prompt"][0]["content"] == "Should I learn Haskell first?"  # label and quotes stripped
    assert rows["zh"]["prompt"][2]["content"] == "那之后呢？"
    cache = read_jsonl(prompts_path(out))
    assert len(cache) == 2
    calls = len(teacher.calls)
    run_synth(load_persona(toy), config, {"fake-student": FakeBackend(lambda c: "x"), "fake-teacher": teacher})
    assert len(teacher.calls) == calls  # a rerun reuses the prompts and skips the done pairs
    assert check_persona(load_persona(toy)).ok


def test_rerun_skips_done_and_repairs_a_partial_line(toy, tmp_path):
    out = toy / "data" / "pref_synth.jsonl"
    teacher = _teacher_file(tmp_path)
    first = FakeBackend(student_answer)
    run_synth(load_persona(toy), _config(f"file:{teacher}", out, limit=5), {"fake-student": first})
    logged = read_jsonl(log_path(out))
    with open(out, "ab") as f:  # a write killed midway
        f.write(b'{"id": "pair-half')
    again = FakeBackend(student_answer)
    summary = run_synth(load_persona(toy), _config(f"file:{teacher}", out), {"fake-student": again})
    asked = [p for call in again.calls for p in call]
    assert "Should I pick Postgres or MongoDB for a booking app?" not in asked  # done in the first run
    keys = [e["key"] for e in read_jsonl(log_path(out))]
    assert len(keys) == len(set(keys)) == len(TEACHER_ROWS) and keys[: len(logged)] == [e["key"] for e in logged]
    assert sum(summary.counts.values()) == len(TEACHER_ROWS)
    assert out.read_bytes().endswith(b"\n") and len(read_jsonl(out)) == 1


def _drop_last_line(path):
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]))


def test_a_kill_between_the_appends_loses_and_repeats_nothing(toy, tmp_path):
    """A batch is appended as SFT rows, then pairs, then decisions: a kill after the pair (no log line) or
    after the SFT row (no pair) is repaired by the rerun without a duplicate row or a missing decision."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p, "language": "en", "category": "tech"}) + "\n" for p in
                               ("Should I use SQLite for a desktop app?", "Is Kubernetes overkill for one server?",
                                "Do I need type hints in a small script?")))
    out, sft = toy / "data" / "pref_synth.jsonl", toy / "data" / "sft_synth.jsonl"
    config = replace(_config("hf:fake-teacher", out, prompts=str(prompts), sft_out=str(sft), few_shot=0), batch_size=1)
    backends = lambda: {"fake-student": FakeBackend(student_answer), "fake-teacher": FakeBackend(lambda c: GOOD)}
    run_synth(load_persona(toy), config, backends())
    full_log, full_pref, full_sft = log_path(out).read_bytes(), out.read_bytes(), sft.read_bytes()
    assert len(read_jsonl(out)) == len(read_jsonl(sft)) == 3

    _drop_last_line(log_path(out))  # killed after the pair was written, before its decision
    again = backends()
    summary = run_synth(load_persona(toy), config, again)
    assert not again["fake-student"].calls and summary.counts["kept"] == 3
    assert log_path(out).read_bytes() == full_log and out.read_bytes() == full_pref and sft.read_bytes() == full_sft

    _drop_last_line(log_path(out))  # killed after the SFT row, before the pair
    _drop_last_line(out)
    again = backends()
    summary = run_synth(load_persona(toy), config, again)
    assert len(again["fake-student"].calls) == 1 and summary.counts["kept"] == 3  # the lost pair is redone
    assert [e["key"] for e in read_jsonl(log_path(out))] == [e["key"] for e in read_jsonl_bytes(full_log)]
    assert [r["id"] for r in read_jsonl(out)] == [r["id"] for r in read_jsonl_bytes(full_pref)]
    assert sft.read_bytes() == full_sft  # its SFT row is not written twice


def read_jsonl_bytes(blob: bytes) -> list[dict]:
    return [json.loads(line) for line in blob.decode("utf-8").splitlines() if line.strip()]

def test_repair_tail_and_append(tmp_path):
    path = tmp_path / "rows.jsonl"
    append_rows(path, [{"a": 1}, {"a": 2}])
    with open(path, "ab") as f:
        f.write(b'{"a": 3')
    assert repair_tail(path) == len(b'{"a": 3') and read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert repair_tail(path) == 0


def test_bad_inputs_are_one_line_errors(toy, tmp_path):
    persona = load_persona(toy)
    with pytest.raises(SynthError, match="no such file"):
        run_synth(persona, _config("file:nope.jsonl", tmp_path / "o.jsonl"), {"fake-student": FakeBackend(str)})
    with pytest.raises(SynthError, match="unknown category 'cooking'"):
        run_synth(persona, _config("hf:fake-teacher", tmp_path / "o.jsonl", topics=("cooking:soup",)),
                  {"fake-student": FakeBackend(str), "fake-teacher": FakeBackend(str)})
    with pytest.raises(SynthError, match="no prompts"):
        run_synth(persona, _config("hf:fake-teacher", tmp_path / "o.jsonl"),
                  {"fake-student": FakeBackend(str), "fake-teacher": FakeBackend(str)})


# ---------------------------------------------------------------- the embedded model, for real


def _toy_en(toy):
    text = (toy / "persona.yaml").read_text().replace("languages: [en, zh]", "languages: [en]")
    (toy / "persona.yaml").write_text(text)
    return load_persona(toy)


@pytest.mark.slow
@pytest.mark.synth_e2e
def test_end_to_end_with_the_embedded_model_as_teacher_and_student(toy, tmp_path):
    """The embedded model writes the prompts (one follow-up), answers in character and as the student. Its
    quality is low, so how many pairs survive the filters varies with the CPU; the mechanics may not: every
    prompt decided exactly once and counted, every row written valid, with provenance, in SFT and pairs alike.
    (Its first version asserted a valid output file, which does not exist when every answer was filtered.)"""
    from stylealign import data as D

    persona = _toy_en(toy)
    out, sft = toy / "data" / "pref_synth.jsonl", toy / "data" / "sft_synth.jsonl"
    config = SynthConfig(teacher="hf:smollm2-135m", student="smollm2-135m", out=str(out), sft_out=str(sft),
                         topics=("tech:databases", "science:volcanoes", "study:exam revision"), per_topic=1,
                         follow_ups=0.5, few_shot=1, teacher_tokens=160, student_tokens=48, batch_size=4, progress=False)
    summary = run_synth(persona, config)
    print(summary.format())
    prompts = read_jsonl(prompts_path(out))
    assert len(prompts) == 3 and all(p["language"] == "en" and p["category"] in ("tech", "science", "study") for p in prompts)
    log = read_jsonl(log_path(out))
    assert len(log) == len({e["key"] for e in log}) == 3  # one decision per prompt, an empty one included
    assert sum(summary.counts.values()) == 3 and set(summary.counts) <= {"kept", *FILTERS}
    assert {e["key"] for e in log if e["status"] == "kept"} == {r["id"] for r in read_jsonl(out)}
    kept = read_jsonl(out)
    assert len(kept) == summary.counts["kept"] == len(read_jsonl(sft))
    for path, kind in ((out, "preference"), (sft, "sft")):
        if path.exists():  # absent when the filters left no pair (the run still decided every prompt)
            records, problems = D.read_file(path)
            assert not problems and not D.check_records(records, kind, schema=True)
    for row in kept:
        assert row["provenance"]["teacher"] == "hf:smollm2-135m" and row["rejected_kind"] == "student"
        assert row["chosen"][0]["content"].strip() and row["rejected"][0]["content"].strip()
    report = check_persona(load_persona(toy))
    assert report.ok, report.format()
    calls = summary.counts.copy()
    assert run_synth(persona, config).counts == calls  # a rerun decides nothing again


@pytest.mark.slow
@pytest.mark.synth_e2e
def test_kill_9_mid_run_loses_and_duplicates_nothing(toy, tmp_path):
    import sys

    _toy_en(toy)
    prompts = ["Is a CDN worth it for a blog?", "How do vaccines train the immune system?", "Why do cats purr?",
               "What is compound interest?", "How do I start learning the violin?", "Why is the sea salty?",
               "Should I learn Go or Rust first?", "What caused the fall of Constantinople?", "How do tides work?",
               "Is it bad to skip breakfast?", "What makes a good cover letter?", "How do solar panels make power?"]
    rows = [("kept", p, GOOD, "en") for p in prompts]
    teacher = _teacher_file(tmp_path, rows)
    out = toy / "data" / "pref_synth.jsonl"
    cmd = [sys.executable, "-m", "stylealign", "synth", str(toy), "--teacher", f"file:{teacher}", "--out", str(out),
           "--batch-size", "2", "--student-tokens", "24", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = kill_after_two_decisions(cmd, out, timeout=600)
    assert proc.returncode == -signal.SIGKILL  # killed, not finished
    before_log, before = log_path(out).read_bytes(), out.read_bytes()
    assert 2 <= len(read_jsonl(log_path(out))) < len(rows)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    keys = [e["key"] for e in read_jsonl(log_path(out))]
    assert sorted(keys) == sorted(pair_id(f"t-{i}-kept", 1) for i in range(len(rows)))  # every prompt once
    assert log_path(out).read_bytes().startswith(before_log.rsplit(b"\n", 1)[0])  # nothing decided was lost
    assert out.read_bytes().startswith(before.rsplit(b"\n", 1)[0])
    ids = [r["id"] for r in read_jsonl(out)]
    assert len(ids) == len(set(ids))
