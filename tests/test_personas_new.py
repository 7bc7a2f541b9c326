"""`stylealign personas new`: scaffold from flags or terminal answers; validates once data exists."""

import shutil
from pathlib import Path

from stylealign.checker import check_persona
from stylealign.cli import main
from stylealign.personas import load_persona

SHIPPED = Path(__file__).resolve().parents[1] / "personas" / "sharp-candid" / "data"


def _lines(pattern: str, n: int) -> str:
    rows = [line for f in sorted(SHIPPED.glob(pattern)) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return "\n".join(rows[:n]) + "\n"


def test_new_from_flags_then_validate(tmp_path, capsys):
    root = tmp_path / "personas"
    root.mkdir()
    (tmp_path / "eval" / "suites").mkdir(parents=True)
    shutil.copy(SHIPPED.parents[2] / "eval" / "suites" / "smoke.jsonl", tmp_path / "eval" / "suites")
    code = main(["personas", "--root", str(root), "new", "coach", "--title", "Coach", "--language", "en",
                 "--language", "zh", "--description", "A patient coach: \"small steps\".", "--trait", "patient",
                 "--do", "Ask what the user tried.", "--system-prompt", "Be a patient coach.",
                 "--system-prompt-zh", "做一个耐心的教练。", "--target", "asks_back=up", "--target", "verdict_first=down"])
    assert code == 0, capsys.readouterr().err
    folder = root / "coach"
    persona = load_persona(folder)
    assert persona.title == "Coach" and persona.languages == ("en", "zh") and persona.style_do == ("Ask what the user tried.",)
    assert persona.description == 'A patient coach: "small steps".' and persona.system_prompt_for("zh") == "做一个耐心的教练。"
    assert persona.targets == {"asks_back": "up", "verdict_first": "down"}
    assert (folder / "data").is_dir() and not any((folder / "data").iterdir())
    assert "<!-- stats:start -->" in (folder / "README.md").read_text()
    assert "# " in (folder / "persona.yaml").read_text()  # commented
    assert not check_persona(persona).ok  # no data yet
    (folder / "data" / "sft_01.jsonl").write_text(_lines("sft_en_*.jsonl", 20), encoding="utf-8")
    (folder / "data" / "pref_01.jsonl").write_text(_lines("pref_en_*.jsonl", 20), encoding="utf-8")
    report = check_persona(load_persona(folder))
    assert report.ok, report.format()
    assert report.counts["eval"] == 8  # the kit's suites next to personas/ are checked for overlap


def test_new_asks_on_a_terminal(tmp_path, monkeypatch):
    answers = iter(["Tutor", "Explains step by step.", "Be patient.", "kind; curious", "", ""])
    monkeypatch.setattr("sys.stdin.isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert main(["personas", "--root", str(tmp_path), "new", "tutor"]) == 0
    persona = load_persona(tmp_path / "tutor")
    assert (persona.title, persona.description, persona.system_prompt) == ("Tutor", "Explains step by step.", "Be patient.")
    assert persona.traits == ("kind", "curious") and persona.style_do == ()


def test_new_refuses_bad_input_in_one_line_each(tmp_path, capsys):
    (tmp_path / "taken").mkdir()
    assert main(["personas", "--root", str(tmp_path), "new", "taken", "--title", "T", "--description", "D",
                 "--system-prompt", "S", "--target", "vibes=up", "--target", "asks_back=sideways"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"stylealign: error: personas new: {tmp_path / 'taken'}: already exists (pick another name or edit "
                   "its persona.yaml)",
                   "personas new: --target vibes: unknown metric (see stylealign/evaluate/metrics.py)",
                   "personas new: --target asks_back=sideways: direction must be up or down"]
    assert main(["personas", "--root", str(tmp_path), "new", "x", "--language", "zh"]) == 2
    assert "personas new: --system-prompt-zh: missing" in capsys.readouterr().err
