"""The arena's handlers as plain functions (no browser), over the fake generator."""

import json
import threading

import pytest

from stylealign.arena.contestants import from_runs
from stylealign.arena.service import ERROR_PREFIX, ArenaService
from stylealign.arena.settings import Limits, Settings
from stylealign.fakes import HEDGY, FakeGenerator, fake_service


@pytest.fixture
def service(tmp_path):
    return fake_service(tmp_path / "votes.sqlite")


def last(updates):
    out = None
    for out in updates:
        pass
    return out


def test_side_by_side_streams_both_panes_from_one_batched_call(service):
    updates = list(service.side_by_side(None, "Should I learn Rust?", "sharp-candid", Settings()))
    assert len(updates) > 3  # streamed word by word
    assert len(updates[1]["left"][-1]["content"]) < len(updates[-2]["left"][-1]["content"])
    final = updates[-1]
    assert final["done"] and final["status"] == "Done."
    assert final["left"][-1]["content"] == HEDGY["en"]
    assert final["right"][-1]["content"] != final["left"][-1]["content"]
    [call] = service.generator.calls
    assert call["adapters"] == [None, "sharp-candid"]
    assert call["conversations"][0] == [{"role": "user", "content": "Should I learn Rust?"}]


def test_side_by_side_keeps_each_panes_history(service):
    first = last(service.side_by_side(None, "one", "calm", Settings()))
    second = last(service.side_by_side(first["history"], "two", "calm", Settings()))
    assert [m["role"] for m in second["left"]] == ["user", "assistant"] * 2
    sent = service.generator.calls[-1]["conversations"]
    assert sent[0][:2] == first["left"] and sent[1][:2] == first["right"]


def test_strength_is_passed_through_and_zero_is_the_baseline(service):
    out = last(service.side_by_side(None, "q", "calm", Settings(strength=0.0)))
    assert service.generator.calls[-1]["strengths"] == {"calm": 0.0}
    assert out["left"] == out["right"]
    out = last(service.side_by_side(None, "q", "calm", Settings(strength=2.5)))
    assert service.generator.calls[-1]["strengths"] == {"calm": 2.5}
    last(service.side_by_side(None, "q", "calm", Settings(strength=99)))
    assert service.generator.calls[-1]["strengths"] == {"calm": Limits().max_strength}


def test_persona_prompt_goes_to_both_panes_in_the_right_language(service):
    last(service.side_by_side(None, "hello", "calm", Settings(persona_prompt=True)))
    convs = service.generator.calls[-1]["conversations"]
    assert [c[0] for c in convs] == [{"role": "system", "content": "You are calm."}] * 2
    last(service.side_by_side(None, "你好", "calm", Settings(persona_prompt=True)))
    assert service.generator.calls[-1]["conversations"][1][0]["content"] == "你是calm。"


@pytest.mark.parametrize("message, reason", [("   ", "Type a message"), ("x" * 5000, "too long")])
def test_input_caps_refuse_without_generating(service, message, reason):
    [only] = list(service.side_by_side(None, message, "calm", Settings()))
    assert reason in only["status"] and only["done"]
    assert service.generator.calls == []


def test_turn_cap(tmp_path):
    service = fake_service(tmp_path / "v.sqlite")
    service.limits = Limits(max_turns=2)
    hist = None
    for i in range(2):
        hist = last(service.side_by_side(hist, f"q{i}", "calm", Settings()))["history"]
    assert "limit" in last(service.side_by_side(hist, "q3", "calm", Settings()))["status"]


def test_sampling_settings_reach_the_generator(tmp_path):
    seen = []

    class Spy(FakeGenerator):
        def stream(self, conversations, adapters, config, strengths=None):
            seen.append(config)
            yield from super().stream(conversations, adapters, config, strengths)

    service = ArenaService(Spy(["calm"]), fake_service(tmp_path / "v.sqlite").contestants.values(),
                           fake_service(tmp_path / "v.sqlite").store)
    last(service.side_by_side(None, "q", "calm", Settings(temperature=0, top_p=0.5, max_new_tokens=5, seed=7)))
    cfg = seen[-1]
    assert (cfg.do_sample, cfg.top_p, cfg.max_new_tokens, cfg.seed) == (False, 0.5, 5, 7)


def test_generation_error_shows_in_the_panes_and_the_service_carries_on(service):
    updates = list(service.side_by_side(None, "please FAIL now", "calm", Settings()))
    final = updates[-1]
    assert final["done"] and final["status"].startswith(ERROR_PREFIX)
    assert ERROR_PREFIX in final["right"][-1]["content"]
    assert final["history"] == {"left": [], "right": []}  # the failed turn is not kept
    ok = last(service.side_by_side(final["history"], "fine now", "calm", Settings()))
    assert ok["status"] == "Done."


# ---- blind battles -----------------------------------------------------------------------

