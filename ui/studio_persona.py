"""The studio's Persona and Data tabs: a persona from a form, its spec edited with inline validation, rows
uploaded (checked before anything is written) and grown with synth."""

from __future__ import annotations

import gradio as gr

from stylealign.scaffold import PersonaDraft
from stylealign.studio import Studio
from stylealign.ui.widgets import shown_errors


def persona_tab(studio: Studio) -> None:
    with gr.Row():
        name = gr.Dropdown(studio.personas(), label="Persona", allow_custom_value=True, scale=3, elem_id="persona-name")
        reload = gr.Button("Reload list", scale=1)
    spec = gr.Code(language="yaml", label="persona.yaml", lines=24, elem_id="persona-spec")
    with gr.Row():
        save = gr.Button("Validate and save", variant="primary", elem_id="persona-save")
        check = gr.Button("Validate data", elem_id="persona-validate")
        card_button = gr.Button("Data card", elem_id="persona-card-button")
    problems = gr.Markdown(elem_id="persona-problems")
    card = gr.Markdown(elem_id="persona-card")
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

    @shown_errors(shape=lambda line, *_: (gr.update(), line.replace("**Error:**", "**Not created:**"), gr.update()))
    def on_create(*values):
        keys = ("name", "title", "description", "system_prompt", "languages", "system_prompt_zh")
        fields = dict(zip(keys, values[:6]))
        lines = lambda text: tuple(line.strip() for line in (text or "").splitlines() if line.strip())
        draft = PersonaDraft(**fields, traits=tuple(t.strip() for t in (values[6] or "").split(",") if t.strip()),
                             do=lines(values[7]), dont=lines(values[8]))
        folder = studio.create_persona(draft)
        return gr.update(choices=studio.personas(), value=folder.name), f"Created {folder}.", studio.spec(folder.name)

    name.change(on_open, name, [problems, spec], api_name="open_persona")
    reload.click(lambda: gr.update(choices=studio.personas()), None, name, api_visibility="private")
    save.click(on_save, [name, spec], problems, api_name="save_persona")
    check.click(on_validate, name, problems, api_name="validate_persona")
    card_button.click(shown_errors(studio.data_card), name, card, api_name="data_card")
    create.click(on_create, [new_name, title, description, system_prompt, languages, system_prompt_zh, traits, do, dont],
                 [name, problems, spec], api_name="create_persona")


def data_tab(studio: Studio) -> None:
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
