"""stylealign.personas: persona.yaml loading, name resolution, validation messages, data globs."""

from __future__ import annotations

from pathlib import Path

import pytest

from stylealign.personas import PersonaError, list_personas, load_persona, personas_root

REPO = Path(__file__).resolve().parents[1]
MINIMAL = """\
name: {name}
title: Test persona
languages: [en, zh]
description: A test.
traits: [terse]
style: {{do: [Be terse.], dont: [Ramble.]}}
system_prompt: Be terse.
system_prompt_zh: 简短。
bake_system_prompt: true
data:
  sft: [data/sft_*.jsonl, extra/one.jsonl]
  preference: data/pref_*.jsonl
"""


def make_persona(root: Path, name: str = "terse", text: str | None = None) -> Path:
    folder = root / name
    (folder / "data").mkdir(parents=True)
    (folder / "persona.yaml").write_text(text if text is not None else MINIMAL.format(name=name), encoding="utf-8")
    return folder


def test_shipped_personas_load():
    sharp = load_persona("sharp-candid", root=REPO / "personas")
    assert sharp.adapter and not sharp.bake_system_prompt and sharp.languages == ("en", "zh")
    assert sharp.system_prompt_for("en") == sharp.system_prompt != sharp.system_prompt_for("zh")
    assert "结论" in sharp.system_prompt_for("zh")
    assert sharp.requirements["sft_min"] == 400 and sharp.requirements["zh_share_min"] == 0.40
    assert sharp.data.baseline == ("../neutral/data/answers_*.jsonl",)
    neutral = load_persona("neutral", root=REPO / "personas")
    assert not neutral.adapter and neutral.sft_files() == [] and neutral.preference_files() == []
    assert [p.name for p in list_personas(REPO / "personas")] == ["neutral", "sharp-candid", "warm-tutor"]


def test_fields_globs_and_system_prompt_by_language(tmp_path):
    folder = make_persona(tmp_path)
    for name in ("sft_b.jsonl", "sft_a.jsonl", "pref_1.jsonl"):
        (folder / "data" / name).write_text("{}\n")
    (folder / "extra").mkdir()
    (folder / "extra" / "one.jsonl").write_text("{}\n")
    p = load_persona("terse", root=tmp_path)
    assert (p.name, p.title, p.traits, p.style_do, p.style_dont) == (
        "terse", "Test persona", ("terse",), ("Be terse.",), ("Ramble.",))
    assert p.bake_system_prompt and p.adapter  # adapter defaults to true
    assert [f.relative_to(folder).as_posix() for f in p.sft_files()] == [
        "data/sft_a.jsonl", "data/sft_b.jsonl", "extra/one.jsonl"]
    assert [f.name for f in p.preference_files()] == ["pref_1.jsonl"] and p.baseline_files() == []
    assert p.system_prompt_for("zh") == "简短。" and p.system_prompt_for("en") == p.system_prompt_for(None) == "Be terse."


def test_resolves_names_folders_files_and_env(tmp_path, monkeypatch):
    folder = make_persona(tmp_path / "personas")
    assert load_persona(folder).name == "terse"
    assert load_persona(folder / "persona.yaml").name == "terse"
    assert load_persona(str(folder)).name == "terse"
    monkeypatch.setenv("STYLEALIGN_PERSONAS", str(tmp_path / "personas"))
    assert load_persona("terse").path == folder
    monkeypatch.delenv("STYLEALIGN_PERSONAS")
    monkeypatch.chdir(folder / "data")  # personas/ is found from the cwd upward
    assert personas_root() == tmp_path / "personas" and load_persona("terse").name == "terse"
    with pytest.raises(PersonaError, match=r"no persona 'nobody' \(known: terse\)"):
        load_persona("nobody")


def test_every_problem_names_the_file_and_field(tmp_path):
    text = (MINIMAL.format(name="other").replace("system_prompt: Be terse.\n", "").replace("[en, zh]", "[en, fr]")
            + "adapter: maybe\nsytem_prompt: typo\nrequirements: {sft_min: 1.5, zh_share_min: 2, foo: 1}\n")
    folder = make_persona(tmp_path, "bad", text)
    with pytest.raises(PersonaError) as err:
        load_persona(folder)
    where = f"{folder / 'persona.yaml'}"
    problems = [p.replace(where, "FILE") for p in err.value.problems]
    assert problems == [
        "FILE: sytem_prompt: unknown field (known: adapter, bake_system_prompt, data, description, eval_suites, "
        "languages, lexicons, name, requirements, style, system_prompt, system_prompt_zh, targets, title, traits)",
        "FILE: name: 'other' does not match the folder name 'bad'",
        "FILE: languages: unsupported language 'fr' (supported: en, zh)",
        "FILE: adapter: expected true or false, got str",
        "FILE: system_prompt: missing",
        "FILE: requirements.sft_min: expected a whole number, got 1.5",
        "FILE: requirements.zh_share_min: a share must be between 0 and 1, got 2",
        "FILE: requirements.foo: unknown requirement (known: categories_min, eval_min, multi_turn_share_min, "
        "near_duplicate_max, pref_bad_rejected_share_min, pref_min, sft_min, zh_share_min)",
    ]


def test_adapter_rules_and_yaml_errors(tmp_path):
    no_data = MINIMAL.format(name="a").split("data:")[0]
    make_persona(tmp_path, "a", no_data)
    with pytest.raises(PersonaError, match=r"persona.yaml: data.sft: a persona with an adapter needs SFT data"):
        load_persona("a", root=tmp_path)
    make_persona(tmp_path, "b", MINIMAL.format(name="b") + "adapter: false\n")
    with pytest.raises(PersonaError, match=r"adapter: adapter: false personas train nothing"):
        load_persona("b", root=tmp_path)
    make_persona(tmp_path, "c", "name: c\ntitle: [unclosed\n")
    with pytest.raises(PersonaError, match=r"c/persona.yaml: yaml: "):
        load_persona("c", root=tmp_path)
    with pytest.raises(PersonaError) as err:  # list_personas reports the problems of every broken persona
        list_personas(tmp_path)
    assert len(err.value.problems) == 3
