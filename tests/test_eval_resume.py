"""Evaluation loses nothing: answers appended batch by batch, `--resume` continues with the same settings and
refuses others, a dead judge fails before generation, and a judge breaking later keeps every other score."""

from __future__ import annotations

import json

import pytest

from stylealign.errors import UserError
from stylealign.evaluate import EvalConfig, run_eval
from stylealign.evaluate.resume import PROGRESS, read_log
from stylealign.fakes import FakeGenerator, FakeJudge, HashEmbedder

SUITE = [{"id": f"q{i}", "category": "tech", "language": "en" if i % 2 else "zh", "adversarial": False, "kind": "open",
          "messages": [{"role": "user", "content": f"Question number {i}: " + "why? " * i}]} for i in range(10)]


def _config(**kw) -> EvalConfig:
    return EvalConfig(**{"strengths": (0.5, 1.0), "n_boot": 50, "progress": False, "batch_size": 4, "corpus": None,
                         "n_examples": 1, "classifier": False, "retention": False, "plots": False, "probe": False,
                         **kw})


def _eval(gen, out, config=None, **kw):
    return run_eval(gen, ["persona"], [SUITE], config or _config(), embedder=HashEmbedder(), out=out, **kw)


class Dies(FakeGenerator):
    """A generator killed (Ctrl-C) during its `n`-th batch."""

    def __init__(self, n: int):
        super().__init__()
        self.n = n

    def generate(self, *a, **kw):
        if len(self.calls) == self.n - 1:
            raise KeyboardInterrupt
        return super().generate(*a, **kw)


def test_interrupted_evaluation_resumes_where_it_stopped(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _eval(Dies(4), tmp_path / "out")
    settings, done, _ = read_log(tmp_path / "out" / PROGRESS)
    assert len(done) == 3 * 4, "three finished batches of four answers were kept"
    assert settings["generation"]["seed"] == 0 and settings["strengths"] == [0.5, 1.0]
    resumed_gen = FakeGenerator()
    resumed = _eval(resumed_gen, tmp_path / "out", resume=True)
    jobs = 10 * 2 + 10  # baseline + adapter at the first strength, adapter at the second
    assert sum(len(c["adapters"]) for c in resumed_gen.calls) == jobs - 12, "only the missing answers"
    straight = _eval(FakeGenerator(), tmp_path / "straight")
    assert _answers(tmp_path / "out") == _answers(tmp_path / "straight")
    assert resumed["comparisons"] == straight["comparisons"]
    assert not (tmp_path / "out" / PROGRESS).exists(), "answers.jsonl holds everything once finished"


def test_greedy_probe_answers_are_kept_and_resumed_too(tmp_path):
    probing = _config(probe=True, probe_max_new_tokens=24)
    # the sampled pass is 8 batches of up to 4 (20 jobs at strength 0.5, 10 at 1.0); the probe's come next
    with pytest.raises(KeyboardInterrupt):
        _eval(Dies(8 + 3), tmp_path / "out", probing)
    _, done, stopped = read_log(tmp_path / "out" / PROGRESS)
    probe_keys = [k for k in done if k[0] == "probe"]
    assert len(probe_keys) == 2 * 4, "the probe's two finished batches were kept"
    assert all(stopped[k] in (True, False) for k in probe_keys), "with whether each answer stopped"
    resumed_gen = FakeGenerator()
    resumed = _eval(resumed_gen, tmp_path / "out", probing, resume=True)
    probe_jobs = 10 * 2 + 10
    assert sum(len(c["adapters"]) for c in resumed_gen.calls) == probe_jobs - 8, "only the missing probe answers"
    straight = _eval(FakeGenerator(), tmp_path / "straight", probing)
    assert resumed["probe"] == straight["probe"]
    with pytest.raises(KeyboardInterrupt):
        _eval(Dies(9), tmp_path / "again", probing)
    with pytest.raises(UserError, match=r"setting 'probe_max_new_tokens' differs .* \(24 then, 48 now\)"):
        _eval(FakeGenerator(), tmp_path / "again", _config(probe=True, probe_max_new_tokens=48), resume=True)


def _answers(out) -> list:
    return [json.loads(line)["answers"] for line in (out / "answers.jsonl").read_text().splitlines()]


def test_a_torn_last_line_is_dropped(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _eval(Dies(2), tmp_path)
    with open(tmp_path / PROGRESS, "a") as f:
        f.write('{"job": ["inline/q1", null, 0.5], "te')  # a kill in the middle of a write
    assert len(read_log(tmp_path / PROGRESS)[1]) == 4


def test_resume_refuses_different_settings_naming_the_setting(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _eval(Dies(2), tmp_path)
    from stylealign.generate import GenerationConfig

    with pytest.raises(UserError, match=r"--resume: setting 'generation.temperature' differs .* \(0\.7 then, 0\.9 now\)"):
        _eval(FakeGenerator(), tmp_path, _config(generation=GenerationConfig(temperature=0.9)), resume=True)
    with pytest.raises(UserError, match=r"setting 'strengths' differs"):
        _eval(FakeGenerator(), tmp_path, _config(strengths=(1.0,)), resume=True)


class DeadJudge:
    def __call__(self, *a):
        raise ConnectionRefusedError("[Errno 111] Connection refused")


class FlakyJudge(FakeJudge):
    """Answers the check before generation, then the endpoint goes down."""

    def __call__(self, *a):
        if self.calls:
            raise TimeoutError("timed out")
        return super().__call__(*a)


def test_a_dead_judge_fails_before_any_generation(tmp_path):
    gen = FakeGenerator()
    with pytest.raises(UserError, match=r"judge openai:x#m: not answering \(\[Errno 111\] Connection refused\)"):
        _eval(gen, tmp_path, judge=DeadJudge(), judge_spec="openai:x#m")
    assert gen.calls == []


def test_a_judge_failure_keeps_answers_and_every_other_score(tmp_path):
    report = _eval(FakeGenerator(), tmp_path, judge=FlakyJudge(), judge_spec="fake")
    assert report["judge"] == {"status": "failed", "reason": "TimeoutError: timed out"}
    assert report["comparisons"]["persona@1"]["overall"] and report["truth"]["status"] == "skipped"
    assert len(_answers(tmp_path)) == len(SUITE)
    assert json.loads((tmp_path / "report.json").read_text())["judge"]["status"] == "failed"


def test_eval_cli_refuses_a_dead_judge_in_one_line(tmp_path, capsys):
    from helpers import fails_with

    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    fails_with(capsys, ["eval", "--adapter", str(run), "--judge", "openai:http://127.0.0.1:9/v1#judge-model",
                        "--out", str(tmp_path / "out")], "judge openai:http://127.0.0.1:9/v1#judge-model: not answering",
               "Connection refused")


def test_answers_are_batched_by_adapter_so_batches_are_not_mixed():
    """Baseline and adapter answers to the same prompts go in batches of one model each (generate.batch_order:
    no per-row routing), longest prompt first within each."""
    from stylealign.evaluate.resume import AnswerLog, generate_logged
    from stylealign.generate import GenerationConfig

    convs = [row["messages"] for row in SUITE[:8]]
    jobs = [(i, model) for i in range(8) for model in (None, "persona")]
    gen = FakeGenerator()
    answers = generate_logged(gen, convs, jobs, [(i, m or "", 1.0) for i, m in jobs], GenerationConfig(), {}, 4,
                              AnswerLog(None, {}))
    assert [set(c["adapters"]) for c in gen.calls] == [{None}, {None}, {"persona"}, {"persona"}]
    assert len(answers) == 16 and all(answers)
