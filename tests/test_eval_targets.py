"""Persona-declared targets drive the report: directions, ✓/✗, own lexicons, headline order."""

import re

import pytest

from stylealign.evaluate import EvalConfig, headline, run_eval
from stylealign.evaluate.targets import headline_metrics, persona_lexicons, persona_metric_table, target_comparison
from stylealign.fakes import FakeGenerator, HashEmbedder
from stylealign.personas import PersonaError, load_persona

SUITE = [{"id": f"q{i}", "category": "tech", "language": "en", "adversarial": False, "kind": "open",
          "messages": [{"role": "user", "content": f"Should I rewrite service {i} in Rust?"}]} for i in range(12)]

# The opposite of sharp-candid: it wants hedges, boilerplate and an evasive opening, and no verdict up front.
TOY = """name: ditherer
title: Ditherer
languages: [en]
description: Never commits.
system_prompt: Hedge everything.
data:
  sft: [data/*.jsonl]
targets:
  hedge_rate: up
  boilerplate_rate: up
  verdict_first: down
  dithering: up
lexicons:
  dithering:
    kind: opener
    en: dither.txt
"""


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "ditherer"
    (folder / "data").mkdir(parents=True)
    (folder / "persona.yaml").write_text(TOY, encoding="utf-8")
    (folder / "dither.txt").write_text("# openers that put off the answer\ngreat question\nit depends\n", encoding="utf-8")
    return folder


def _evaluate(persona, tmp_path):
    config = EvalConfig(n_boot=200, progress=False, corpus=None, classifier=False, persona=str(persona), plots=False)
    return run_eval(FakeGenerator(), ["persona"], [SUITE], config, embedder=HashEmbedder(), out=tmp_path / "out")


def _row(markdown: str, metric: str) -> str:
    return next(line for line in markdown.splitlines() if line.startswith(f"| {metric} |"))


def test_opposite_persona_flips_the_marks(toy, tmp_path):
    # the fake adapter answers verdict-first without hedges: a win for sharp-candid, a loss for the toy
    sharp = _evaluate("sharp-candid", tmp_path / "a")
    dither = _evaluate(toy, tmp_path / "b")
    md_sharp = (tmp_path / "a" / "out" / "report.md").read_text()
    md_dither = (tmp_path / "b" / "out" / "report.md").read_text()
    for metric in ("verdict_first", "hedge_rate", "boilerplate_rate"):
        assert _row(md_sharp, metric).count("✓") == 2 and "✗" not in _row(md_sharp, metric), metric
        assert _row(md_dither, metric).count("✗") == 2 and "✓" not in _row(md_dither, metric), metric
    assert sharp["metrics"]["verdict_first"]["better"] == "higher"
    assert dither["metrics"]["verdict_first"]["better"] == "lower" and dither["metrics"]["verdict_first"]["target"]
    # a style marker the toy does not declare has no direction for it (no mark either way)
    assert dither["metrics"]["booster_rate"]["better"] == "neutral"
    assert "✓" not in _row(md_dither, "booster_rate") and "✗" not in _row(md_dither, "booster_rate")
    # coherence metrics keep the kit's direction whatever the persona
    assert dither["metrics"]["degenerate"]["better"] == "lower"


def test_own_lexicon_metric_is_scored_and_marked(toy, tmp_path):
    report = _evaluate(toy, tmp_path)
    stat = report["comparisons"]["persona"]["overall"]["dithering"]
    assert stat["baseline"] == 1.0 and stat["adapter"] == 0.0  # "Great question! ..." vs "No. ..."
    md = (tmp_path / "out" / "report.md").read_text()
    assert "✗" in _row(md, "dithering")
    # the headline leads with the persona's own targets
    order = [m for m in headline_metrics(report["metrics"]) if m in report["comparisons"]["persona"]["overall"]]
    assert order[:4] == ["hedge_rate", "boilerplate_rate", "verdict_first", "dithering"]
    terminal = headline(report)
    assert re.search(r"dithering .*✗", terminal) and re.search(r"verdict_first .*✗", terminal)


def test_sharp_candid_declares_todays_directions():
    table = persona_metric_table(load_persona("sharp-candid"))
    wanted = {"hedge_rate": "lower", "boilerplate_rate": "lower", "booster_rate": "higher", "assertiveness": "higher",
              "verdict_first": "higher", "list_items": "lower", "evasive_opener": "lower"}
    assert {m: table[m]["better"] for m in wanted} == wanted
    assert all(table[m].get("target") for m in wanted)


def test_target_comparison_counts_wins_and_losses(toy):
    persona = load_persona(toy)
    lex = persona_lexicons(persona)
    hedgy, direct = "Great question! It may depend, perhaps.", "No. Rust costs you a quarter of rewriting it."
    wins, losses = target_comparison(hedgy, direct, "en", persona, lex)
    assert set(wins) == {"hedge_rate", "boilerplate_rate", "verdict_first", "dithering"} and losses == []
    wins, losses = target_comparison(direct, hedgy, "en", persona, lex)
    assert wins == [] and len(losses) == 4


def test_bad_targets_are_reported(toy):
    text = TOY.replace("hedge_rate: up", "hedge_rate: sideways").replace("verdict_first: down", "vibes: up")
    (toy / "persona.yaml").write_text(text.replace("en: dither.txt", "en: missing.txt"), encoding="utf-8")
    with pytest.raises(PersonaError) as err:
        load_persona(toy)
    problems = "\n".join(err.value.problems)
    assert "targets.hedge_rate: expected up or down, got 'sideways'" in problems
    assert "targets.vibes: unknown metric" in problems
    assert "lexicons.dithering.en: no such lexicon file 'missing.txt'" in problems


def test_the_greedy_probe_markers_follow_the_declaration():
    """The probe's verdict-first and hedges + fillers take the persona's direction (warm-tutor: verdict-first
    down; no hedge target, so no direction), and the terminal headline marks them by it."""
    tutor, sharp = persona_metric_table(load_persona("warm-tutor")), persona_metric_table(load_persona("sharp-candid"))
    assert tutor["probe_verdict_first"]["better"] == "lower" and tutor["probe_hedge_fill"]["better"] == "neutral"
    assert sharp["probe_verdict_first"]["better"] == "higher" and sharp["probe_hedge_fill"]["better"] == "lower"
    assert tutor["probe_repetitive"]["better"] == "lower"  # coherence keeps the kit's direction
    from stylealign.evaluate.report import cell

    more_verdicts = {"baseline": 0.1, "adapter": 0.3, "diff": 0.2, "ci": [0.05, 0.35], "n": 24}
    assert cell(more_verdicts, "probe_verdict_first", tutor).endswith("✗")
    assert cell(more_verdicts, "probe_verdict_first", sharp).endswith("✓")