def test_battle_is_anonymous_until_the_vote(service):
    updates = list(service.battle_turn("s1", "Is Python slow?", Settings()))
    final = updates[-1]
    assert final["done"] and "which is better" in final["status"]
    names = service.names
    blob = json.dumps(updates)
    assert not any(f'"{n}"' in blob for n in names) and all(u["reveal"] == "" for u in updates)
    result = service.vote("s1", "A")
    battle = service.battles.get("s1")
    assert result["ok"] and battle.model_a in result["reveal"] and battle.model_b in result["reveal"]
    [vote] = service.store.all()
    assert (vote.model_a, vote.model_b, vote.winner, vote.session_id) == (battle.model_a, battle.model_b, "A", "s1")
    assert vote.conversation_a[-1]["content"] == final["a"][-1]["content"]
    assert vote.settings["strength"] == 1.0 and "temperature" in vote.settings


def test_vote_before_answers_are_complete_is_refused(tmp_path):
    service = fake_service(tmp_path / "v.sqlite")
    stream = service.battle_turn("s1", "hello", Settings())
    next(stream)  # the battle has started, answers are streaming
    refused = service.vote("s1", "B")
    assert not refused["ok"] and "complete" in refused["status"] and refused["reveal"] == ""
    assert len(service.store) == 0
    last(stream)
    assert service.vote("s1", "B")["ok"]
    again = service.vote("s1", "B")
    assert not again["ok"] and "already voted" in again["status"]
    assert len(service.store) == 1


def test_vote_without_battle_or_after_failure_is_refused(service):
    assert not service.vote("nobody", "A")["ok"]
    assert not service.vote("s1", "maybe")["ok"]
    final = last(service.battle_turn("s1", "FAIL here", Settings()))
    assert final["status"].startswith(ERROR_PREFIX) and ERROR_PREFIX in final["a"][-1]["content"]
    assert not service.vote("s1", "A")["ok"]


def test_vote_during_a_follow_up_turn_is_refused(service):
    last(service.battle_turn("s1", "one", Settings()))
    stream = service.battle_turn("s1", "two", Settings())
    next(stream)
    assert not service.vote("s1", "tie")["ok"]
    final = last(stream)
    assert [m["content"] for m in final["a"] if m["role"] == "user"] == ["one", "two"]
    assert service.vote("s1", "tie")["ok"]
    assert sum(m["role"] == "user" for m in service.store.all()[0].conversation_a) == 2


def test_a_message_after_the_vote_starts_a_new_battle(service):
    last(service.battle_turn("s1", "one", Settings()))
    first_id = service.battles.get("s1").id
    service.vote("s1", "both_bad")
    final = last(service.battle_turn("s1", "two", Settings()))
    assert service.battles.get("s1").id != first_id
    assert [m["content"] for m in final["a"] if m["role"] == "user"] == ["two"]


def test_sides_and_pairs_are_randomized(service):
    battles = [service.battles.new(f"s{i}") for i in range(200)]
    pairs = {(b.model_a, b.model_b) for b in battles}
    assert len(pairs) == 6  # 3 contestants: every ordered pair shows up


def test_concurrent_sessions_vote_without_losing_any(tmp_path):
    service = fake_service(tmp_path / "v.sqlite")
    errors = []

    def voter(i: int) -> None:
        try:
            last(service.battle_turn(f"s{i}", f"question {i}", Settings()))
            assert service.vote(f"s{i}", "AB"[i % 2])["ok"]
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=voter, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(service.store) == 12


def test_leaderboard_after_votes(service):
    for i in range(6):
        last(service.battle_turn(f"s{i}", "q", Settings()))
        service.vote(f"s{i}", "A")
    board = service.leaderboard(rounds=20)
    assert board.votes == 6 and {r["contestant"] for r in board.rows} == set(service.names)
    assert any(r["rating"] == 1000.0 for r in board.rows if r["contestant"] == "baseline")


def test_contestants_from_run_folders(tmp_path):
    for name, manifest in (("sharp", {"persona": {"name": "p", "system_prompt": "Be sharp."}}),
                           ("plain", {"system_prompt": "Plain.", "system_prompt_zh": "朴素。"})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "x" / "sharp").mkdir(parents=True)
    runs = [tmp_path / "sharp", tmp_path / "plain", tmp_path / "x" / "sharp"]
    base, sharp, plain, sharp2 = from_runs(runs)
    assert base.adapter is None and [sharp.name, plain.name, sharp2.name] == ["sharp", "plain", "sharp-2"]
    assert sharp.system_prompt("zh") == "Be sharp." and plain.system_prompt("zh") == "朴素。"
    assert sharp2.system_prompt() is None
    gen = FakeGenerator(adapters=())
    service = ArenaService.from_runs(runs, tmp_path / "v.sqlite", generator=gen)
    assert gen.adapter_names == ["sharp", "plain", "sharp-2"] and service.adapters == gen.adapter_names
