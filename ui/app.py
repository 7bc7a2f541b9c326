"""The arena app: `build_app(service)` returns the Gradio Blocks; `launch_app` serves it safely.

Layout and callbacks only: each callback calls one ArenaService handler and maps the dict it
returns onto components (by name, never by position).
"""

from __future__ import annotations

import gradio as gr
from starlette.middleware import Middleware

from stylealign.arena.service import ArenaService
from stylealign.arena.settings import Settings, parse_auth
from stylealign.ui import views
from stylealign.ui.auth import RequireLogin

TITLE = "stylealign arena"
CSS = """
.gradio-container {max-width: 1200px !important; margin: auto;}
#status, #battle-status, #reveal {min-height: 1.6em;}
#reveal {font-size: 1.05em;}
footer {display: none !important;}
"""
THEME = gr.themes.Soft(primary_hue="indigo", neutral_hue="slate")
VOTES = {"A": "A is better", "B": "B is better", "tie": "Tie", "both_bad": "Both are bad"}


def build_app(service: ArenaService, concurrency: int = 4, max_queue: int = 64) -> gr.Blocks:
    """Return the arena app, queued: at most `concurrency` events at once, one generation at a time."""
    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        gr.Markdown(f"## {TITLE}\nCompare a persona adapter with the neutral baseline (same base model, "
                    "same seed), vote blind, and see the ratings.")
        demo.load(**arena_tabs(service)["refresh"])
    demo.queue(default_concurrency_limit=concurrency, max_size=max_queue)
    return demo


def arena_tabs(service: ArenaService) -> dict:
    """Add the arena (settings, side by side, blind battle, leaderboard) to the Blocks being built; return the
    leaderboard's refresh event (for the page load to fill the ratings) and the side-by-side adapter picker."""
    settings = _settings_panel(service)
    with gr.Tabs():
        with gr.Tab("Side by side", id="side"):
            adapter = _side_by_side(service, settings)
        with gr.Tab("Blind battle", id="battle"):
            votes = _battle(service, settings)
        with gr.Tab("Leaderboard", id="leaderboard") as board_tab:
            refresh = _leaderboard(service)
    board_tab.select(**refresh)
    for vote in votes:  # every vote button refreshes the ratings
        vote.then(**refresh)
    return {"refresh": refresh, "adapter": adapter}


def _settings_panel(service: ArenaService) -> dict:
    limits, default = service.limits, Settings()
    with gr.Accordion("Generation settings", open=False):
        with gr.Row():
            temperature = gr.Slider(0, limits.max_temperature, default.temperature, step=0.05, label="Temperature",
                                    info="0 = greedy")
            top_p = gr.Slider(0.05, 1.0, default.top_p, step=0.05, label="Top-p")
            max_new_tokens = gr.Slider(16, limits.max_new_tokens, default.max_new_tokens, step=8,
                                       label="Max new tokens")
            seed = gr.Number(default.seed, precision=0, minimum=0, label="Seed")
        persona_prompt = gr.Checkbox(default.persona_prompt, label="Send the persona's system prompt",
                                     info="Side by side: the adapter's persona prompt goes to both panes. "
                                          "Battles: each adapter gets its own persona's prompt.")
    return {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "seed": seed,
            "persona_prompt": persona_prompt}


def _pane(label: str, elem_id: str) -> gr.Chatbot:
    return gr.Chatbot(label=label, elem_id=elem_id, height=420, feedback_options=None, buttons=["copy_all"],
                      placeholder="Answers stream here.")


def _to_settings(values: dict, strength: float = 1.0) -> Settings:
    return Settings(strength=strength, **values)


def _side_by_side(service: ArenaService, settings: dict) -> gr.Dropdown:
    adapters = service.adapters
    first = adapters[0] if adapters else None
    with gr.Row():
        adapter = gr.Dropdown(adapters, value=first, label="Adapter (right pane)", interactive=bool(adapters),
                              scale=2)
        strength = gr.Slider(0, service.limits.max_strength, 1.0, step=0.05, label="Style strength", scale=3,
                             info="0 = baseline · 1 = as trained · >1 exaggerated")
    with gr.Row(equal_height=True):
        left = _pane("Baseline (no adapter)", "left-pane")
        right = _pane(views.pane_label(first, 1.0), "right-pane")
    with gr.Row():
        message = gr.Textbox(placeholder="Ask both panes…", show_label=False, scale=6, elem_id="sbs-input",
                             max_length=service.limits.max_message_chars)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="sbs-send")
        clear = gr.Button("Clear", scale=1)
    status = gr.Markdown(elem_id="status")
    history = gr.State(None)

    def on_send(text, hist, adapter_name, strength_value, request: gr.Request, **values):
        for u in service.side_by_side(hist, text, adapter_name, _to_settings(values, strength_value)):
            started = not u["done"] or u["history"] is not hist
            yield {left: u["left"], right: u["right"], history: u["history"], status: u["status"],
                   **({message: ""} if started else {})}

    event = dict(fn=on_send, inputs=[message, history, adapter, strength], inputs_kwargs=settings,
                 outputs=[left, right, history, status, message], concurrency_id="generate", concurrency_limit=1)
    send.click(api_name="side_by_side", **event)
    message.submit(api_visibility="private", **event)

    def on_clear() -> dict:
        return {left: [], right: [], history: None, status: ""}

    clear.click(on_clear, outputs=[left, right, history, status], api_name="clear")
    for pane in (left, right):  # the panes' own trash icons clear the shared history too
        pane.clear(on_clear, outputs=[left, right, history, status], api_visibility="private")
    for control in (adapter, strength):
        control.change(lambda a, s: gr.update(label=views.pane_label(a, s)), [adapter, strength], right,
                       api_visibility="private", queue=False)
    return adapter


