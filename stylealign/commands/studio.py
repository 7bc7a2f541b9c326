"""`stylealign studio`: the whole persona loop in the browser (ui/studio.py), served on 127.0.0.1."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from stylealign.arena.settings import DEFAULT_VOTES, parse_auth
from stylealign.errors import PROG
from stylealign.options import option


@dataclass
class StudioOptions:
    """`stylealign studio`: the workspace, which runs the arena loads, and how the app is served."""

    workspace: str = option(".", "Folder holding personas/ and runs/; the studio reads and writes nothing outside it.")
    adapter: list = option([], "Run folder(s) the arena loads (repeatable; default: every finished run in runs/).",
                           action="append", metavar="RUN")
    base: str | None = option(None, "Base model of the arena (default: the runs' own).")
    host: str = option("127.0.0.1", "Interface to bind (default: localhost only).")
    port: int = option(7860, "Port to serve on.")
    auth: str | None = option(None, "Require this login on every route (jobs and downloads included).",
                              metavar="USER:PASSWORD")
    jobs: str | None = option(None, "SQLite job list, in the workspace (default .stylealign/studio/jobs.sqlite).")
    votes: str = option(DEFAULT_VOTES, "SQLite vote file, in the workspace.")
    no_arena: bool = option(False, "No Arena tab (no model is loaded).", flag="--no-arena-tab")

    def __post_init__(self):
        parse_auth(self.auth)  # a malformed login fails before anything loads


def register(sub) -> None:
    from stylealign.options import add_config_arguments

    p = sub.add_parser("studio", help="The persona loop in the browser: write, train, evaluate, compare, vote, "
                                      "retrain, export.",
                       description="Serve the studio on 127.0.0.1: personas, training and evaluation jobs (run one "
                                   "at a time as CLI subprocesses, kept in SQLite), the arena, votes back into DPO, "
                                   "and export.")
    add_config_arguments(p, StudioOptions)
    p.set_defaults(func=run)


def run(args) -> int:
    from stylealign.commands.arena import _check_address
    from stylealign.options import config_from_args
    from stylealign.studio import Studio

    args = config_from_args(args, StudioOptions)
    _check_address(args.host, args.port)
    studio = Studio.open(args.workspace, args.jobs)
    if studio.queue.recovered:
        print(f"{PROG}: job(s) {', '.join(map(str, studio.queue.recovered))} stopped with the last server: shown as "
              "failed; resume them in the Jobs tab", file=sys.stderr)
    arena = None
    if not args.no_arena:
        runs = [str(studio.inside(r)) for r in args.adapter] or [str(studio.runs_dir / r) for r in studio.runs()]
        arena = open_arena(runs, studio.inside(args.votes), args.base)
    serve(studio, arena, host=args.host, port=args.port, auth=args.auth)
    return 0


def open_arena(runs: list[str], votes: Path, base: str | None = None, generator=None):
    """Return the ArenaService for these runs (the baseline alone when there are none)."""
    from stylealign.arena.service import ArenaService
    from stylealign.generate import Generator, generator_for_runs

    if generator is None:
        generator = generator_for_runs(runs, base=base) if runs else Generator(base or "smollm2-135m")
    return ArenaService.from_runs(runs, votes, generator=generator)


def serve(studio, arena=None, host: str = "127.0.0.1", port: int = 7860, auth: str | None = None,
          block: bool = True):
    """Start the job runner and serve the studio; on exit the runner stops (a running job is marked failed)."""
    from stylealign.studio import MAX_UPLOAD_BYTES
    from stylealign.ui.app import launch_app
    from stylealign.ui.studio import build_studio

    studio.queue.start()
    demo = build_studio(studio, arena)
    print(f"\n== studio on http://{host}:{port} (Ctrl+C to stop)", file=sys.stderr)
    try:
        return launch_app(demo, host=host, port=port, auth=auth, block=block, allowed=[studio.runs_dir],
                          max_file_size=MAX_UPLOAD_BYTES)
    finally:
        if block:
            studio.queue.stop()
