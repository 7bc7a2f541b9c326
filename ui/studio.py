"""The studio app: the persona loop in the browser. `build_studio(studio, arena)` returns the Gradio Blocks.

Tabs follow the loop: Persona (create from a form, edit the spec with inline validation), Train, Jobs (the
queue, live logs, cancel, resume), Evaluate (the report, red flags first), Arena (the arena's own tabs),
Improve (votes -> DPO pairs -> the next round) and Export. Layout and callbacks only: every action is one
`stylealign.studio.Studio` call; a user error shows as one line in the tab's status, never a traceback.
"""

from __future__ import annotations

import functools
import time

import gradio as gr

from stylealign.errors import describe
from stylealign.jobs import Job
from stylealign.scaffold import PersonaDraft
from stylealign.studio import EXPORT_TARGETS, Studio
from stylealign.ui import app as arena_app

TITLE = "stylealign studio"
JOB_COLUMNS = ["id", "command", "state", "started", "ended", "note"]


def shown_errors(fn):
    """Return `fn` whose user errors come back as the status line ("Error: ...") instead of raising."""

    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:
            known = describe(e)
            if known is None:
                raise
            return _status(f"**Error:** {known[0]}")

    return wrapped


def _status(text: str):
    """What a callback returns when all it has to say is a line (its first output is the status)."""
    return text


def job_rows(jobs: list[Job]) -> list[list]:
    clock = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
    return [[j.id, " ".join(j.argv), j.state, clock(j.started), clock(j.ended), j.note] for j in jobs]


