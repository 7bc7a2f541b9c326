"""A real headless Chromium drives the studio through the whole loop on a tiny model: a persona from the form (a
validation error shown inline, then fixed), its data uploaded, a short training watched to done, an evaluation
and its flags, a blind vote in the arena, the votes turned into the next round, and an export to download.
Screenshots of every tab go to tests/artifacts/studio-*.png (the README shows them)."""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest
from helpers import ARTIFACTS, free_port

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SHIPPED = "personas/sharp-candid/data"
# The suite drives the loop on the tiny random model (a few minutes); STYLEALIGN_STUDIO_BASE=smollm2-135m drives the
# same loop on the embedded model with the CPU recipe (NF4), as a user would.
EMBEDDED = os.environ.get("STYLEALIGN_STUDIO_BASE")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def studio_page(browser, tmp_path, tiny_model_dir):
    from stylealign.commands.studio import open_arena
    from stylealign.studio import Studio
    from stylealign.ui.app import launch_app
    from stylealign.ui.studio import build_studio

    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "eval").symlink_to(REPO / "eval")  # a workspace is a checkout: the kit's suites and corpus
    studio = Studio.open(tmp_path / "ws")
    arena = open_arena([], studio.inside(".stylealign/arena/votes.sqlite"), base=EMBEDDED or str(tiny_model_dir))
    demo = build_studio(studio, arena)
    port = free_port()
    launch_app(demo, port=port, block=False, allowed=[studio.runs_dir])
    studio.queue.start()
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(f"http://127.0.0.1:{port}/")
    yield studio, page
    page.close()
    studio.queue.stop()
    demo.close()


