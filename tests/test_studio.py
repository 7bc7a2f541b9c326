"""The studio (stylealign.studio + ui/studio.py): names and paths stay in the workspace, a persona from the form
with inline `file:line` validation, uploads checked before a byte is written, jobs built from the tabs, and the
app behind a login on every route, downloads included, with size-limited uploads."""

from __future__ import annotations

import json
import shutil
import sys
import time

import gradio_client
import httpx
import pytest
from helpers import LOGIN, PUBLIC, free_port, log_in, refused, routes

from stylealign.errors import ConfigError, NotFound, UserError
from stylealign.scaffold import PersonaDraft
from stylealign.studio import Studio, check_name

DRAFT = dict(title="Warm Tutor", description="A patient tutor.", system_prompt="You are a patient tutor.")


@pytest.fixture
def studio(tmp_path, small_persona) -> Studio:
    """A workspace with the small persona as personas/mini and a job queue whose `python` only records."""
    root = tmp_path / "ws"
    shutil.copytree(small_persona, root / "personas" / "mini")
    fake = tmp_path / "fake-python"
    fake.write_text(f"#!{sys.executable}\nimport sys\nprint('ran', *sys.argv[3:])\n")
    fake.chmod(0o755)
    opened = Studio.open(root)
    opened.queue.python = str(fake)
    return opened


def test_names_and_paths_stay_in_the_workspace(studio):
    for bad in ("", "../etc", "a/b", ".hidden", "Caps", "x" * 65):
        with pytest.raises(UserError, match="use lower-case letters"):
            check_name("run", bad)
    for outside in ("../secret.sqlite", "/etc/passwd", "personas/../../x"):
        with pytest.raises(UserError, match="outside the studio's workspace"):
            studio.inside(outside)
    assert studio.inside("personas/mini") == studio.root / "personas" / "mini"
    with pytest.raises(UserError):
        studio.persona_dir("../mini")
    with pytest.raises(NotFound, match="run nope: no finished run"):
        studio.run_dir("nope")
    # sizes are checked on the server, whatever the page allows
    with pytest.raises(UserError, match="persona.yaml: 200,001 characters is over the studio's limit"):
        studio.save_spec("mini", "x" * 200_001)
    with pytest.raises(UserError, match="description: 200,001 characters"):
        studio.create_persona(PersonaDraft(name="big", **{**DRAFT, "description": "d" * 200_001}))
    with pytest.raises(UserError, match="at most 64 at once"):
        studio.train("mini", "r", overrides={f"sft.f{i}": "1" for i in range(65)})
    with pytest.raises(UserError, match="teacher: 2,001 characters"):
        studio.synth("mini", "t" * 2001)
    assert studio.queue.list() == [] and not (studio.personas_dir / "big").exists()


def test_a_persona_from_the_form_and_its_inline_validation(studio):
    with pytest.raises(UserError, match="--description: missing"):
        studio.create_persona(PersonaDraft(name="warm", title="Warm"))
    folder = studio.create_persona(PersonaDraft(name="warm", **DRAFT))
    assert studio.personas() == ["mini", "warm"] and (folder / "persona.yaml").is_file()
    original = studio.spec("warm")
    broken = original.replace("title:", "title: [oops")
    assert studio.save_spec("warm", broken) == (False, ["personas/warm/persona.yaml:4:10: expected ',' or ']', but got ':'"])
    saved, problems = studio.save_spec("warm", original.replace("languages: [en]", "languages: [fr]"))
    assert not saved and problems[0].startswith("personas/warm/persona.yaml:4: languages: unsupported language 'fr'")
    assert studio.spec("warm") == original  # a refused edit leaves the file as it was
    saved, problems = studio.save_spec("warm", original.replace('"Warm Tutor"', '"Warmer Tutor"'))
    assert saved and "Warmer Tutor" in studio.spec("warm")
    # saved, with what the data checks still find (no rows yet), each at its line of persona.yaml
    line = next(i for i, t in enumerate(original.splitlines(), 1) if t.startswith("data:"))
    assert f"personas/warm/persona.yaml:{line}: data.sft: 'data/sft_*.jsonl' matches no files" in problems
    assert studio.validate("mini") == []
    card = studio.data_card("mini")
    assert "| SFT | (all) | 12 |" in card and "| SFT | personas/mini/data/sft.jsonl | 12 |" in card


