"""stylealign.checker, .neardup, .datacard and `stylealign personas ...`: requirements, near-duplicates,
language labels, stats."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stylealign import checker as C
from stylealign import datacard, neardup
from stylealign.cli import main
from stylealign.personas import list_personas, load_persona
from stylealign.text import language_problem

REPO = Path(__file__).resolve().parents[1]

# Distinct prompts, several on the same topic, as the data writers write them.
EN = [
    "Our Django app takes 4 seconds to render the orders page with 300 rows. Is adding Redis caching the fix?",
    "Should a five-person startup run Kubernetes on day one, or is a single VM with Docker Compose enough?",
    "Is Postgres a reasonable choice for a job queue that handles about 50 jobs a minute?",
    "Would you pick SQLite or Postgres for a desktop note-taking app that syncs to a server?",
    "My manager wants daily status emails on top of standups. Is it worth pushing back?",
    "I have $8,000 in a savings account at 0.5% and no debt. Should I put it in an index fund?",
    "Does cracking your knuckles cause arthritis?",
    "Did Napoleon really stand only about five foot two?",
    "Can you roast my plan to quit my job and sell sourdough at farmers markets full time?",
    "Will the price of bitcoin be higher than today on the first of January next year?",
]
ZH = [
    "我们组用的是MySQL 5.7，明年停止维护，现在升级到8.0值得吗？",
    "每天喝八杯水是必须的吗？",
    "我想辞职去大理开一家民宿，手里有三十万存款，这个计划靠谱吗？",
    "帮我看看这段代码有没有问题：\nfor i in range(len(names)):\n    print(i, names[i])",
    "明年房价会涨还是会跌？",
]


def sft_row(i: int, text: str, lang: str = "en", **extra) -> dict:
    answer = "可以，理由很简单。" if lang == "zh" else "Yes, and here is why."
    return {"id": f"sft-{lang}-tech-{i:03d}", "category": C.D.CATEGORIES[i % 15], "language": lang,
            "verdict": ("yes", "no", "depends")[i % 3],
            "messages": [{"role": "user", "content": text}, {"role": "assistant", "content": answer}], **extra}


def pref_row(i: int, text: str, lang: str = "en", kind: str = "hedge") -> dict:
    good, bad = ("行。", "这是一个很好的问题，需要考虑多方面的因素。") if lang == "zh" else ("Yes.", "Great question! It depends.")
    return {"id": f"pref-{lang}-tech-{i:03d}", "category": C.D.CATEGORIES[i % 15], "language": lang,
            "rejected_kind": kind, "prompt": [{"role": "user", "content": text}],
            "chosen": [{"role": "assistant", "content": good}], "rejected": [{"role": "assistant", "content": bad}]}


def eval_row(i: int, text: str, lang: str = "en") -> dict:
    return {"id": f"eval-{lang}-{i:03d}", "category": "opinions", "language": lang, "adversarial": False,
            "kind": "open", "messages": [{"role": "user", "content": text}]}


def write(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


PERSONA_YAML = """\
name: mini
title: Mini
languages: [en, zh]
description: d
traits: [t]
style: {do: [x], dont: [y]}
system_prompt: s
data:
  sft: [data/sft_*.jsonl]
  preference: [data/pref_*.jsonl]
  baseline: [../base/answers.jsonl]
  eval: [../../suites/*.jsonl]
"""


@pytest.fixture
def persona_dir(tmp_path, monkeypatch) -> Path:
    """Return a valid persona folder (cwd: its root's parent, so messages show short relative paths):
    10 SFT rows (6 en, 4 zh), 4 preference, 5 baseline, 2 eval rows in two suites."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "personas" / "mini"
    folder.mkdir(parents=True)
    (folder / "persona.yaml").write_text(PERSONA_YAML, encoding="utf-8")
    sft = [sft_row(i, t) for i, t in enumerate(EN[:6])] + [sft_row(10 + i, t, "zh") for i, t in enumerate(ZH[:4])]
    sft[0]["messages"] += [{"role": "user", "content": "And with 3,000 rows?"},
                           {"role": "assistant", "content": "Then paginate."}]
    write(folder / "data" / "sft_1.jsonl", sft)
    write(folder / "data" / "pref_1.jsonl", [pref_row(i, t, kind=k) for i, (t, k) in
                                             enumerate(zip(EN[6:9], ("hedge", "wrong", "rude")))]
          + [pref_row(20, ZH[4], "zh")])
    base = [{**r, "id": "neutral-" + r["id"]} for r in sft[:5]]
    write(tmp_path / "personas" / "base" / "answers.jsonl", base)
    write(tmp_path / "suites" / "style.jsonl", [eval_row(1, EN[9])])
    write(tmp_path / "suites" / "smoke.jsonl", [eval_row(2, EN[9])])  # a sample of another suite: allowed
    return folder


def add_yaml(folder: Path, text: str) -> None:
    with (folder / "persona.yaml").open("a", encoding="utf-8") as f:
        f.write(text)


def test_valid_persona_passes_and_reports_closest_pairs(persona_dir):
    report = C.check_persona(load_persona(persona_dir))
    assert report.ok, report.format()
    assert report.counts == {"sft": 10, "preference": 4, "baseline": 5, "eval": 2}
    assert len(report.closest) == neardup.TOP_PAIRS  # the closest pairs are shown even when all are far apart
    assert all(p.score <= neardup.NEAR_DUPLICATE_MAX for p in report.closest)
    assert [p.score for p in report.closest] == sorted((p.score for p in report.closest), reverse=True)
    assert not any(p.a.set == p.b.set == "eval" for p in report.closest)  # smoke copies another suite
    assert report.format().endswith("OK")


def test_edited_copy_is_a_near_duplicate_distinct_prompts_are_not(persona_dir):
    edited = EN[0].replace("4 seconds", "5 seconds").replace("300 rows", "350 rows").replace("the fix", "the answer")
    write(persona_dir / "data" / "pref_2.jsonl", [pref_row(30, edited)])
    report = C.check_persona(load_persona(persona_dir))
    (problem,) = report.problems
    assert problem.startswith("personas/mini/data/pref_2.jsonl:1: messages[0].content: near-duplicate prompt of "
                              "SFT:sft-en-tech-000 (personas/mini/data/sft_1.jsonl:1), similarity 0.")
    top = report.closest[0]
    assert top.score > neardup.NEAR_DUPLICATE_MAX and {top.a.id, top.b.id} == {"sft-en-tech-000", "pref-en-tech-030"}
    assert all(p.score < 0.6 for p in report.closest[1:])  # same-topic pairs (Postgres, SQLite...) stay far below


def test_similar_prompts_scores(persona_dir):
    refs = [neardup.PromptRef("SFT", f"f:{i}", str(i), t) for i, t in enumerate(EN + ZH)]
    distinct = neardup.similar_prompts(refs, min_score=0.0)
    assert max(p.score for p in distinct) < 0.6
    copy = neardup.PromptRef("eval", "g:1", "copy", "我们组用的是MySQL 5.7，后年停止维护，现在升级到8.0值得吗？")
    assert neardup.similar_prompts(refs + [copy], min_score=0.75)[0].b.id == "copy"


def test_language_label_mismatch_is_reported(persona_dir):
    write(persona_dir / "data" / "sft_2.jsonl", [
        sft_row(40, "Is a heat pump worth it in Minnesota?", "zh"),
        {**sft_row(41, "长期来看，租房和买房哪个更划算？"), "language": "en"},
    ])
    problems = C.check_persona(load_persona(persona_dir)).problems
    assert problems == [
        "personas/mini/data/sft_2.jsonl:1: language: labelled 'zh' but only 47% of the text is CJK",
        "personas/mini/data/sft_2.jsonl:2: language: labelled 'en' but 74% of the text is CJK",
    ]


def test_language_rule_counts_words_and_ignores_code():
    assert language_problem("这段代码有问题吗？\ndef add(tag, tags=[]):\n    tags.append(tag)\n    return tags", "zh") is None
    assert language_problem("What does 内卷 mean in a job ad?", "en") is None
    assert language_problem("```python\n中文注释\n```\nPlain English text here.", "en") is None
    assert "labelled 'zh'" in language_problem("This is English.", "zh")


def test_requirements_name_persona_yaml_and_key(persona_dir):
    add_yaml(persona_dir, "requirements:\n  sft_min: 20\n  pref_min: 4\n  eval_min: 3\n  zh_share_min: 0.3\n"
                          "  multi_turn_share_min: 0.2\n  categories_min: 5\n  pref_bad_rejected_share_min: 0.6\n")
    problems = C.check_persona(load_persona(persona_dir)).problems
    assert problems == [
        "personas/mini/persona.yaml: requirements.sft_min: SFT rows is 10, needs at least 20",
        "personas/mini/persona.yaml: requirements.eval_min: eval rows is 2, needs at least 3",
        "personas/mini/persona.yaml: requirements.multi_turn_share_min: SFT multi-turn share is 0.100, "
        "needs at least 0.2",
        "personas/mini/persona.yaml: requirements.zh_share_min: preference zh share is 0.250, needs at least 0.3",
        "personas/mini/persona.yaml: requirements.multi_turn_share_min: preference multi-turn share is 0.000, "
        "needs at least 0.2",
        "personas/mini/persona.yaml: requirements.categories_min: preference categories is 4, needs at least 5",
        "personas/mini/persona.yaml: requirements.pref_bad_rejected_share_min: preference wrong+rude rejected "
        "share is 0.500, needs at least 0.6",
    ]


def test_row_problems_duplicate_ids_baseline_and_missing_globs(persona_dir):
    write(persona_dir / "data" / "sft_2.jsonl", [
        {**sft_row(50, "Is a heat pump worth it in Minnesota?"), "category": "weather"},
        sft_row(0, "Is Rust's borrow checker worth the pain for a CLI tool?"),  # id of sft_1.jsonl:1
    ])
    base = persona_dir.parent / "base" / "answers.jsonl"
    rows = [json.loads(line) for line in base.read_text(encoding="utf-8").splitlines()]
    rows[1]["messages"][0]["content"] = "A different question?"
    rows[2]["id"] = "neutral-sft-xx"
    write(base, rows)
    text = (persona_dir / "persona.yaml").read_text().replace("data/pref_*.jsonl]", "data/pref_*.jsonl, data/x_*.jsonl]")
    (persona_dir / "persona.yaml").write_text(text)
    problems = C.check_persona(load_persona(persona_dir)).problems
    assert problems[0].startswith("personas/mini/data/sft_2.jsonl:1: category: unknown value 'weather'")
    assert problems[1] == "personas/mini/persona.yaml: data.preference: 'data/x_*.jsonl' matches no files"
    assert problems[2:] == [
        "personas/mini/data/sft_2.jsonl:2: id: duplicate id 'sft-en-tech-000' (first at personas/mini/data/sft_1.jsonl:1)",
        "personas/base/answers.jsonl:2: messages: user turns differ from SFT row 'sft-en-tech-001'",
        "personas/base/answers.jsonl:3: id: 'neutral-sft-xx' is not 'neutral-' + an SFT row id",
    ]


def test_held_out_checks_of_check_heldout_are_in_validate(persona_dir):
    """What the old eval/check_heldout.py checked: adversarial matches kind, a later eval turn copied from a
    training prompt, and the neutral corpus rows."""
    follow = {**eval_row(3, "Is it worth it?"), "kind": "followup", "adversarial": True}
    follow["messages"] += [{"role": "assistant", "content": "Maybe."}, {"role": "user", "content": EN[0]}]
    write(persona_dir.parent.parent / "suites" / "style.jsonl",
          [eval_row(1, EN[9]), {**eval_row(4, "Is tea better than coffee?"), "adversarial": True}, follow])
    write(persona_dir.parent.parent / "corpus.jsonl", [
        {"id": "c1", "language": "en", "text": "Tides follow the Moon."}, {"id": "c2", "language": "zh", "text": "Tides."},
        {"id": "c3", "language": "fr", "text": "Les marées."}, {"id": "c4", "language": "en", "text": " "}])
    add_yaml(persona_dir, "  corpus: [../../corpus.jsonl]\n")
    problems = C.check_persona(load_persona(persona_dir)).problems
    assert problems == [
        "suites/style.jsonl:2: adversarial: true does not match kind 'open' (true unless the kind is open or known_answer)",
        "corpus.jsonl:2: language: labelled 'zh' but only 0% of the text is CJK",
        "corpus.jsonl:3: language: 'fr' is not en or zh",
        "corpus.jsonl:4: text: missing or empty",
        "suites/style.jsonl:3: messages[2].content: near-duplicate prompt of SFT:sft-en-tech-000 "
        "(personas/mini/data/sft_1.jsonl:1), similarity 1.000 > 0.75",
    ]


def test_stats_tables_and_card(persona_dir):
    stats = datacard.persona_stats(load_persona(persona_dir))
    sft = stats["sets"]["sft"]["total"]
    assert sft["rows"] == 10 and sft["zh_share"] == 0.4 and sft["multi_turn_share"] == 0.1
    assert sft["verdicts"] == {"yes": 3, "no": 4, "depends": 3, "unknown": 0, "refusal": 0, "none": 0}
    assert sft["lengths"]["assistant"]["en"] == {"n": 7, "mean": pytest.approx(32 / 7), "median": 5, "p90": 5}
    assert sft["lengths"]["assistant"]["zh"]["median"] == 7  # 可以，理由很简单。 = 7 Han characters (the eval unit)
    assert stats["sets"]["preference"]["total"]["rejected_kinds"] == {"hedge": 2, "wrong": 1, "rude": 1, "student": 0}
    assert list(stats["sets"]["sft"]["files"]) == ["personas/mini/data/sft_1.jsonl"]
    md = datacard.format_stats(stats, markdown=True)
    assert "### Rows per set and file" in md and "| SFT | (all) | 10 | 40% | 10% | 10 |" in md
    assert "### Lengths" in md and "| preference | rejected | zh | chars |" in md
    card = persona_dir / "README.md"
    card.write_text("# Mini\n\nHand-written intro.\n\n<!-- stats:start -->\nold\n<!-- stats:end -->\n\nLimits.\n")
    datacard.update_card(card, md, "Mini")
    text = card.read_text()
    assert text.startswith("# Mini\n\nHand-written intro.") and text.endswith("Limits.\n") and "old" not in text
    assert md.strip() in text


def test_cli_validate_and_stats(persona_dir, capsys):
    root = str(persona_dir.parent)
    assert main(["personas", "--root", root, "validate", "mini"]) == 0
    assert main(["personas", "--root", root, "stats", "mini", "--markdown"]) == 0
    assert "| SFT | (all) | 10 |" in capsys.readouterr().out
    write(persona_dir / "data" / "sft_2.jsonl", [{"id": "x", "messages": []}])
    assert main(["personas", "--root", root, "validate", "mini"]) == 1
    err = capsys.readouterr().err
    assert "personas/mini/data/sft_2.jsonl:1: messages: empty (no turns)" in err and "FAILED" in err
    assert main(["personas", "--root", root, "show", "nobody"]) == 2  # a user error: one line, exit 2


def test_every_shipped_persona_validates():
    failures = {p.name: C.check_persona(p) for p in list_personas(REPO / "personas")}
    bad = {name: report.format() for name, report in failures.items() if not report.ok}
    assert not bad, "\n\n".join(bad.values())
