"""Export: decisive votes become preference rows that stylealign.data.load_preference accepts."""

import json

import pytest

from stylealign import data
from stylealign.arena.export import export_preferences, vote_to_preference, votes_to_preferences
from stylealign.arena.votes import Vote, VoteStore
from stylealign.cli import main
from stylealign.files import write_jsonl


def conv(user: str, answer: str, system: str | None = None, earlier=()) -> list[dict]:
    head = [{"role": "system", "content": system}] if system else []
    return head + list(earlier) + [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]


@pytest.fixture
def store(tmp_path):
    store = VoteStore(tmp_path / "votes.sqlite")
    store.add(Vote("baseline", "sharp", "B", conv("Is Rust fast?", "It depends."),
                   conv("Is Rust fast?", "Yes. Fast.", system="Be sharp.")))
    store.add(Vote("sharp", "baseline", "A", conv("要学Go吗？", "学。"), conv("要学Go吗？", "看情况。")))
    store.add(Vote("baseline", "sharp", "tie", conv("hi", "hello"), conv("hi", "yo")))
    store.add(Vote("baseline", "sharp", "both_bad", conv("x", "a"), conv("x", "b")))
    earlier_a = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "a1"}]
    earlier_b = [{"role": "user", "content": "q1"}, {"role": "assistant", "content": "b1"}]
    store.add(Vote("calm", "sharp", "A", conv("q2", "a2", earlier=earlier_a), conv("q2", "b2", earlier=earlier_b)))
    return store


def test_export_round_trips_into_the_preference_loader(store, tmp_path):
    out = tmp_path / "prefs" / "arena.jsonl"
    assert export_preferences(store.path, out) == 3
    rows = data.load_preference([str(out)])
    assert [r["chosen"][0]["content"] for r in rows] == ["Yes. Fast.", "学。", "a2"]
    assert [r["rejected"][0]["content"] for r in rows] == ["It depends.", "看情况。", "b2"]
    assert rows[0]["prompt"] == [{"role": "user", "content": "Is Rust fast?"}]  # system prompt dropped
    assert rows[1]["language"] == "zh" and rows[0]["language"] == "en"
    assert rows[0]["chosen_model"] == "sharp" and rows[0]["rejected_model"] == "baseline"
    assert [m["content"] for m in rows[2]["prompt"]] == ["q1", "a1", "q2"]  # the winner's context


def test_options_keep_system_and_skip_multi_turn(store):
    rows = votes_to_preferences(store.all(), keep_system=True, multi_turn="skip")
    assert len(rows) == 2
    assert rows[0]["prompt"][0] == {"role": "system", "content": "Be sharp."}
    data.validate_preference(rows)


def test_ties_identical_and_repeated_pairs_are_not_exported():
    same = Vote("baseline", "sharp", "A", conv("q", "same"), conv("q", "same"))
    assert vote_to_preference(same) is None
    v = Vote("baseline", "sharp", "A", conv("q", "a"), conv("q", "b"), id=1)
    again = Vote("baseline", "sharp", "A", conv("q", "a"), conv("q", "b"), id=2)
    assert len(votes_to_preferences([v, again])) == 1


def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "out.jsonl"
    out.write_text("old\n")
    assert write_jsonl(out, [{"a": 1}, {"b": "中"}]) == 2
    assert [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()] == [{"a": 1}, {"b": "中"}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]

    def broken():
        yield {"a": 1}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_jsonl(out, broken())
    assert out.read_text(encoding="utf-8").count("\n") == 2  # old file intact
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_cli_export_prefs(store, tmp_path, capsys):
    out = tmp_path / "cli.jsonl"
    assert main(["arena", "export-prefs", "--votes", str(store.path), "--out", str(out)]) == 0
    assert "wrote 3 preference rows" in capsys.readouterr().out
    assert len(data.load_preference([str(out)])) == 3
    assert main(["arena", "export-prefs", "--votes", str(tmp_path / "none.sqlite"), "--out", str(out)]) == 2
