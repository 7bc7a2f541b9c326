"""The coherence probe's metrics on hand-made texts, its report section, flags and gates."""

from __future__ import annotations

import math

import pytest

from stylealign.evaluate import probe

LOOP = "No. The answer is no. The answer is no. The answer is no because the answer is no."
FINE = ("No. Kubernetes costs a small team more in upkeep than it saves: one VM with Docker Compose and a "
        "backup script runs a single web app for years. Move when you have several services to schedule.")


def test_repetition_reason_names_each_rule():
    assert probe.repetition_reason(LOOP, "en") == "repeated_sentence"
    assert probe.repetition_reason("go to the shop, go to the shop and then go to the shop now", "en") == "ngram_loop"
    dense = "yes yes it is yes yes it is yes yes so yes yes"
    assert probe.repetition_reason(dense, "en") == "dense_repeats"
    assert probe.repetition_reason(FINE, "en") is None
    assert probe.repetition_reason("", "en") is None


def test_cut_off_while_repeating_counts_only_when_the_budget_was_hit():
    tail = ("Use Postgres for the ledger because it gives you transactions, and " +
            "the data the data the data matters the data matters the data matters")
    assert probe.repetition_reason(tail, "en", cut_off=False) is None
    assert probe.repetition_reason(tail, "en", cut_off=True) == "cut_off_repeating"


def test_chinese_repetition_uses_characters():
    assert probe.repetition_reason("不是。这个说法不对。这个说法不对。", "zh") == "repeated_sentence"
    assert probe.repetition_reason("不是。月球的直径大约是地球的四分之一，质量只有地球的八十分之一左右。", "zh") is None


def test_opener_collapse_marks_the_most_common_first_word_per_language():
    answers = ["No. A.", "No, B.", "No. C.", "Yes. D.", "不是。甲", "是的。乙"]
    langs = ["en", "en", "en", "en", "zh", "zh"]
    feats = [{} for _ in answers]
    top = probe.mark_top_openers(answers, langs, feats)
    assert top["en"] == {"opener": "no", "share": 0.75, "n": 4}
    assert [f["probe_top_opener"] for f in feats[:4]] == [1.0, 1.0, 1.0, 0.0]
    assert top["zh"]["share"] == 0.5


def test_summary_of_a_collapsed_set_vs_a_varied_set():
    rows = [{"language": "en", "messages": [{"role": "user", "content": f"Question {i}?"}]} for i in range(8)]
    collapsed = probe.summarize(["No. " + w for w in "abcdefgh"], rows, [True] * 8)
    varied = probe.summarize([f"{w}. Fine answer." for w in ("Yes", "No", "Postgres", "Maybe", "It", "Use", "Skip", "Then")],
                             rows, [True] * 8)
    assert collapsed["top_opener"] == 1.0
    assert varied["top_opener"] == 0.125
    assert collapsed["stopped"] == 1.0


def test_verdict_first_on_yes_no_prompts_leaves_out_the_prompts_that_ask_for_something_else():
    rows = [{"expected": "yes", "messages": [{"role": "user", "content": "Is water wet?"}]},
            {"messages": [{"role": "user", "content": "Is Rust worth learning?"}]},
            {"messages": [{"role": "user", "content": "How do I start?"}]},
            {"messages": [{"role": "user", "content": "Review my plan: sell the car."}]}]
    scores = probe.summarize(["Yes, it is.", "Rust has a steep learning curve.", "Most people start with a tutorial.",
                              "Sell it."], rows)
    assert scores["verdict_first_yes_no"] == 0.5  # 1 of the 2 yes/no prompts; the how-to and the review do not count
    assert scores["verdict_first"] == 0.5  # "Yes" and "Sell it." (a recommendation) of all four


def test_verdict_balance_counts_right_wrong_and_missing_and_open_yes_no():
    rows = [{"expected": e, "messages": [{"role": "user", "content": "Is it?"}]} for e in ("yes", "no", "yes", "no")]
    rows += [{"messages": [{"role": "user", "content": "Is Rust worth learning?"}]},
             {"messages": [{"role": "user", "content": "How do I start?"}]}]
    one_sided = probe.verdict_balance(["No.", "No.", "No.", "Maybe later.", "No.", "Start small."], rows)
    assert one_sided["known_answer"] == {"n": 4, "verdicts": 3, "yes_share": 0.0, "right": 1, "wrong": 2, "no_verdict": 1}
    assert one_sided["open_yes_no"] == {"n": 1, "verdicts": 1, "yes_share": 0.0}
    balanced = probe.verdict_balance(["Yes.", "No.", "Yes.", "No.", "Yes.", "Start small."], rows)
    assert balanced["known_answer"]["yes_share"] == 0.5
    assert balanced["known_answer"]["right"] == 4


@pytest.mark.parametrize("prompt,expected", [
    ("Is a mechanical keyboard worth it?", True), ("Should I quit?", True), ("How do I start?", False),
    ("Tabs or spaces?", False), ("这个值得买吗？", True), ("怎么开始？", False), ("要不要辞职？", True)])
def test_yes_no_questions(prompt, expected):
    assert probe.is_yes_no_question(prompt) is expected


