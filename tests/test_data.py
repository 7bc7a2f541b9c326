"""stylealign.data: loaders for every format, validation that reports every problem at once, split, system prompts."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from stylealign import data as D
from stylealign.data import DataError


def sft(i: int = 0, **extra) -> dict:
    return {"id": f"sft-en-tech-{i:03d}", "category": "tech", "language": "en", "verdict": "yes",
            "messages": [{"role": "user", "content": f"Question {i}?"}, {"role": "assistant", "content": f"Answer {i}."}],
            **extra}


def pref(i: int = 0, **extra) -> dict:
    return {"id": f"pref-en-tech-{i:03d}", "category": "tech", "language": "en", "rejected_kind": "hedge",
            "prompt": [{"role": "user", "content": f"Question {i}?"}],
            "chosen": [{"role": "assistant", "content": f"Yes. Reason {i}."}],
            "rejected": [{"role": "assistant", "content": f"Great question! It depends {i}."}], **extra}


def write_jsonl(path: Path, rows: list) -> Path:
    lines = [r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def problems_of(loader, path, **kw) -> list[str]:
    """Return the problem lines the loader raises (failing the test if it returns rows instead)."""
    with pytest.raises(DataError) as err:
        loader(path, **kw)
    lines = str(err.value).splitlines()
    assert lines == [str(p) for p in err.value.problems]
    return lines


# ---------------------------------------------------------------- one bad row at a time

TURN_U = {"role": "user", "content": "Hi?"}
TURN_A = {"role": "assistant", "content": "Hello."}
TURN_S = {"role": "system", "content": "Be brief."}

SFT_CASES = [
    ({"id": "x"}, "messages", "missing"),
    ({"messages": "hello"}, "messages", "expected a list"),
    ({"messages": []}, "messages", "empty"),
    ({"messages": ["hi", TURN_A]}, "messages[0]", "expected a {role, content} object"),
    ({"messages": [{"content": "Hi?"}, TURN_A]}, "messages[0]", "missing role"),
    ({"messages": [{"role": "user"}, TURN_A]}, "messages[0]", "missing content"),
    ({"messages": [{"role": 1, "content": "Hi?"}, TURN_A]}, "messages[0].role", "expected a string"),
    ({"messages": [{"role": "user", "content": 5}, TURN_A]}, "messages[0].content", "expected a string"),
    ({"messages": [{"role": "bot", "content": "Hi?"}, TURN_A]}, "messages[0].role", "unknown role 'bot'"),
    ({"messages": [{"role": "user", "content": "  "}, TURN_A]}, "messages[0].content", "empty"),
    ({"messages": [TURN_A, TURN_U]}, "messages[0].role", "expected 'user' first"),
    ({"messages": [TURN_U, TURN_S, TURN_A]}, "messages[1].role", "system turn is only allowed first"),
    ({"messages": [TURN_U, TURN_U, TURN_A]}, "messages[1].role", "expected 'assistant' after 'user'"),
    ({"messages": [TURN_U, TURN_A, TURN_A]}, "messages[2].role", "expected 'user' after 'assistant'"),
    ({"messages": [TURN_S, TURN_U]}, "messages", "must end with a 'assistant' turn"),
    ({"messages": [TURN_S]}, "messages", "has no 'user' turn"),
    ({"messages": [TURN_U, TURN_A], "id": 7}, "id", "expected a string"),
    ({"messages": [TURN_U, TURN_A], "language": ["en"]}, "language", "expected a string"),
    ('["not", "an", "object"]', "row", "expected a JSON object"),
    ('{"messages": [', "json", "invalid JSON"),
]


@pytest.mark.parametrize("row,field,message", SFT_CASES)
def test_each_bad_sft_row_is_reported_with_file_line_and_field(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "sft.jsonl", [sft(1), row])
    (problem,) = problems_of(D.load_sft, path)
    assert problem.startswith(f"{D.show_path(path)}:2: {field}: ")
    assert message in problem


PREF_CASES = [
    ({"chosen": [TURN_A], "rejected": [{"role": "assistant", "content": "No."}]}, "prompt", "missing"),
    ({"prompt": [TURN_U], "rejected": [TURN_A]}, "chosen", "missing"),
    ({"prompt": [TURN_U, TURN_A], "chosen": [TURN_A], "rejected": [{"role": "assistant", "content": "No."}]},
     "prompt", "must end with a 'user' turn"),
    ({"prompt": [TURN_U], "chosen": [TURN_U], "rejected": [TURN_A]}, "chosen[0].role", "expected 'assistant'"),
    ({"prompt": [TURN_U], "chosen": [TURN_A, TURN_A], "rejected": [{"role": "assistant", "content": "No."}]},
     "chosen", "single assistant turn"),
    ({"prompt": [TURN_U], "chosen": [TURN_A], "rejected": [{"role": "assistant", "content": " Hello. "}]},
     "rejected", "identical to chosen"),
    ({"prompt": [TURN_U], "chosen": 3, "rejected": [TURN_A]}, "chosen", "expected a list"),
    ({"prompt": [TURN_U], "chosen": [TURN_A], "rejected": [{"role": "assistant", "content": ""}]},
     "rejected[0].content", "empty"),
]


@pytest.mark.parametrize("row,field,message", PREF_CASES)
def test_each_bad_preference_row_is_reported_with_file_line_and_field(tmp_path, row, field, message):
    path = write_jsonl(tmp_path / "pref.jsonl", [pref(1), row])
    (problem,) = problems_of(D.load_preference, path)
    assert problem.startswith(f"{D.show_path(path)}:2: {field}: ")
    assert message in problem


def test_schema_mode_requires_project_metadata(tmp_path):
    rows = [sft(1, category="cooking"), sft(2, verdict="maybe"), {k: v for k, v in sft(3).items() if k != "language"}]
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    assert len(D.load_sft(path)) == 3  # generic data: metadata is optional
    problems = problems_of(D.load_sft, path, schema=True)
    assert [p.split(": ")[0:2] for p in problems] == [
        [f"{D.show_path(path)}:1", "category"], [f"{D.show_path(path)}:2", "verdict"],
        [f"{D.show_path(path)}:3", "language"]]


def test_a_known_answer_on_an_sft_row_must_be_yes_or_no_and_its_verdict(tmp_path):
    rows = [sft(1, verdict="yes", expected="yes"), sft(2, verdict="yes", expected="maybe"),
            sft(3, verdict="no", expected="yes")]
    path = write_jsonl(tmp_path / "sft.jsonl", rows)
    problems = problems_of(D.load_sft, path, schema=True)
    assert [p.split(": ")[0:2] for p in problems] == [[f"{D.show_path(path)}:2", "expected"],
                                                      [f"{D.show_path(path)}:3", "expected"]]
    assert "but verdict is 'no'" in problems[1]


# ---------------------------------------------------------------- everything at once


def test_every_problem_in_every_file_is_reported_at_once(tmp_path):
    first = tmp_path / "a.jsonl"
    first.write_bytes(b"\n".join([
        json.dumps(sft(1)).encode(),
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}',  # Latin-1 byte: not UTF-8
        b"{oops",
        json.dumps(sft(4, messages=[TURN_U, {"role": "robot", "content": "x"}])).encode(),
        json.dumps(sft(1)).encode(),  # same content as line 1
        b"",
    ]))
    second = write_jsonl(tmp_path / "b.jsonl", [sft(9, messages=[TURN_A]), sft(10)])
    problems = problems_of(D.load_sft, [first, second])
    a, b = D.show_path(first), D.show_path(second)
    assert problems == [
        f"{a}:2: encoding: not valid UTF-8 (byte 0xe9 at byte 47 of the line)",
        f"{a}:3: json: invalid JSON: Expecting property name enclosed in double quotes (column 2)",
        f"{a}:4: messages[1].role: unknown role 'robot' (expected system, user or assistant)",
        f"{a}:5: messages: duplicate of {a}:1 (same content)",
        f"{a}:5: id: duplicate id 'sft-en-tech-001' (first at {a}:1)",
        f"{b}:1: messages[0].role: expected 'user' first, got 'assistant'",
    ]


def test_several_problems_in_one_row_are_all_reported(tmp_path):
    row = {"id": 3, "messages": [{"role": "bot", "content": ""}, {"role": "assistant"}]}
    path = write_jsonl(tmp_path / "sft.jsonl", [row])
    fields = [p.split(": ")[1] for p in problems_of(D.load_sft, path)]
    assert fields == ["id", "messages[0].role", "messages[0].content", "messages[1]"]


def test_duplicate_preference_and_duplicate_id_name_both_lines(tmp_path):
    path = write_jsonl(tmp_path / "pref.jsonl", [pref(1), pref(2), pref(1), pref(3, id="pref-en-tech-002")])
    name = D.show_path(path)
    assert problems_of(D.load_preference, path) == [
        f"{name}:3: prompt+chosen+rejected: duplicate of {name}:1 (same content)",
        f"{name}:3: id: duplicate id 'pref-en-tech-001' (first at {name}:1)",
        f"{name}:4: id: duplicate id 'pref-en-tech-002' (first at {name}:2)",
    ]


def test_too_long_rows_fail_with_the_counted_length(tmp_path):
    path = write_jsonl(tmp_path / "sft.jsonl", [sft(1), sft(2, messages=[TURN_U, {"role": "assistant",
                                                                                   "content": "word " * 50}])])
    words = lambda row: sum(len(t["content"].split()) for t in row["messages"])  # noqa: E731
    (problem,) = problems_of(D.load_sft, path, count_tokens=words, max_length=20)
    assert problem == f"{D.show_path(path)}:2: messages: too long: 51 tokens > max_length 20"
    assert len(D.load_sft(path, count_tokens=words, max_length=60)) == 2


def test_missing_files_pickles_and_empty_inputs_are_problems(tmp_path):
    (tmp_path / "rows.pkl").write_bytes(b"\x80\x04K\x01.")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    problems = problems_of(D.load_sft, [tmp_path / "nope.jsonl", tmp_path / "rows.pkl", tmp_path / "empty.jsonl"])
    assert [p.split(": ")[1] for p in problems] == ["file", "file", "file"]
    assert "does not exist" in problems[0] and "pickles" in problems[1] and "no rows" in problems[2]
    assert "no data files" in problems_of(D.load_sft, [])[0]


def test_validate_functions_check_rows_in_memory():
    D.validate_sft([sft(1), sft(2)])
    D.validate_preference([pref(1)])
    with pytest.raises(DataError) as err:
        D.validate_preference([pref(1), pref(2, chosen="Same.", rejected="Same.")], source="arena-votes")
    assert str(err.value) == "arena-votes:2: rejected: identical to chosen"
    with pytest.raises(DataError, match="must end with a 'user' turn"):
        D.validate_eval([{"id": "e", "category": "tech", "language": "en", "adversarial": False, "kind": "open",
                          "messages": [TURN_U, TURN_A]}])


def test_eval_rows_follow_the_suite_schema(tmp_path):
    good = {"id": "e1", "category": "tech", "language": "en", "adversarial": False, "kind": "open", "messages": [TURN_U]}
    known = {**good, "id": "e2", "kind": "known_answer", "expected": "yes"}
    bad_kind = {**good, "id": "e3", "kind": "chat", "adversarial": "no", "messages": [{"role": "user", "content": "3?"}]}
    bad_expected = {**known, "id": "e4", "expected": "maybe", "messages": [{"role": "user", "content": "4?"}]}
    known["messages"] = [{"role": "user", "content": "2?"}]
    path = write_jsonl(tmp_path / "suite.jsonl", [good, known, bad_kind, bad_expected])
    fields = [p.split(": ")[1] for p in problems_of(D.load_eval, path)]
    assert fields == ["adversarial", "kind", "expected"]
    with pytest.raises(DataError, match="adversarial"):  # types are checked even without the schema
        D.load_eval(path, schema=False)
    assert len(D.load_eval(write_jsonl(tmp_path / "s2.jsonl", [good, {**bad_expected, "adversarial": True}]),
                           schema=False)) == 2


# ---------------------------------------------------------------- formats


def canonical_rows() -> list[dict]:
    return [sft(1), sft(2, language="zh", messages=[{"role": "user", "content": "能用吗？\n多行"},
                                                    {"role": "assistant", "content": "能，\"引号\"也行。"}])]


def write_all_formats(tmp_path: Path, rows: list[dict]) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    out = {"jsonl": write_jsonl(tmp_path / "rows.jsonl", rows)}
    out["json"] = tmp_path / "rows.json"
    out["json"].write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    out["csv"] = tmp_path / "rows.csv"
    with out["csv"].open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{**r, "messages": json.dumps(r["messages"], ensure_ascii=False)} for r in rows])
    out["parquet"] = tmp_path / "rows.parquet"
    pq.write_table(pa.Table.from_pylist(rows), out["parquet"])
    out["saved"] = tmp_path / "saved"
    Dataset.from_list(rows).save_to_disk(str(out["saved"]))
    return out


def test_every_format_loads_to_the_same_rows(tmp_path):
    rows = canonical_rows()
    for fmt, path in write_all_formats(tmp_path, rows).items():
        assert D.load_sft(path, schema=True) == rows, fmt


def test_plain_string_preference_rows_convert_in_jsonl_and_csv(tmp_path):
    expected = pref(1)
    plain = {**expected, "prompt": "Question 1?", "chosen": "Yes. Reason 1.", "rejected": "Great question! It depends 1."}
    assert D.load_preference(write_jsonl(tmp_path / "p.jsonl", [plain])) == [expected]
    path = tmp_path / "p.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(plain))
        writer.writeheader()
        writer.writerow(plain)
    assert D.load_preference(path) == [expected]


def test_sft_prompt_completion_strings_become_messages():
    row = D.normalize_row({"id": "x", "prompt": "Hi?", "completion": "Hello."}, "sft")
    assert row == {"id": "x", "messages": [TURN_U, TURN_A]}


def test_csv_problems_name_the_line_where_the_row_starts(tmp_path):
    path = tmp_path / "rows.csv"
    good = json.dumps([TURN_U, TURN_A])
    path.write_text('id,messages\na,"' + good.replace('"', '""') + '"\nb,"[{""role"": ""user"",\n""content"": '
                    '""two lines""}]"\nc,not json\n', encoding="utf-8")
    problems = problems_of(D.load_sft, path)
    name = D.show_path(path)
    assert problems[0] == f"{name}:3: messages: must end with a 'assistant' turn, ends with 'user'"
    assert problems[1].startswith(f"{name}:5: messages: invalid JSON in the cell")


def test_non_utf8_json_and_csv_name_the_line(tmp_path):
    path = tmp_path / "rows.json"
    path.write_bytes(b'[\n{"messages": []},\n{"x": "\xff"}\n]')
    assert problems_of(D.load_sft, path) == [f"{D.show_path(path)}:3: encoding: not valid UTF-8 (byte 0xff at byte 8 of the line)"]


# ---------------------------------------------------------------- using rows


def test_split_is_deterministic_and_keeps_prompts_together():
    rows = [sft(i) for i in range(40)] + [pref(i) for i in range(5)]
    train, held = D.split(rows, 0.25, seed=3)
    assert (train, held) == D.split(rows, 0.25, seed=3)
    assert D.split(rows, 0.25, seed=4) != (train, held)
    assert len(held) >= 11 and len(train) + len(held) == len(rows)
    # pref(i) and sft(i) share "Question i?": they must land on the same side
    held_prompts = {D.first_user_turn(r) for r in held}
    assert not held_prompts & {D.first_user_turn(r) for r in train}
    assert D.split(rows, 0.0, seed=3) == (rows, [])
    with pytest.raises(ValueError):
        D.split(rows, 1.0)


def test_with_system_prompt_by_language_keeps_existing_system_turns():
    rows = [sft(1), sft(2, language="zh"), sft(3, messages=[TURN_S, TURN_U, TURN_A]), pref(1)]
    baked = D.with_system_prompt(rows, lambda r: {"zh": "中文提示"}.get(r.get("language"), "English prompt"))
    assert baked[0]["messages"][0] == {"role": "system", "content": "English prompt"}
    assert baked[1]["messages"][0]["content"] == "中文提示"
    assert baked[2]["messages"] == [TURN_S, TURN_U, TURN_A]
    assert baked[3]["prompt"][0]["role"] == "system" and rows[0]["messages"][0] == rows[0]["messages"][0]
    assert rows[0]["messages"][0]["role"] == "user"  # the input rows are not modified
    D.validate_sft(baked[:3])
    D.validate_preference(baked[3:])
