"""Pieces the studio's tabs share: the error line, the run picker, the job table."""

from __future__ import annotations

import functools
import time

import gradio as gr

from stylealign.errors import describe
from stylealign.jobs import Job
from stylealign.studio import Studio

JOB_COLUMNS = ["id", "command", "state", "started", "ended", "note"]


def shown_errors(fn=None, *, shape=lambda line, *inputs: line):
    """Decorate a callback so that a user error comes back as its status line ("**Error:** ...") instead of
    raising; `shape(line, *inputs)` turns the line into the callback's outputs. A bug still raises."""

    def decorate(fn):
        @functools.wraps(fn)
        def wrapped(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except Exception as e:
                known = describe(e)
                if known is None:
                    raise
                return shape(f"**Error:** {known[0]}", *args)

        return wrapped

    return decorate(fn) if fn is not None else decorate


def job_rows(jobs: list[Job]) -> list[list]:
    clock = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
    return [[j.id, " ".join(j.argv), j.state, clock(j.started), clock(j.ended), j.note] for j in jobs]


def run_picker(studio: Studio, elem_id: str) -> gr.Dropdown:
    runs = studio.runs()
    # custom values: runs finished after the page was built; the studio checks every name it is given
    picker = gr.Dropdown(runs, value=runs[-1] if runs else None, label="Run", elem_id=elem_id, allow_custom_value=True)
    picker.focus(lambda: gr.update(choices=studio.runs()), None, picker, api_visibility="private")
    return picker