def test_uploads_are_checked_before_anything_is_written(studio, tmp_path, monkeypatch):
    good = tmp_path / "More Rows.csv"
    good.write_text('prompt,completion\n"Is Rust worth learning?","Yes, if you write systems code."\n'
                    '"Tabs or spaces?","Spaces; the formatter decides."\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"data\.sft globs \(data/sft\.jsonl\) would not take this file"):
        studio.add_rows("mini", "sft", good)  # mini names its one file; nothing written
    studio.create_persona(PersonaDraft(name="warm", **DRAFT))  # globs data/sft_*.jsonl, data/pref_*.jsonl
    n, out = studio.add_rows("warm", "sft", good)
    assert (n, out.name) == (2, "sft_upload_more-rows.jsonl") and len(out.read_text().splitlines()) == 2
    row = json.loads(out.read_text().splitlines()[0])  # metadata filled as synth fills it; the persona's checks hold
    assert {k: row[k] for k in ("id", "language", "category", "verdict")} == {
        "id": "more-rows-1", "language": "en", "category": "life", "verdict": "yes"}
    problems = studio.validate("warm")
    assert not [p for p in problems if "sft_upload" in p] and any("SFT rows is 2, needs at least 20" in p for p in problems)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": [{"role": "user", "content": "hi"}], "chosen": [], "rejected": 3}\nnot json\n')
    with pytest.raises(UserError, match=r"bad\.jsonl: nothing written; .*bad\.jsonl:2"):
        studio.add_rows("warm", "preference", bad)
    assert sorted(p.name for p in (studio.personas_dir / "warm" / "data").iterdir()) == ["sft_upload_more-rows.jsonl"]
    assert sorted(p.name for p in (studio.personas_dir / "mini" / "data").iterdir()) == ["pref.jsonl", "sft.jsonl"]
    with pytest.raises(UserError, match="already exists"):
        studio.add_rows("warm", "sft", good)
    monkeypatch.setattr("stylealign.studio.MAX_UPLOAD_BYTES", 10)
    with pytest.raises(UserError, match="over the studio's 0 MiB upload limit"):
        studio.add_rows("warm", "sft", good, name="again")


def test_jobs_from_the_tabs(studio):
    from stylealign.arena.votes import Vote, VoteStore

    with pytest.raises(ConfigError, match="unknown field"):
        studio.train("mini", "r1", overrides={"sft.max_stepz": "3"})
    assert studio.queue.list() == []  # a bad field fails before anything is queued
    job = studio.train("mini", "r1", overrides={"sft.max_steps": "3"})
    assert job.argv[:2] == ["train", "all"] and job.argv[-2:] == ["--sft.max-steps", "3"]
    assert str(studio.root / "runs" / "r1") in job.argv
    with pytest.raises(NotFound):
        studio.evaluate("r1")  # not finished yet
    (studio.root / "runs" / "r1").mkdir(parents=True)
    (studio.root / "runs" / "r1" / "manifest.json").write_text("{}")
    assert studio.evaluate("r1", limit=3).argv == ["eval", "--adapter", str(studio.root / "runs" / "r1"), "--limit", "3"]
    with pytest.raises(UserError, match="export to 'zip'"):
        studio.export("r1", "zip")
    votes = studio.root / ".stylealign" / "arena" / "votes.sqlite"
    with pytest.raises(UserError, match="votes.sqlite: no such file"):
        studio.improve("r1", votes, "r2")
    turn = lambda answer: [{"role": "user", "content": "Tabs?"}, {"role": "assistant", "content": answer}]
    VoteStore(votes).add(Vote("baseline", "r1", "tie", turn("It depends."), turn("Spaces.")))
    with pytest.raises(UserError, match="no decisive votes yet"):
        studio.improve("r1", votes, "r2")
    VoteStore(votes).add(Vote("baseline", "r1", "B", turn("It depends."), turn("Spaces.")))
    n, job = studio.improve("r1", votes, "r2")
    assert n == 1 and job.argv[:4] == ["train", "dpo", "--init", str(studio.root / "runs" / "r1")]
    synth = studio.synth("mini", "file:x.jsonl", "grown", limit=4)
    assert synth.argv[:4] == ["synth", str(studio.root / "personas" / "mini"), "--teacher", "file:x.jsonl"]
    assert "--sft-out" in synth.argv and synth.argv[-2:] == ["--limit", "4"]


@pytest.fixture
def served(studio):
    from stylealign.fakes import fake_service
    from stylealign.ui.app import launch_app
    from stylealign.ui.studio import build_studio

    arena = fake_service(studio.root / ".stylealign" / "arena" / "votes.sqlite", adapters=("mini",))
    demo = build_studio(studio, arena)
    port = free_port()
    launch_app(demo, port=port, auth=":".join(LOGIN), block=False, allowed=[studio.runs_dir], max_file_size=4096)
    studio.queue.start()
    yield studio, demo, f"http://127.0.0.1:{port}"
    studio.queue.stop()
    demo.close()


def test_the_app_drives_the_loop_behind_a_login_on_every_route(served, tmp_path):
    studio, demo, base = served
    all_routes = routes(demo.server_app)
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        assert {r for r in all_routes if not refused(anonymous, *r)} == PUBLIC & set(all_routes)
    client = gradio_client.Client(base + "/", auth=LOGIN, verbose=False)
    assert client.predict("warm", "Warm", "", "", ["en"], "", "", "", "", api_name="/create_persona")[1].startswith(
        "**Not created:** --description: missing")
    name, status, spec = client.predict("warm", "Warm", "A tutor.", "Be warm.", ["en"], "", "kind, plain", "", "",
                                        api_name="/create_persona")
    assert status.startswith("Created") and "traits: [\"kind\", \"plain\"]" in spec
    assert "**Not saved:**" in client.predict("warm", spec.replace("name: warm", "name: warm\nbogus: 1"),
                                              api_name="/save_persona")
    assert "`personas/warm/persona.yaml:3: bogus: unknown field" in client.predict(
        "warm", spec.replace("name: warm", "name: warm\nbogus: 1"), api_name="/save_persona")
    queued = client.predict("mini", "r1", "smollm2-135m_qlora_cpu", "sft", "sft.max_steps=2", api_name="/train")
    assert queued.startswith("Queued job #1")
    deadline = time.monotonic() + 60
    while studio.queue.get(1).state != "done":
        assert time.monotonic() < deadline, studio.queue.log(1)
        time.sleep(0.1)
    rows, log = client.predict(1, api_name="/job_log")
    assert rows["data"][0][2] == "done" and log.startswith("ran train sft --persona")
    assert client.predict("nope", 8, api_name="/evaluate").startswith("**Error:** run nope: no finished run")
    with httpx.Client(base_url=base, timeout=30) as browser:
        log_in(browser)
        assert browser.get("/gradio_api/file=/etc/passwd").status_code == 403  # only runs/ is downloadable
        big = tmp_path / "big.jsonl"
        big.write_bytes(b"x" * 10_000)
        with big.open("rb") as f:
            assert browser.post("/gradio_api/upload", files={"files": f}).status_code == 413  # over max_file_size


def test_the_studio_command_refuses_a_bad_login_and_a_busy_port_in_one_line(capsys, tmp_path):
    import socket

    from helpers import fails_with

    fails_with(capsys, ["studio", "--workspace", str(tmp_path), "--auth", "nocolon"], "USER:PASSWORD")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        fails_with(capsys, ["studio", "--workspace", str(tmp_path), "--port", str(s.getsockname()[1])],
                   "already in use")


def test_training_progress_is_read_from_the_run_while_it_trains(studio):
    stage = studio.runs_dir / "r1.partial" / "stages" / "sft"
    (stage / "candidates" / "step-2").mkdir(parents=True)
    lines = [{"step": 1, "max_steps": 4, "elapsed_s": 1.0, "loss": 3.0}, {"step": 2, "max_steps": 4, "elapsed_s": 3.0,
             "loss": 2.5}, {"step": 2, "max_steps": 4, "elapsed_s": 0.5, "loss": 2.4}]  # step 2 again after a resume
    (stage / "progress.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"step": 3, "los')  # torn
    scores = {"verdict_first": 0.5, "repetitive": 0.1, "top_opener": 0.3, "yes_share": 0.5}
    (stage / "candidates" / "step-2" / "probe.json").write_text(json.dumps({"stage": "sft", "step": 2, "path": "stages/sft/candidates/step-2", "scores": scores}))
    seen = studio.progress("r1")
    assert seen["folder"] == "runs/r1.partial" and seen["candidates"][0]["scores"] == scores
    assert seen["stages"]["sft"] == {"step": 2, "max_steps": 4, "eta_s": None, "losses": [(1, 3.0), (2, 2.4)],
                                     "done": False, "history": [lines[0], lines[2]]}
    plot = studio.progress_plot(seen, studio.root / "p.png")
    assert plot.read_bytes().startswith(b"\x89PNG") and studio.progress_plot({"stages": {}, "candidates": []}, plot) is None
    with pytest.raises(UserError):
        studio.progress("../r1")
    dpo = studio.runs_dir / "r1.partial" / "stages" / "dpo"
    dpo.mkdir()
    assert list(studio.progress("r1")["stages"]) == ["sft", "dpo"]  # the order they train in
    assert studio.progress("r9") == {"stages": {}, "candidates": [], "folder": None}  # nothing yet


def test_the_main_job_ends_in_the_studio_with_its_run_in_the_open_arena_tab(tmp_path, monkeypatch):
    import stylealign.ui.app
    from stylealign.commands.quickstart import serve_studio
    from stylealign.fakes import FakeGenerator

    run = tmp_path / "runs" / "sc-quickstart"
    run.mkdir(parents=True)
    served = {}
    monkeypatch.setattr(stylealign.ui.app, "launch_app", lambda demo, **kw: served.update(demo=demo, **kw))
    monkeypatch.chdir(tmp_path)
    serve_studio(FakeGenerator(adapters=("sc-quickstart",)), run, port=7999)
    config = served["demo"].config
    [tabs] = [c for c in config["components"] if c["type"] == "tabs" and c["props"].get("selected")]
    labels = {c["props"].get("label") for c in config["components"] if c["type"] == "tabitem"}
    assert tabs["props"]["selected"] == "arena" and {"Persona", "Data", "Train", "Jobs", "Evaluate", "Arena",
                                                     "Improve", "Export"} <= labels
    pickers = [c for c in config["components"] if c["props"].get("elem_id") is None and c["type"] == "dropdown"
               and c["props"].get("label") == "Adapter (right pane)"]
    assert pickers and pickers[0]["props"]["value"] == "sc-quickstart"
    assert (served["host"], served["port"]) == ("127.0.0.1", 7999)


def test_the_arena_says_answers_are_slower_while_a_job_runs(studio, tmp_path):
    from stylealign.ui.studio import _busy_line

    assert _busy_line(studio) == ""
    slow = tmp_path / "slow-python"
    slow.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    slow.chmod(0o755)
    studio.queue.python = str(slow)
    job = studio.train("mini", "r1")
    studio.queue.start()
    try:
        deadline = time.monotonic() + 30
        while studio.queue.get(job.id).state != "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert _busy_line(studio) == f"A train job (#{job.id}) is using this machine: answers here are slower until it ends."
    finally:
        studio.queue.cancel(job.id)
        studio.queue.stop()
    assert _busy_line(studio) == ""
