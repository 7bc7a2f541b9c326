"""The studio app: the persona loop in the browser. `build_studio(studio, arena)` returns the Gradio Blocks.

Tabs follow the loop: Persona (create from a form, edit the spec with inline validation), Data (uploads,
synth), Train (progress, loss, candidates), Jobs (the
queue, live logs, cancel, resume), Evaluate (the report, red flags first), Arena (the arena's own tabs),
Improve (votes -> DPO pairs -> the next round) and Export. Layout and callbacks only: every action is one
`stylealign.studio.Studio` call; a user error shows as one line in the tab's status, never a traceback.
"""

from __future__ import annotations

import gradio as gr

from stylealign.studio import Studio
from stylealign.ui import app as arena_app
from stylealign.ui import studio_persona, studio_runs

TITLE = "stylealign studio"


def build_studio(studio: Studio, arena=None, concurrency: int = 4) -> gr.Blocks:
    """Return the studio app; `arena` (an ArenaService) adds the arena's tabs."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\nWrite a persona, train it, evaluate it, compare and vote, train on the votes, "
                    "export. Long steps run as jobs, one at a time; the Jobs tab shows them.")
        with gr.Tabs(selected="arena" if arena is not None and arena.adapters else "persona"):
            with gr.Tab("Persona", id="persona"):
                studio_persona.persona_tab(studio)
            with gr.Tab("Data", id="data"):
                studio_persona.data_tab(studio)
            with gr.Tab("Train", id="train"):
                studio_runs.train_tab(studio)
            with gr.Tab("Jobs", id="jobs"):
                studio_runs.jobs_tab(studio)
            with gr.Tab("Evaluate", id="evaluate"):
                studio_runs.evaluate_tab(studio)
            if arena is not None:
                with gr.Tab("Arena", id="arena"):
                    _arena_tab(studio, arena, demo)
            with gr.Tab("Improve", id="improve"):
                studio_runs.improve_tab(studio)
            with gr.Tab("Export", id="export"):
                studio_runs.export_tab(studio)
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
