"""`stylealign synth` with an OpenAI-compatible teacher, against a real server on 127.0.0.1:
llama-cpp-python's server (`llama-cpp-python[server]`) serving the embedded GGUF as shipped.

What is real here: the HTTP server, its chat template, greedy decoding and `finish_reason`. The checks:
every decision the run logged is the one a direct request to the same server implies (the persona's
system prompt and few-shot examples reach the server; a cut-off answer is `truncated` from the
server's own finish_reason), and `kill -9` of a run against the server loses and duplicates nothing.

llama-cpp-python is part of the test setup (marker llama_cpp), so these fail, never skip, without it."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from helpers import kill_after_two_decisions

from stylealign.backend import open_backend
from stylealign.checker import check_persona
from stylealign.files import read_jsonl as _read_jsonl
from stylealign.generate import GenerationConfig
from stylealign.personas import load_persona
from stylealign.synth import (
    FILTERS,
    ModelTeacher,
    SynthConfig,
    answer_problem,
    log_path,
    prompt_jobs,
    run_synth,
)


def read_jsonl(path) -> list[dict]:
    """The rows of a JSONL file the run may not have written yet ([] then)."""
    return _read_jsonl(path, missing_ok=True)


pytestmark = [pytest.mark.llama_cpp, pytest.mark.slow]

MODEL = "smollm2"
PERSONA = """name: toy
title: Toy Tutor
languages: [en]
description: A patient tutor who explains one step at a time.
system_prompt: You are a patient tutor. Explain one step at a time in plain prose and end with a short question.
data:
  sft: [data/sft_*.jsonl]
  preference: [data/pref_*.jsonl]
  eval: [eval/*.jsonl]
targets:
  hedge_rate: down
"""
SHOT = {"id": "sft-en-1", "category": "math", "language": "en", "verdict": "none", "messages": [
    {"role": "user", "content": "What is a prime number?"},
    {"role": "assistant", "content": "A prime number has exactly two divisors: 1 and itself. First, 7 is prime, "
                                     "because only 1 and 7 divide it. Then 8 is not, because 2 divides it. Is 9 prime?"}]}
PROMPTS = ["How do tides work?", "Why is the sky blue?", "What is a fraction?", "How do plants drink water?",
           "What does a verb do in a sentence?", "Why do we have seasons?", "What is gravity?",
           "How does a battery store energy?"]
HEDGY = "Well, maybe, perhaps it possibly depends; I think it might, arguably, sort of vary."  # loses on hedges


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """Serve the embedded GGUF with llama-cpp-python's OpenAI-compatible server; yield its /v1 URL."""
    from stylealign.models import embedded_gguf

    port = _free_port()
    config = tmp_path_factory.mktemp("server") / "config.json"
    config.write_text(json.dumps({"host": "127.0.0.1", "port": port, "models": [
        {"model": str(embedded_gguf("smollm2-135m")), "model_alias": MODEL, "n_ctx": 2048, "verbose": False}]}))
    proc = subprocess.Popen([sys.executable, "-m", "stylealign.export.llama_server", "--config_file", str(config)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 180
        while True:
            assert proc.poll() is None, f"the server exited: {proc.stdout.read()[-2000:]}"
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2)
                break
            except OSError:
                assert time.time() < deadline, f"no server at {url} after 180 s"
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "personas" / "toy"
    (folder / "data").mkdir(parents=True)
    (folder / "eval").mkdir()
    (folder / "persona.yaml").write_text(PERSONA, encoding="utf-8")
    (folder / "data" / "sft_01.jsonl").write_text(json.dumps(SHOT) + "\n", encoding="utf-8")
    (folder / "eval" / "suite.jsonl").write_text(json.dumps(
        {"id": "ev-1", "category": "tech", "language": "en", "adversarial": False, "kind": "open",
         "messages": [{"role": "user", "content": "Should we adopt GraphQL for our internal admin dashboard?"}]}) + "\n")
    return folder


class HedgyStudent:
    """A student that always hedges, so a finished pair can only be kept (the toy's target is hedges down)."""

    def generate(self, conversations, adapters, config, strengths=None, batch_size=8, progress=False, stopped=None):
        if stopped is not None:
            stopped[:] = [True] * len(conversations)
        return [HEDGY] * len(conversations)


def _prompts(tmp_path, prompts) -> Path:
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p, "language": "en", "category": "science"}) + "\n" for p in prompts))
    return path


def test_openai_teacher_decisions_match_the_server(server, toy, tmp_path):
    """Greedy teacher on the server: each logged decision is what the server's own answer to the persona's
    framing (system prompt, few-shot example, prompt) implies; kept rows carry that answer and provenance."""
    persona, prompts = load_persona(toy), _prompts(tmp_path, PROMPTS[:4])
    spec = f"openai:{server}#{MODEL}?concurrency=2"
    out, sft = toy / "data" / "pref_synth.jsonl", toy / "data" / "sft_synth.jsonl"
    config = SynthConfig(teacher=spec, student="hedgy", prompts=str(prompts), out=str(out), sft_out=str(sft),
                         few_shot=1, teacher_tokens=160, temperature=0.0, batch_size=2, progress=False)
    summary = run_synth(persona, config, {"hedgy": HedgyStudent()})
    decided = {e["key"]: e["status"] for e in read_jsonl(log_path(out))}
    assert sum(summary.counts.values()) == len(decided) == 4 and set(summary.counts) <= {"kept", *FILTERS}

    # the same requests, sent directly: the teacher's framing, greedy, and the server's finish_reason
    direct = open_backend(f"openai:{server}#{MODEL}")
    teacher = ModelTeacher(spec, direct, persona, config)
    jobs = prompt_jobs(read_jsonl(prompts), str(prompts), "science")
    framed = [teacher.frame(j) for j in jobs]
    assert framed[0][0] == {"role": "system", "content": persona.system_prompt_for("en")}
    assert framed[0][1:3] == SHOT["messages"][:2] and framed[0][-1]["content"] == PROMPTS[0]
    stopped: list = []
    answers = direct.generate(framed, [None] * len(framed), GenerationConfig(max_new_tokens=160, do_sample=False),
                              stopped=stopped)
    assert any(a.strip() for a in answers)
    rows = {r["id"]: r for r in read_jsonl(out)}
    for job, answer, ended in zip(jobs, answers, stopped):
        expected = answer_problem(answer, "en", cut_off=not ended) or "kept"
        assert decided[job.key] == expected, (job.prompt[-1]["content"], answer)
        if expected == "kept":
            row = rows[job.key]
            assert row["chosen"][0]["content"] == answer and row["rejected"][0]["content"] == HEDGY
            assert row["provenance"]["teacher"] == spec and row["provenance"]["settings"]["temperature"] == 0.0
    assert len(rows) == summary.counts["kept"] == len(read_jsonl(sft))
    assert check_persona(load_persona(toy)).ok


def test_openai_teacher_cut_off_by_the_server_is_truncated(server, toy, tmp_path):
    """A 4-token budget: the server stops every answer at max_tokens (finish_reason "length"), so every
    prompt is `truncated` and the student is never asked."""
    class Student(HedgyStudent):
        asked = 0

        def generate(self, conversations, *a, **k):
            Student.asked += len(conversations)
            return super().generate(conversations, *a, **k)

    out = toy / "data" / "pref_synth.jsonl"
    config = SynthConfig(teacher=f"openai:{server}#{MODEL}", student="s", prompts=str(_prompts(tmp_path, PROMPTS[:3])),
                         out=str(out), few_shot=0, teacher_tokens=4, temperature=0.0, progress=False)
    summary = run_synth(load_persona(toy), config, {"s": Student()})
    assert summary.counts["truncated"] == 3 and summary.counts["kept"] == 0 and Student.asked == 0
    assert not out.exists() or not read_jsonl(out)


def test_kill_9_with_a_server_teacher_and_student_loses_and_duplicates_nothing(server, toy, tmp_path):
    """`stylealign synth` with teacher and student on the server, killed with SIGKILL after two batches were
    decided, then rerun: every prompt decided exactly once, everything decided before the kill kept as it was."""
    prompts, out = _prompts(tmp_path, PROMPTS), toy / "data" / "pref_synth.jsonl"
    spec = f"openai:{server}#{MODEL}"
    cmd = [sys.executable, "-m", "stylealign", "synth", str(toy), "--teacher", spec, "--student", spec,
           "--prompts", str(prompts), "--out", str(out), "--batch-size", "1", "--few-shot", "1",
           "--teacher-tokens", "96", "--student-tokens", "48", "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = kill_after_two_decisions(cmd, out, timeout=300, poll=0.05)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]  # killed, not finished
    before_log = log_path(out).read_bytes()
    before = out.read_bytes() if out.exists() else b""
    assert 2 <= len(read_jsonl(log_path(out))) < len(PROMPTS)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    keys = [e["key"] for e in read_jsonl(log_path(out))]
    want = {j.key for j in prompt_jobs(read_jsonl(prompts), str(prompts), "life")}
    assert len(keys) == len(set(keys)) == len(PROMPTS) and set(keys) == want  # every prompt once
    assert log_path(out).read_bytes().startswith(before_log.rsplit(b"\n", 1)[0])  # nothing decided was lost
    if before:  # pairs written before the kill are still there, byte for byte
        assert out.read_bytes().startswith(before.rsplit(b"\n", 1)[0])
    rows = read_jsonl(out)
    assert len({r["id"] for r in rows}) == len(rows) == sum(e["status"] == "kept" for e in read_jsonl(log_path(out)))
    assert all(r["provenance"]["teacher"] == spec and r["provenance"]["student"] == spec for r in rows)