def rows_file(tmp_path, kind: str, n: int = 20):
    """Return a JSONL file of `n` of the shipped persona's rows of this kind, without their metadata (TRL's
    format only: the studio fills the rest)."""
    keep = {"sft": ("messages",), "pref": ("prompt", "chosen", "rejected")}[kind]
    rows = []
    for f in sorted(REPO.glob(f"{SHIPPED}/{kind}_en_*.jsonl")):
        rows += [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    out = tmp_path / f"my-{kind}.jsonl"
    out.write_text("".join(json.dumps({k: r[k] for k in keep}) + "\n" for r in rows[:n]))
    return out


def tab(page, name: str, shot: str | None = None):
    page.get_by_role("tab", name=name, exact=True).first.click()
    if shot:
        page.wait_for_timeout(300)
        page.screenshot(path=str(ARTIFACTS / f"studio-{shot}.png"), full_page=True)


def fill(page, elem_id: str, text: str):
    page.locator(f"#{elem_id} textarea, #{elem_id} input").first.fill(text)


def wait_job_done(studio, job_id: int, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while not studio.queue.get(job_id).finished:
        assert time.monotonic() < deadline, studio.queue.log(job_id)
        time.sleep(0.5)
    assert studio.queue.get(job_id).state == "done", studio.queue.log(job_id)


def last_job(studio):
    return studio.queue.list()[0]


def test_the_whole_loop_without_a_terminal(studio_page, tmp_path, tiny_model_dir):
    from playwright.sync_api import expect

    studio, page = studio_page
    ARTIFACTS.mkdir(exist_ok=True)
    # Persona: the form refuses a bad name inline; fixed, the persona exists and its spec opens in the editor.
    tab(page, "Persona")
    expect(page.locator("#new-name textarea")).to_be_visible()  # open: the workspace has no persona yet
    for elem_id, text in [("new-name", "My Tutor"), ("new-title", "My Tutor"), ("new-description", "Patient, plain."),
                          ("new-system-prompt", "You are a patient tutor.")]:
        fill(page, elem_id, text)
    page.locator("#new-create").click()
    expect(page.locator("#persona-problems")).to_contain_text("must be lower-case letters", timeout=30_000)
    fill(page, "new-name", "my-tutor")
    page.locator("#new-create").click()
    expect(page.locator("#persona-problems")).to_contain_text("Created", timeout=30_000)
    expect(page.locator("#persona-spec")).to_contain_text("name: my-tutor")
    page.screenshot(path=str(ARTIFACTS / "studio-persona.png"), full_page=True)
    # Data: TRL-format rows uploaded, checked, written with their metadata filled.
    tab(page, "Data")
    for kind, label in (("sft", "sft"), ("pref", "preference")):
        page.locator("#data-persona input").fill("my-tutor")
        page.keyboard.press("Enter")
        page.get_by_label(label, exact=True).check()
        page.locator("#data-upload input[type=file]").set_input_files(str(rows_file(tmp_path, kind)))
        page.wait_for_timeout(500)
        page.locator("#data-add").click()
        expect(page.locator("#data-status")).to_contain_text(f"Added 20 {label} rows", timeout=30_000)
        page.locator("#data-upload button[aria-label='Clear']").first.click()
    page.screenshot(path=str(ARTIFACTS / "studio-data.png"), full_page=True)
    assert studio.validate("my-tutor") == []
    # Train: a short run on the tiny model, watched to done (progress and loss from the run's records).
    tab(page, "Train")
    page.locator("#train-persona input").fill("my-tutor")
    page.keyboard.press("Enter")
    fill(page, "train-run", "tutor-1")
    model = f"base={EMBEDDED}" if EMBEDDED else f"base={tiny_model_dir}\nquant=none\ndtype=fp32"
    fill(page, "train-overrides", f"{model}\nsft.max_steps=2\ndpo.max_steps=2\nsft.logging_steps=1\nselect.enabled=false")
    page.locator("#train-start").click()
    expect(page.locator("#train-status")).to_contain_text("Queued job #1", timeout=30_000)
    wait_job_done(studio, 1)
    expect(page.locator("#train-progress")).to_contain_text("sft", timeout=30_000)
    expect(page.locator("#train-progress")).to_contain_text("done", timeout=30_000)
    expect(page.locator("#train-loss img")).to_be_visible(timeout=30_000)  # the training plot
    page.screenshot(path=str(ARTIFACTS / "studio-train.png"), full_page=True)
    tab(page, "Jobs", "jobs")
    expect(page.locator("#jobs")).to_contain_text("done")
    # Evaluate: a small limit; the report shows, flags first.
    tab(page, "Evaluate")
    page.locator("#eval-run input").fill("tutor-1")
    page.keyboard.press("Enter")
    page.locator("#eval-limit input").fill("2")  # 2 prompts per suite: the wiring, not the numbers
    page.locator("#eval-start").click()
    expect(page.locator("#eval-status")).to_contain_text("Queued job #2", timeout=30_000)
    wait_job_done(studio, 2, timeout=600)
    page.locator("#eval-show").click()
    expect(page.locator("#eval-report")).to_contain_text("red flags", ignore_case=True, timeout=30_000)
    expect(page.locator("#eval-plots img").first).to_be_visible(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "studio-evaluate.png"), full_page=True)
    # Arena: the new run joins, a blind battle, a vote.
    tab(page, "Arena")
    page.locator("#arena-load").click()
    expect(page.locator("#arena-loaded")).to_contain_text("Loaded tutor-1", timeout=60_000)
    page.get_by_role("tab", name="Blind battle").click()
    page.locator("#battle-input textarea").fill("Should I learn Rust?")
    page.locator("#battle-send").click()
    expect(page.locator("#battle-status")).to_contain_text("which is better", timeout=120_000)
    page.locator("#vote-A").click()
    expect(page.locator("#reveal")).not_to_be_empty(timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "studio-arena.png"), full_page=True)
    # Improve: the vote becomes a pair; the next round trains DPO from the run that was voted on.
    tab(page, "Improve")
    page.locator("#improve-run input").fill("tutor-1")
    page.keyboard.press("Enter")
    fill(page, "improve-next", "tutor-2")
    page.locator("#improve-start").click()
    expect(page.locator("#improve-status")).to_contain_text("1 preference pairs; queued job #3", timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "studio-improve.png"), full_page=True)
    wait_job_done(studio, 3)
    assert (studio.runs_dir / "tutor-2" / "manifest.json").is_file()
    # Export: merged safetensors, checked; the files are offered for download.
    tab(page, "Export")
    page.locator("#export-run input").fill("tutor-1")
    page.keyboard.press("Enter")
    page.get_by_label("merged", exact=True).check()
    page.locator("#export-start").click()
    expect(page.locator("#export-status")).to_contain_text("Queued job #4", timeout=30_000)
    wait_job_done(studio, 4, timeout=600)
    page.locator("#export-files").click()
    expect(page.locator("#export-status")).to_contain_text(re.compile(r"\d+ file\(s\) in runs/tutor-1/export\. Check "), timeout=30_000)
    expect(page.locator("#export-download")).to_contain_text(re.compile(r"model\s*\.safetensors"), timeout=30_000)
    page.screenshot(path=str(ARTIFACTS / "studio-export.png"), full_page=True)