def build_studio(studio: Studio, arena=None, concurrency: int = 4) -> gr.Blocks:
    """Return the studio app; `arena` (an ArenaService) adds the arena's tabs."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\nWrite a persona, train it, evaluate it, compare and vote, train on the votes, "
                    "export. Long steps run as jobs, one at a time; the Jobs tab shows them.")
        with gr.Tabs(selected="arena" if arena is not None and arena.adapters else "persona"):
            with gr.Tab("Persona", id="persona"):
                _persona_tab(studio)
            with gr.Tab("Data", id="data"):
                _data_tab(studio)
            with gr.Tab("Train", id="train"):
                _train_tab(studio)
            with gr.Tab("Jobs", id="jobs"):
                _jobs_tab(studio)
            with gr.Tab("Evaluate", id="evaluate"):
                _evaluate_tab(studio)
            if arena is not None:
                with gr.Tab("Arena", id="arena"):
                    _arena_tab(studio, arena, demo)
            with gr.Tab("Improve", id="improve"):
                _improve_tab(studio)
            with gr.Tab("Export", id="export"):
                _export_tab(studio)
    demo.queue(default_concurrency_limit=concurrency, max_size=64)
    return demo


def _arena_tab(studio: Studio, arena, demo: gr.Blocks) -> None:
    with gr.Row():
        busy = gr.Markdown(elem_id="arena-busy")
        loaded = gr.Markdown(elem_id="arena-loaded")
        load = gr.Button("Load new runs", scale=0, elem_id="arena-load")
    parts = arena_app.arena_tabs(arena)
    demo.load(**parts["refresh"])
    gr.Timer(3).tick(lambda: _busy_line(studio), outputs=busy, api_visibility="private")

    def on_load():
        added = arena.add_runs([str(studio.runs_dir / r) for r in studio.runs()])
        said = f"Loaded {', '.join(added)}." if added else "No new finished runs."
        return said, gr.update(choices=arena.adapters)

    load.click(on_load, None, [loaded, parts["adapter"]], api_name="load_runs")


def _busy_line(studio: Studio) -> str:
    job = studio.queue.running()
    if job is None or job.kind not in ("train", "synth", "eval", "export"):
        return ""
    return f"A {job.kind} job (#{job.id}) is using this machine: answers here are slower until it ends."


def _persona_tab(studio: Studio) -> None:
    with gr.Row():
        name = gr.Dropdown(studio.personas(), label="Persona", allow_custom_value=True, scale=3, elem_id="persona-name")
        reload = gr.Button("Reload list", scale=1)
    spec = gr.Code(language="yaml", label="persona.yaml", lines=24, elem_id="persona-spec")
    with gr.Row():
        save = gr.Button("Validate and save", variant="primary", elem_id="persona-save")
        check = gr.Button("Validate data", elem_id="persona-validate")
    problems = gr.Markdown(elem_id="persona-problems")
    with gr.Accordion("New persona", open=not studio.personas()):
        new_name = gr.Textbox(label="Folder name", placeholder="warm-tutor", elem_id="new-name")
        title = gr.Textbox(label="Title", placeholder="Warm Tutor", elem_id="new-title")
        description = gr.Textbox(label="The persona in a sentence or two", lines=2, elem_id="new-description")
        system_prompt = gr.Textbox(label="System prompt (English)", lines=3, elem_id="new-system-prompt")
        languages = gr.CheckboxGroup(["en", "zh"], value=["en"], label="Languages")
        system_prompt_zh = gr.Textbox(label="System prompt (Chinese; with zh)", lines=2)
        traits = gr.Textbox(label="Traits, comma-separated", placeholder="patient, concrete")
        do = gr.Textbox(label="Style rules to follow, one per line", lines=3)
        dont = gr.Textbox(label="Style rules to avoid, one per line", lines=3)
        create = gr.Button("Create", variant="primary", elem_id="new-create")

    def on_open(persona):
        return ("", studio.spec(persona)) if persona else ("", "")

    @shown_errors
    def on_save(persona, text):
        saved, found = studio.save_spec(persona, text)
        listed = "\n".join(f"- `{p}`" for p in found)
        if not saved:
            return "**Not saved:**\n" + listed
        return "Saved; no problems." if not found else "Saved. The data checks still find:\n" + listed

    @shown_errors
    def on_validate(persona):
        found = studio.validate(persona)
        return "No problems." if not found else "\n".join(f"- `{p}`" for p in found)

    def on_create(*values):
        keys = ("name", "title", "description", "system_prompt", "languages", "system_prompt_zh")
        fields = dict(zip(keys, values[:6]))
        lines = lambda text: tuple(line.strip() for line in (text or "").splitlines() if line.strip())
        draft = PersonaDraft(**fields, traits=tuple(t.strip() for t in (values[6] or "").split(",") if t.strip()),
                             do=lines(values[7]), dont=lines(values[8]))
        try:
            folder = studio.create_persona(draft)
        except Exception as e:
            known = describe(e)
            if known is None:
                raise
            return gr.update(), f"**Not created:** {known[0]}", gr.update()
        return gr.update(choices=studio.personas(), value=folder.name), f"Created {folder}.", studio.spec(folder.name)

    name.change(on_open, name, [problems, spec], api_name="open_persona")
    reload.click(lambda: gr.update(choices=studio.personas()), None, name, api_visibility="private")
    save.click(on_save, [name, spec], problems, api_name="save_persona")
    check.click(on_validate, name, problems, api_name="validate_persona")
    create.click(on_create, [new_name, title, description, system_prompt, languages, system_prompt_zh, traits, do, dont],
                 [name, problems, spec], api_name="create_persona")


def _data_tab(studio: Studio) -> None:
    persona = gr.Dropdown(studio.personas(), label="Persona", elem_id="data-persona", allow_custom_value=True)
    persona.focus(lambda: gr.update(choices=studio.personas()), None, persona, api_visibility="private")
    with gr.Row():
        with gr.Column():
            gr.Markdown("**Upload rows** (JSONL, JSON, CSV or Parquet): every row is checked before anything is "
                        "written.")
            kind = gr.Radio(["sft", "preference"], value="sft", label="Rows")
            upload = gr.File(label="File", file_types=[".jsonl", ".json", ".csv", ".parquet"], type="filepath",
                             elem_id="data-upload")
            add = gr.Button("Check and add", elem_id="data-add")
        with gr.Column():
            gr.Markdown("**Grow data with `synth`**: a teacher answers in character, the base model answers the same "
                        "prompts; the filters' decisions are counted at the end of the job's log.")
            teacher = gr.Textbox(label="Teacher", placeholder="file:PATH, hf:PATH or openai:http://HOST:PORT/v1#MODEL")
            out_name = gr.Textbox("synth", label="Output name (data/pref_NAME.jsonl, data/sft_NAME.jsonl)")
            limit = gr.Number(0, precision=0, minimum=0, label="Prompts (0: all)")
            grow = gr.Button("Start synth", elem_id="data-synth")
    status = gr.Markdown(elem_id="data-status")

    @shown_errors
    def on_add(persona_name, rows, path):
        if not path:
            return "Choose a file first."
        n, out = studio.add_rows(persona_name, rows, path)
        return f"Added {n} {rows} rows as `{studio.shown(out)}`."

    @shown_errors
    def on_synth(persona_name, spec, name, n):
        job = studio.synth(persona_name, spec, name or "synth", limit=int(n or 0))
        return f"Queued job #{job.id}: `{' '.join(job.argv)}`"

    add.click(on_add, [persona, kind, upload], status, api_name="add_rows")
    grow.click(on_synth, [persona, teacher, out_name, limit], status, api_name="synth")


def _overrides(text: str) -> dict:
    pairs = [line.split("=", 1) for line in (text or "").splitlines() if line.strip()]
    bad = [p[0] for p in pairs if len(p) != 2]
    if bad:
        raise gr.Error(f"overrides: {bad[0]!r} is not field=value")
    return {k.strip(): v.strip() for k, v in pairs}


def _train_tab(studio: Studio) -> None:
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
    losses = gr.LinePlot(x="step", y="loss", color="stage", title="Training loss", elem_id="train-loss", height=260)
    candidates = gr.Dataframe(headers=CANDIDATE_COLUMNS, interactive=False, label="Checkpoint candidates (greedy probe)",
                              elem_id="train-candidates")

    @shown_errors
    def on_start(persona_name, run_name, recipe_name, stage_name, fields):
        queued = studio.train(persona_name, run_name, recipe_name, _overrides(fields), stage=stage_name)
        return f"Queued job #{queued.id}: `{' '.join(queued.argv)}`", queued.id

    def on_control(action, job_id):
        if not job_id:
            return "Start a training first.", job_id
        try:
            done = studio.queue.cancel(job_id) if action == "cancel" else studio.queue.resume(job_id)
        except Exception as e:
            known = describe(e)
            if known is None:
                raise
            return f"**Error:** {known[0]}", job_id
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


def _training_view(studio: Studio, run_name: str, job_id: int | None):
    """Progress line, loss curve and candidate table of a run (what its records hold so far)."""
    import pandas as pd

    empty = pd.DataFrame({"step": [], "loss": [], "stage": []})
    if not (run_name or "").strip():
        return "", empty, []
    try:
        seen = studio.progress(run_name)
    except Exception as e:
        known = describe(e)
        if known is None:
            raise
        return f"**Error:** {known[0]}", empty, []
    state = studio.queue.get(job_id).state if job_id else None
    lines = [f"**{stage}**: step {p['step']}/{p['max_steps'] or '?'}" + (" · done" if p["done"] else "")
             + (f" · about {_duration(p['eta_s'])} left" if p["eta_s"] and not p["done"] else "")
             for stage, p in seen["stages"].items()]
    head = f"Job #{job_id}: {state}. " if state else ""
    points = [(s, x, y) for s, p in seen["stages"].items() for x, y in p["losses"]]
    frame = pd.DataFrame(points, columns=["stage", "step", "loss"]) if points else empty
    pct = lambda v: "–" if v is None else f"{v:.0%}"
    table = [[c["stage"], c["step"], *(pct(c["scores"].get(k)) for k in ("verdict_first", "repetitive", "top_opener",
                                                                        "yes_share"))] for c in seen["candidates"]]
    return head + (" · ".join(lines) or "No training records yet."), frame, table


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _jobs_tab(studio: Studio) -> None:
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


def _run_picker(studio: Studio, elem_id: str) -> gr.Dropdown:
    runs = studio.runs()
    # custom values: runs finished after the page was built; the studio checks every name it is given
    picker = gr.Dropdown(runs, value=runs[-1] if runs else None, label="Run", elem_id=elem_id, allow_custom_value=True)
    picker.focus(lambda: gr.update(choices=studio.runs()), None, picker, api_visibility="private")
    return picker


def _evaluate_tab(studio: Studio) -> None:
    with gr.Row():
        run = _run_picker(studio, "eval-run")
        limit = gr.Number(8, label="Prompts per suite", precision=0, minimum=1, maximum=500)
        start = gr.Button("Evaluate", variant="primary", elem_id="eval-start")
        show = gr.Button("Show report", elem_id="eval-show")
    status = gr.Markdown(elem_id="eval-status")
    report = gr.Markdown(elem_id="eval-report")

    @shown_errors
    def on_start(run_name, n):
        job = studio.evaluate(run_name, int(n or 8))
        return f"Queued job #{job.id}; the report appears here when it is done (Show report)."

    @shown_errors
    def on_show(run_name):
        return studio.report(run_name)

    start.click(on_start, [run, limit], status, api_name="evaluate")
    show.click(on_show, run, report, api_name="report")


def _improve_tab(studio: Studio) -> None:
    gr.Markdown("Decisive votes from the Arena's blind battles become DPO preference pairs; the next round trains "
                "DPO on them, starting from the run that was voted on.")
    with gr.Row():
        run = _run_picker(studio, "improve-run")
        votes = gr.Textbox(".stylealign/arena/votes.sqlite", label="Vote file (in the workspace)")
        next_run = gr.Textbox(label="Next run name", elem_id="improve-next")
    start = gr.Button("Train on the votes", variant="primary", elem_id="improve-start")
    status = gr.Markdown(elem_id="improve-status")

    @shown_errors
    def on_start(run_name, vote_file, name):
        n, job = studio.improve(run_name, vote_file, name)
        return f"{n} preference pairs; queued job #{job.id}: `{' '.join(job.argv)}`"

    start.click(on_start, [run, votes, next_run], status, api_name="improve")


def _export_tab(studio: Studio) -> None:
    with gr.Row():
        run = _run_picker(studio, "export-run")
        to = gr.Radio(list(EXPORT_TARGETS), value="gguf", label="Export")
        start = gr.Button("Export", variant="primary", elem_id="export-start")
        listing = gr.Button("Show files", elem_id="export-files")
    status = gr.Markdown(elem_id="export-status")
    files = gr.File(label="Exported files", file_count="multiple", interactive=False, elem_id="export-download")

    @shown_errors
    def on_start(run_name, target):
        job = studio.export(run_name, target)
        return f"Queued job #{job.id}; the check's verdict is the end of its log (Jobs tab)."

    def on_list(run_name):
        try:
            folder = studio.run_dir(run_name) / "export"
        except Exception as e:
            known = describe(e)
            if known is None:
                raise
            return None, f"**Error:** {known[0]}"
        found = sorted(str(p) for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not found:
            return None, f"Nothing exported in {studio.shown(folder)} yet."
        return found, f"{len(found)} file(s) in {studio.shown(folder)}. {studio.export_verdict(run_name)}"

    start.click(on_start, [run, to], status, api_name="export")
    listing.click(on_list, run, [files, status], api_name="export_files")