def _battle(service: ArenaService, settings: dict) -> list:
    with gr.Row(equal_height=True):
        a = _pane("Model A", "pane-a")
        b = _pane("Model B", "pane-b")
    with gr.Row():
        message = gr.Textbox(placeholder="Ask both anonymous models…", show_label=False, scale=6,
                             elem_id="battle-input", max_length=service.limits.max_message_chars)
        send = gr.Button("Send", variant="primary", scale=1, elem_id="battle-send")
        new = gr.Button("New battle", scale=1)
    with gr.Row():
        buttons = {choice: gr.Button(label, elem_id=f"vote-{choice}") for choice, label in VOTES.items()}
    status = gr.Markdown(elem_id="battle-status")
    reveal = gr.Markdown(elem_id="reveal")
    outputs = [a, b, status, reveal, message]

    def view(u: dict) -> dict:
        return {a: u["a"], b: u["b"], status: u["status"], reveal: u["reveal"]}

    def on_send(text, request: gr.Request, **values):
        for u in service.battle_turn(request.session_hash, text, _to_settings(values)):
            yield {**view(u), **({message: ""} if not u["done"] else {})}

    event = dict(fn=on_send, inputs=[message], inputs_kwargs=settings, outputs=outputs,
                 concurrency_id="generate", concurrency_limit=1)
    send.click(api_name="battle", **event)
    message.submit(api_visibility="private", **event)

    def on_new(request: gr.Request) -> dict:
        return view(service.new_battle(request.session_hash))

    new.click(on_new, None, [a, b, status, reveal], api_name="new_battle")
    for pane in (a, b):
        pane.clear(on_new, None, [a, b, status, reveal], api_visibility="private")
    return [button.click(_vote_fn(service, choice, status, reveal), None, [status, reveal], api_name=f"vote_{choice}")
            for choice, button in buttons.items()]


def _vote_fn(service: ArenaService, choice: str, status, reveal):
    def vote(request: gr.Request) -> dict:
        result = service.vote(request.session_hash, choice)
        return {status: result["status"], reveal: result["reveal"]}

    return vote


def _leaderboard(service: ArenaService) -> dict:
    with gr.Row():
        style = gr.Checkbox(False, label="Style control", info="Discount answer length and markdown use")
        rounds = gr.Slider(0, 500, 100, step=50, label="Bootstrap rounds (CIs)")
        refresh = gr.Button("Refresh", elem_id="refresh")
    note = gr.Markdown()
    table = gr.Dataframe(views.ratings_table(service.leaderboard(rounds=0)), interactive=False,
                         elem_id="ratings", label="Ratings")
    matrix = gr.Dataframe(interactive=False, label="Pairwise win rate (battles)", elem_id="win-rate")

    def show(style_control: bool, n: int) -> dict:
        board = service.leaderboard(rounds=n, style_control=style_control)
        return {table: views.ratings_table(board), matrix: views.win_rate_table(board), note: views.summary(board)}

    event = dict(fn=show, inputs=[style, rounds], outputs=[table, matrix, note])
    refresh.click(api_name="leaderboard", **event)
    style.change(api_visibility="private", **event)
    return {**event, "api_visibility": "private"}


def launch_app(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, share: bool = False,
               auth: str | None = None, block: bool = True, allowed: list | None = None,
               max_file_size: int | None = None):
    """Serve the app on host:port (localhost by default, no share link unless asked); `allowed` folders may be
    downloaded from (the studio's runs/); uploads over `max_file_size` bytes are refused by the server.

    With `auth`, every route needs the login (RequireLogin), not only those Gradio guards itself.
    """
    login = parse_auth(auth)
    # launch() builds the FastAPI app and starts serving in one call: passing the middleware to the app's
    # constructor is how it is in place before the first request.
    app_kwargs = {"middleware": [Middleware(RequireLogin)]} if login else None
    return demo.launch(server_name=host, server_port=port, share=share, auth=login, app_kwargs=app_kwargs,
                       prevent_thread_lock=not block, allowed_paths=[str(p) for p in allowed or []],
                       max_file_size=max_file_size, theme=THEME, css=CSS, ssr_mode=False, quiet=not block,
                       footer_links=["api"])
