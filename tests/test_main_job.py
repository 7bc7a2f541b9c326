"""The main job (`stylealign quickstart`) prints the greedy probe in its headline and the checkpoint selection."""

from __future__ import annotations

import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_main_job_headline_carries_the_probe(tmp_path, capsys, monkeypatch):
    from stylealign.commands import quickstart as main
    from stylealign.fakes import FakeGenerator

    monkeypatch.chdir(REPO)  # the main job reads the shipped suites by relative path
    report = main.evaluate(FakeGenerator(), "persona", tmp_path, limit=3, embedder=None, classifier=False,
                           retention=False, plots=False, n_boot=50)
    out = capsys.readouterr().out
    assert report["probe"]["status"] == "ok"
    for line in ("greedy probe", "repetitive", "top opener", "stopped in budget", "known answers"):
        assert line in out, line
    assert (tmp_path / "eval" / "report.md").exists()


def test_main_job_prints_the_checkpoint_selection(tmp_path, capsys):
    from stylealign.commands.quickstart import show_selection

    scores = lambda vf, rep: {"verdict_first": vf, "repetitive": rep, "top_opener": 0.3, "yes_share": 0.5,  # noqa: E731
                              "openers": {"en": {"opener": "no", "share": 0.3, "n": 32}}}
    cands = [{"stage": "sft", "step": 10, "path": "a", "scores": scores(0.5, 0.2)},
             {"stage": "dpo", "step": 8, "path": "b", "scores": scores(0.9, 0.7)}]
    rule = {"metric": "verdict_first", "max_new_tokens": 96, "max_repetition_over_base": 0.05, "yes_share_min": 0.3, "yes_share_max": 0.7,
            "max_top_opener": 0.5}
    (tmp_path / "manifest.json").write_text(json.dumps({"selection": {
        "status": "ok", "rule": rule, "baseline": scores(0.1, 0.3), "candidates": cands, "selected": cands[0],
        "rule_met": True}}))
    show_selection(tmp_path)
    out = capsys.readouterr().out
    assert "on 32 held-out probe prompts" in out
    assert "sft 10" in out.splitlines()[-2] and out.splitlines()[-2].endswith("<- published")
    assert "published" not in out.splitlines()[-1]


def test_main_job_names_the_resolved_selection_metric_and_direction(tmp_path, capsys):
    from stylealign.commands.quickstart import show_selection

    scores = {"verdict_first": 0.2, "repetitive": 0.2, "top_opener": 0.3, "yes_share": 0.5,
              "openers": {"en": {"opener": "so", "share": 0.3, "n": 32}}}
    cands = [{"stage": "sft", "step": 10, "path": "a", "scores": scores}]
    rule = {"metric": "persona", "max_new_tokens": 96, "max_repetition_over_base": 0.05, "yes_share_min": 0.3,
            "yes_share_max": 0.7, "max_top_opener": 0.5}
    metric = {"metric": "verdict_first", "direction": "down", "source": "persona targets: verdict_first down"}
    (tmp_path / "manifest.json").write_text(json.dumps({"selection": {
        "status": "ok", "rule": rule, "metric": metric, "baseline": scores, "candidates": cands, "selected": cands[0],
        "rule_met": True}}))
    show_selection(tmp_path)
    head = [line for line in capsys.readouterr().out.splitlines() if "checkpoint selection" in line][0]
    assert "rule: min verdict_first [persona targets: verdict_first down]" in head


def test_main_job_stops_before_training_when_run_outside_the_checkout(tmp_path, monkeypatch, capsys):
    """Run from a folder without eval/suites, the main job says so in one line and trains nothing."""
    from stylealign import cli

    monkeypatch.chdir(tmp_path)
    code = cli.main(["quickstart", "--no-arena", "--run", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "eval/suites/style_en.jsonl: not found under" in err and "./run.sh main" in err
    assert not (tmp_path / "run").exists() and not list(tmp_path.iterdir())
