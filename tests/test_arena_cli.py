"""`stylealign arena` argument parsing, safe defaults and the baseline-only arena."""

import pytest

from stylealign.arena.fake import fake_service
from stylealign.arena.settings import Settings
from stylealign.cli import build_parser, main


def test_defaults_are_safe():
    args = build_parser().parse_args(["arena"])
    assert (args.host, args.port, args.share, args.auth, args.adapter) == ("127.0.0.1", 7860, False, None, [])
    assert args.func.__name__ == "run_arena"


def test_adapters_repeat_and_extend():
    args = build_parser().parse_args(["arena", "--adapter", "runs/a", "runs/b", "--adapter", "runs/c",
                                      "--auth", "u:p", "--port", "9000", "--votes", "v.sqlite", "--share"])
    assert args.adapter == ["runs/a", "runs/b", "runs/c"]
    assert (args.auth, args.port, args.votes, args.share) == ("u:p", 9000, "v.sqlite", True)


def test_export_prefs_subcommand_parses():
    args = build_parser().parse_args(["arena", "export-prefs", "--votes", "v.sqlite", "--out", "p.jsonl"])
    assert (args.export_votes, args.out, args.func.__name__) == ("v.sqlite", "p.jsonl", "run_export")


def test_missing_run_folder_is_an_error(tmp_path, capsys):
    assert main(["arena", "--adapter", str(tmp_path / "nope")]) == 2
    assert "not a run folder" in capsys.readouterr().err


def test_auth_parsing():
    from stylealign.ui.app import parse_auth

    assert parse_auth("alice:pa:ss") == ("alice", "pa:ss") and parse_auth(None) is None
    for bad in ("alice", ":x", "alice:"):
        with pytest.raises(ValueError):
            parse_auth(bad)


def test_baseline_only_arena_refuses_battles_politely(tmp_path):
    service = fake_service(tmp_path / "v.sqlite", adapters=())
    [update] = list(service.battle_turn("s", "hi", Settings()))
    assert "--adapter" in update["status"]
    assert "--adapter" in service.new_battle("s")["status"]
    out = list(service.side_by_side(None, "hi", None, Settings()))[-1]
    assert out["status"] == "Done." and out["left"] == out["right"]


def test_app_builds_without_adapters(tmp_path):
    import gradio as gr

    from stylealign.ui.app import build_app

    demo = build_app(fake_service(tmp_path / "v.sqlite", adapters=()))
    assert isinstance(demo, gr.Blocks)