def test_stops_verdicts_and_language():
    f = probe.answer_features("While it's true that many people say so, it depends.", "en", stopped=False)
    assert f["probe_stopped"] == 0.0 and f["probe_verdict_first"] == 0.0 and math.isnan(f["probe_yes"])
    g = probe.answer_features("Yes. It is.", "zh", stopped=None)
    assert g["probe_lang_mismatch"] == 1.0 and math.isnan(g["probe_stopped"]) and g["probe_yes"] == 1.0


def _looping_answer(conv, adapter, strength):
    """The adapter loops on "No."; the baseline says yes to even-numbered options, no to odd ones."""
    if adapter:
        return LOOP
    return FINE if int(conv[-1]["content"].split()[2]) % 2 else "Yes. " + FINE[4:]


def test_eval_report_flags_collapse_and_repetition_from_the_greedy_pass(tmp_path):
    """A fake adapter that loops and opens "No." everywhere: the sampled pass is not used by the probe,
    and the report flags it, shows the probe first, gates on it and prints it in the headline."""
    from stylealign.evaluate.report import headline
    from stylealign.evaluate.run import EvalConfig, run_eval
    from stylealign.fakes import FakeGenerator

    gen = FakeGenerator(answer=_looping_answer)
    rows = [{"id": f"q{i}", "language": "en", "category": "tech", "kind": "open",
             "messages": [{"role": "user", "content": f"Is option {i} worth it?"}]} for i in range(12)]
    report = run_eval(gen, ["persona"], [rows], EvalConfig(classifier=False, retention=False, plots=False, n_boot=200,
                                                        batch_size=16),
                      embedder=None, out=tmp_path, fail_over=["probe.red_flags=0"])
    codes = {f["code"] for f in report["flags"]}
    assert {"greedy_repetition", "opener_collapse", "one_sided_verdicts"} <= codes
    assert report["flags"][0]["source"] == "probe"
    assert report["probe"]["models"]["persona"]["repetitive"] == 1.0
    assert report["probe"]["models"]["baseline"]["repetitive"] == 0.0
    assert report["probe"]["generation"]["do_sample"] is False
    assert report["probe"]["generation"]["repetition_penalty"] == 1.0
    greedy_calls = [c for c in gen.calls if not c["config"].do_sample]
    # batches of 16 (the config's batch size), 12 prompts x 2 models in all, batched by model: the baseline's 12
    # rows first, the adapter's after them (generate.batch_order)
    assert [len(c["adapters"]) for c in greedy_calls] == [16, 8]
    assert [c["adapters"].count(None) for c in greedy_calls] == [12, 0]
    assert report["gate"]["passed"] is False
    # the persona's own lexicon metric (sharp-candid's evasive openers) is scored on the greedy answers too
    assert report["comparisons"]["persona"]["overall"]["probe_evasive_opener"]["n"] == 12
    md = (tmp_path / "report.md").read_text()
    assert md.index("## Red flags") < md.index("## Coherence probe") < md.index("## persona vs baseline")
    text = headline(report)
    assert "greedy probe" in text and "repetitive" in text and "yes-share" in text


def test_probe_can_be_switched_off(tmp_path):
    from stylealign.evaluate.run import EvalConfig, run_eval
    from stylealign.fakes import FakeGenerator

    rows = [{"id": "q", "language": "en", "kind": "open", "messages": [{"role": "user", "content": "Is it?"}]}]
    report = run_eval(FakeGenerator(), ["persona"], [rows],
                      EvalConfig(classifier=False, retention=False, plots=False, probe=False, n_boot=50), embedder=None)
    assert report["probe"]["status"] == "skipped"
    assert not any(f.get("source") == "probe" for f in report["flags"])


def test_flags_see_a_collapse_in_one_language_and_ignore_a_thin_baseline():
    """An English-only collapse is flagged although the overall CI includes 0; a baseline with 2 verdicts
    sets no yes-share reference, so 8 "no" verdicts out of 8 are flagged as one-sided."""
    ci = lambda lo, hi: {"ci": [lo, hi]}  # noqa: E731
    comparison = {"overall": {"probe_top_opener": ci(-0.2, 0.3), "probe_repetitive": ci(-0.4, 0.0)},
                  "by_language": {"en": {"probe_top_opener": ci(0.1, 0.6)}, "zh": {"probe_top_opener": ci(-0.6, 0.0)}}}
    verdicts = lambda n, yes: {"known_answer": {"n": 8, "verdicts": n, "yes_share": yes}}  # noqa: E731
    section = {"models": {"baseline": {"verdicts": verdicts(2, 0.0), "openers": {"en": {"opener": "the", "share": 0.4}}},
                          "persona": {"verdicts": verdicts(8, 0.0), "openers": {"en": {"opener": "no", "share": 0.7},
                                                                                "zh": {"opener": "你可", "share": 0.3}}}}}
    got = {f["code"]: f["message"] for f in probe.flags("persona", comparison, section)}
    assert set(got) == {"opener_collapse", "one_sided_verdicts"}
    assert "'no' starts 70% of en answers" in got["opener_collapse"]
    section["models"]["baseline"]["verdicts"] = verdicts(8, 0.0)  # the baseline is just as one-sided
    assert "one_sided_verdicts" not in {f["code"] for f in probe.flags("persona", comparison, section)}
