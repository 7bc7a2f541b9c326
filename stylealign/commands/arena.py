"""`stylealign arena`: the side-by-side / blind-battle app, and `arena export-prefs` for DPO pairs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_VOTES = ".stylealign/arena/votes.sqlite"


def register(subparsers) -> None:
    p = subparsers.add_parser("arena", help="compare adapters with the baseline, vote blind, see ratings",
                              description="Open the arena app (Gradio) on 127.0.0.1.")
    p.add_argument("--adapter", metavar="RUN", nargs="+", action="extend", default=[],
                   help="run folder(s) to load as contestants (repeatable; the baseline is always in)")
    p.add_argument("--base", default="smollm2-135m", help="base model (alias, HF folder or hub id)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default: localhost only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--share", action="store_true", help="also open a public Gradio share link")
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require this login")
    p.add_argument("--votes", default=DEFAULT_VOTES, help=f"SQLite vote file (default {DEFAULT_VOTES})")
    p.add_argument("--concurrency", type=int, default=4, help="events served at once (generation is one at a time)")
    p.add_argument("--fake", action="store_true", help=argparse.SUPPRESS)  # UI work without a model
    p.set_defaults(func=run_arena)
    sub = p.add_subparsers(dest="arena_command", metavar="SUBCOMMAND")
    e = sub.add_parser("export-prefs", help="turn decisive votes into DPO preference rows (JSONL)")
    e.add_argument("--votes", dest="export_votes", default=DEFAULT_VOTES, help="SQLite vote file")
    e.add_argument("--out", required=True, help="output JSONL (written atomically)")
    e.add_argument("--keep-system", action="store_true", help="keep the persona system prompt in the prompt")
    e.add_argument("--skip-multi-turn", action="store_true", help="export single-turn battles only")
    e.set_defaults(func=run_export)


def run_arena(args) -> int:
    from stylealign.arena.service import ArenaService
    from stylealign.ui.app import build_app, launch_app

    for run in args.adapter:
        if not Path(run).is_dir():
            print(f"arena: {run}: not a run folder", file=sys.stderr)
            return 2
    generator = None
    if args.fake:
        from stylealign.arena.fake import FakeGenerator

        generator = FakeGenerator(delay=0.03, words=40)
    service = ArenaService.from_runs(args.adapter, args.votes, base=args.base, generator=generator)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.auth:
        print(f"arena: warning: serving on {args.host} without --auth", file=sys.stderr)
    demo = build_app(service, concurrency=args.concurrency)
    launch_app(demo, host=args.host, port=args.port, share=args.share, auth=args.auth)
    return 0


def run_export(args) -> int:
    from stylealign.arena.export import export_preferences

    if not Path(args.export_votes).is_file():
        print(f"arena export-prefs: {args.export_votes}: no such vote file", file=sys.stderr)
        return 2
    n = export_preferences(args.export_votes, args.out, keep_system=args.keep_system,
                           multi_turn="skip" if args.skip_multi_turn else "last")
    print(f"wrote {n} preference rows to {args.out}")
    return 0
