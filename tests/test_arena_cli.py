"""`stylealign arena` argument parsing, safe defaults and the baseline-only arena."""

import socket

import pytest

from stylealign.arena.settings import Settings
from stylealign.cli import build_parser, main
from stylealign.fakes import fake_service


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
    assert capsys.readouterr().err.startswith(f"stylealign: error: --adapter {tmp_path / 'nope'}: not a run folder")


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


# ---- user errors: one `stylealign: error:` line, exit 2, before any model loads -------------------------

def fails_with(capsys, argv: list[str], *phrases: str) -> str:
    """Run the CLI in-process; assert exit 2 and exactly one `stylealign: error:` line holding `phrases`."""
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and err[0].startswith("stylealign: error: "), (rc, err)
    for phrase in phrases:
        assert phrase in err[0], err[0]
    return err[0]


@pytest.fixture
def nothing_loads(monkeypatch):
    """A model load or a server start fails the test: every argument must be checked before either."""
    import stylealign.generate
    import stylealign.ui.app

    def reached(what):
        def fail(*args, **kwargs):
            raise AssertionError(f"{what} before the arguments were checked")
        return fail

    monkeypatch.setattr(stylealign.generate, "Generator", reached("model loaded"))
    monkeypatch.setattr(stylealign.ui.app, "launch_app", reached("server started"))


@pytest.fixture
def read_only(tmp_path):
    """Return a function that makes a path read-only (chattr +i works for root too; chmod for others)."""
    import os
    import subprocess

    made = []

    def make(path):
        if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
            if os.geteuid() == 0:
                pytest.skip("cannot make a read-only path here (root without chattr)")
            path.chmod(0o555 if path.is_dir() else 0o444)
        made.append(path)
        return path

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)
        path.chmod(0o755 if path.is_dir() else 0o644)


def sqlite_without_votes(path):
    import sqlite3

    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE notes (text TEXT)")
    return path


def test_bad_auth_fails_before_the_model_loads(capsys, nothing_loads):
    line = fails_with(capsys, ["arena", "--auth", "alice-s3cret"], "--auth", "USER:PASSWORD")
    assert "alice-s3cret" not in line  # never echo what may be a password


def test_bad_limits_and_port_are_user_errors(capsys, nothing_loads):
    fails_with(capsys, ["arena", "--max-turns", "0"], "--max-turns: must be at least 1")
    fails_with(capsys, ["arena", "--port", "70000"], "--port: must be between 1 and 65535")


def test_port_in_use_fails_before_the_model_loads(capsys, nothing_loads, tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        fails_with(capsys, ["arena", "--port", str(port), "--votes", str(tmp_path / "v.sqlite")],
                   f"--port {port}: already in use", "pass another --port")


def test_run_folder_without_an_adapter_fails_before_the_model_loads(capsys, nothing_loads, tmp_path):
    (tmp_path / "run").mkdir()
    fails_with(capsys, ["arena", "--adapter", str(tmp_path / "run")], "--adapter", "not a run folder",
               "adapter_config.json")


def test_votes_in_a_read_only_folder(capsys, nothing_loads, read_only, tmp_path):
    (tmp_path / "ro").mkdir()
    votes = read_only(tmp_path / "ro") / "votes.sqlite"
    fails_with(capsys, ["arena", "--votes", str(votes)], f"vote file {votes}: cannot open or create it",
               "choose a folder you can write to")


def test_read_only_vote_file(capsys, nothing_loads, read_only, tmp_path):
    from stylealign.arena.votes import VoteStore

    votes = read_only(VoteStore(tmp_path / "votes.sqlite").path)
    fails_with(capsys, ["arena", "--votes", str(votes)], f"vote file {votes}: read-only", "chmod u+w")


def test_arena_refuses_a_file_that_is_not_its_vote_file(capsys, nothing_loads, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a database, just some text that is long enough to have a header\n" * 5)
    fails_with(capsys, ["arena", "--votes", str(text)], f"vote file {text}: not an SQLite file")
    other = sqlite_without_votes(tmp_path / "other.sqlite")
    fails_with(capsys, ["arena", "--votes", str(other)], "an SQLite file without arena votes", "a new path")


@pytest.mark.parametrize("make", ["text", "other-sqlite", "missing"])
def test_export_prefs_on_a_file_that_is_not_a_vote_file(capsys, tmp_path, make):
    votes = tmp_path / "votes.sqlite"
    if make == "text":
        votes.write_text("id,winner\n1,A\n" * 20)
    elif make == "other-sqlite":
        sqlite_without_votes(votes)
    why = {"text": "not an SQLite file", "other-sqlite": "an SQLite file without arena votes", "missing": "no such file"}[make]
    fails_with(capsys, ["arena", "export-prefs", "--votes", str(votes), "--out", str(tmp_path / "p.jsonl")],
               f"vote file {votes}: {why}", "the --votes file the arena wrote")
    assert not (tmp_path / "p.jsonl").exists()
    if make == "other-sqlite":  # export only reads: no table added to someone else's database
        import sqlite3

        with sqlite3.connect(votes) as conn:
            assert [r[0] for r in conn.execute("SELECT name FROM sqlite_master")] == ["notes"]


def test_serving_beyond_localhost_without_auth_warns_with_the_prefix(capsys, monkeypatch, tmp_path):
    import stylealign.ui.app

    monkeypatch.setattr(stylealign.ui.app, "launch_app", lambda *a, **k: None)
    assert main(["arena", "--fake", "--host", "0.0.0.0", "--port", str(_free_port()),
                 "--votes", str(tmp_path / "v.sqlite")]) == 0
    assert capsys.readouterr().err.startswith("stylealign: warning: serving on 0.0.0.0 without --auth")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
