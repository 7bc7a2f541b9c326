"""The studio's Train, Jobs, Evaluate, Improve and Export tabs: each action queues a job; the views read what
the run's records hold so far."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from stylealign.studio import EXPORT_TARGETS, Studio
from stylealign.ui.widgets import JOB_COLUMNS, job_rows, run_picker, shown_errors


def _overrides(text: str) -> dict:
    pairs = [line.split("=", 1) for line in (text or "").splitlines() if line.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise gr.Error(f"overrides: {bad[0]!r} is not field=value")
    return {k.strip(): v.strip() for k, v in pairs}


def train_tab(studio: Studio) -> None:
    with gr.Row():
        persona = gr.Dropdown(studio.personas(), label="Persona", elem_id="train-persona", allow_custom_value=True)
        run = gr.Textbox(label="Run name (runs/NAME)", elem_id="train-run")
        recipe = gr.Textbox("smollm2-135m_qlora_cpu", label="Recipe (shipped name or YAML path)")
        stage = gr.Radio(["all", "sft", "dpo"], value="all", label="Stages")
    overrides = gr.Textbox(label="Recipe fields, one field=value per line", lines=3, elem_id="train-overrides",
                           placeholder="sft.max_steps=40\ndpo.learning_rate=5e-5")
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        cancel = gr.Button("Cancel", elem_id="train-cancel")
        resume = gr.Button("Resume", elem_id="train-resume")
    status = gr.Markdown(elem_id="train-status")
    job = gr.State(None)
    progress = gr.Markdown(elem_id="train-progress")
    losses = gr.Image(label="Training (loss; DPO reward margin and accuracy; candidates' probe scores)", type="filepath",
                      interactive=False, elem_id="train-loss")
    candidates = gr.Dataframe(headers=CANDIDATE_COLUMNS, interactive=False, label="Checkpoint candidates (greedy probe)",
                              elem_id="train-candidates")

    @shown_errors
    def on_start(persona_name, run_name, recipe_name, stage_name, fields):
        queued = studio.train(persona_name, run_name, recipe_name, _overrides(fields), stage=stage_name)
        return f"Queued job #{queued.id}: `{' '.join(queued.argv)}`", queued.id

    @shown_errors(shape=lambda line, action, job_id: (line, job_id))
    def on_control(action, job_id):
        if not job_id:
            return "Start a training first.", job_id
        done = studio.queue.cancel(job_id) if action == "cancel" else studio.queue.resume(job_id)
        return f"Job #{done.id}: {done.state}.", done.id

    start.click(on_start, [persona, run, recipe, stage, overrides], [status, job], api_name="train")
    cancel.click(lambda j: on_control("cancel", j), job, [status, job], api_name="cancel_training")
    resume.click(lambda j: on_control("resume", j), job, [status, job], api_name="resume_training")
    persona.focus(lambda: gr.update(choices=studio.personas()), None, persona, api_visibility="private")
    watch = dict(fn=lambda name, j: _training_view(studio, name, j), inputs=[run, job],
                 outputs=[progress, losses, candidates])
    gr.Timer(3).tick(api_visibility="private", **watch)
    run.change(api_name="training_progress", **watch)


CANDIDATE_COLUMNS = ["stage", "step", "verdict-first", "repetitive", "top opener", "yes-share"]


@shown_errors(shape=lambda line, *_: (line, None, []))
def _training_view(studio: Studio, run_name: str, job_id: int | None):
    """Progress line, training plot and candidate table of a run (what its records hold so far)."""
    if not (run_name or "").strip():
        return "", None, []
    seen = studio.progress(run_name)
    state = studio.queue.get(job_id).state if job_id else None
    lines = [f"**{stage}**: step {p['step']}/{p['max_steps'] or '?'}" + (" · done" if p["done"] else "")
             + (f" · about {_duration(p['eta_s'])} left" if p["eta_s"] and not p["done"] else "")
             for stage, p in seen["stages"].items()]
    head = f"Job #{job_id}: {state}. " if state else ""
    plot = _plot_of(studio, run_name, seen)
    pct = lambda v: "–" if v is None else f"{v:.0%}"
    table = [[c["stage"], c["step"], *(pct(c["scores"].get(k)) for k in ("verdict_first", "repetitive", "top_opener",
                                                                        "yes_share"))] for c in seen["candidates"]]
    return head + (" · ".join(lines) or "No training records yet."), plot and str(plot), table


def _plot_of(studio: Studio, run_name: str, seen: dict) -> Path | None:
    """The run's training plot: drawn again only when its records changed (the view refreshes every few seconds
    while the CPU trains), one file per run in the temp folder."""
    import hashlib
    import json
    import tempfile

    folder = Path(tempfile.gettempdir()) / "stylealign-studio"
    folder.mkdir(exist_ok=True)
    records = json.dumps([seen["stages"], seen["candidates"]], sort_keys=True, default=str)
    path = folder / f"{run_name}-{hashlib.sha256(records.encode()).hexdigest()[:16]}.png"
    if path.exists():
        return path
    for old in folder.glob(f"{run_name}-*.png"):  # the drawing of earlier records
        old.unlink(missing_ok=True)
    return studio.progress_plot(seen, path)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def jobs_tab(studio: Studio) -> None:
    table = gr.Dataframe(job_rows(studio.queue.list()), headers=JOB_COLUMNS, interactive=False, elem_id="jobs")
    with gr.Row():
        job_id = gr.Number(label="Job (0: the newest)", precision=0, value=0, elem_id="job-id")
        cancel = gr.Button("Cancel", elem_id="job-cancel")
        resume = gr.Button("Resume", elem_id="job-resume")
    status = gr.Markdown(elem_id="job-status")
    log = gr.Textbox(label="Log (last lines)", lines=16, max_lines=16, autoscroll=True, elem_id="job-log")

    def refresh(selected):
        jobs = studio.queue.list()
        shown = int(selected) if selected else (jobs[0].id if jobs else None)
        return job_rows(jobs), studio.queue.log(shown, tail=6000) if shown else ""

    @shown_errors
    def on_cancel(selected):
        return f"Job #{int(selected)}: {studio.queue.cancel(int(selected)).state}."

    @shown_errors
    def on_resume(selected):
        job = studio.queue.resume(int(selected))
        return f"Queued job #{job.id}: `{' '.join(job.argv)}`"

    gr.Timer(2).tick(refresh, job_id, [table, log], api_visibility="private")
    job_id.change(refresh, job_id, [table, log], api_name="job_log")
    cancel.click(on_cancel, job_id, status, api_name="cancel_job")
    resume.click(on_resume, job_id, status, api_name="resume_job")


def evaluate_tab(studio: Studio) -> None:
    with gr.Row():
        run = run_picker(studio, "eval-run")
        limit = gr.Number(8, label="Prompts per suite", precision=0, minimum=1, maximum=500, elem_id="eval-limit")
        start = gr.Button("Evaluate", variant="primary", elem_id="eval-start")
        show = gr.Button("Show report", elem_id="eval-show")
    status = gr.Markdown(elem_id="eval-status")
    report = gr.Markdown(elem_id="eval-report")
    plots = gr.Gallery(label="Plots", columns=2, height="auto", elem_id="eval-plots")

    @shown_errors
    def on_start(run_name, n):
        job = studio.evaluate(run_name, int(n or 8))
        return f"Queued job #{job.id}; the report appears here when it is done (Show report)."

    @shown_errors(shape=lambda line, *_: (line, []))
    def on_show(run_name):
        return studio.report(run_name), [str(p) for p in studio.report_plots(run_name)]

    start.click(on_start, [run, limit], status, api_name="evaluate")
    show.click(on_show, run, [report, plots], api_name="report")


def improve_tab(studio: Studio) -> None:
    gr.Markdown("Decisive votes from the Arena's blind battles become DPO preference pairs; the next round trains "
                "DPO on them, starting from the run that was voted on.")
    with gr.Row():
        run = run_picker(studio, "improve-run")
        votes = gr.Textbox(".stylealign/arena/votes.sqlite", label="Vote file (in the workspace)")
        next_run = gr.Textbox(label="Next run name", elem_id="improve-next")
    start = gr.Button("Train on the votes", variant="primary", elem_id="improve-start")
    status = gr.Markdown(elem_id="improve-status")

    @shown_errors
    def on_start(run_name, vote_file, name):
        n, job = studio.improve(run_name, vote_file, name)
        return f"{n} preference pairs; queued job #{job.id}: `{' '.join(job.argv)}`"

    start.click(on_start, [run, votes, next_run], status, api_name="improve")


def export_tab(studio: Studio) -> None:
    with gr.Row():
        run = run_picker(studio, "export-run")
        to = gr.Radio(list(EXPORT_TARGETS), value="gguf", label="Export")
        start = gr.Button("Export", variant="primary", elem_id="export-start")
        listing = gr.Button("Show files", elem_id="export-files")
    status = gr.Markdown(elem_id="export-status")
    files = gr.File(label="Exported files", file_count="multiple", interactive=False, elem_id="export-download")

    @shown_errors
    def on_start(run_name, target):
        job = studio.export(run_name, target)
        return f"Queued job #{job.id}; the check's verdict is the end of its log (Jobs tab)."

    @shown_errors(shape=lambda line, *_: (None, line))
    def on_list(run_name):
        folder = studio.run_dir(run_name) / "export"
        found = sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not found:
            return None, f"Nothing exported in {studio.shown(folder)} yet."
        return found, f"{len(found)} file(s) in {studio.shown(folder)}. {studio.export_verdict(run_name)}"

    start.click(on_start, [run, to], status, api_name="export")
    listing.click(on_list, run, [files, status], api_name="export_files")
