"""`stylealign arena`: the side-by-side / blind-battle app, and `arena export-prefs` for DPO pairs."""

from __future__ import annotations

import sys
from pathlib import Path


def register(subparsers) -> None:
    from stylealign.arena.settings import ArenaConfig, ExportConfig, Limits
    from stylealign.config import add_config_arguments

    p = subparsers.add_parser("arena", help="compare adapters with the baseline, vote blind, see ratings",
                              description="Open the arena app (Gradio) on 127.0.0.1.")
    add_config_arguments(p, ArenaConfig)
    add_config_arguments(p.add_argument_group("input limits (enforced server-side)"), Limits)
    p.set_defaults(func=run_arena)
    sub = p.add_subparsers(dest="arena_command", metavar="SUBCOMMAND")
    e = sub.add_parser("export-prefs", help="turn decisive votes into DPO preference rows (JSONL)")
    add_config_arguments(e, ExportConfig)
    e.set_defaults(func=run_export)


def run_arena(args) -> int:
    from stylealign.arena.service import ArenaService
    from stylealign.arena.settings import ArenaConfig, Limits
    from stylealign.config import config_from_args
    from stylealign.ui.app import build_app, launch_app

    try:
        args, limits = config_from_args(args, ArenaConfig), config_from_args(args, Limits)
    except ValueError as e:
        print(f"arena: {e}", file=sys.stderr)
        return 2
    for run in args.adapter:
        if not Path(run).is_dir():
            print(f"arena: {run}: not a run folder", file=sys.stderr)
            return 2
    generator = None
    if args.fake:
        from stylealign.arena.fake import FakeGenerator

        generator = FakeGenerator(delay=0.03, words=40)
    elif args.backend:
        from stylealign.backend import open_backend

        try:
            generator = open_backend(args.backend)
        except ValueError as e:
            print(f"arena: {e}", file=sys.stderr)
            return 2
    service = ArenaService.from_runs(args.adapter, args.votes, base=args.base, generator=generator, limits=limits)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.auth:
        print(f"arena: warning: serving on {args.host} without --auth", file=sys.stderr)
    demo = build_app(service, concurrency=args.concurrency)
    launch_app(demo, host=args.host, port=args.port, share=args.share, auth=args.auth)
    return 0


def run_export(args) -> int:
    from stylealign.arena.export import export_preferences
    from stylealign.arena.settings import ExportConfig
    from stylealign.config import config_from_args

    args = config_from_args(args, ExportConfig)
    if not Path(args.export_votes).is_file():
        print(f"arena export-prefs: {args.export_votes}: no such vote file", file=sys.stderr)
        return 2
    n = export_preferences(args.export_votes, args.out, keep_system=args.keep_system,
                           multi_turn="skip" if args.skip_multi_turn else "last")
    print(f"wrote {n} preference rows to {args.out}")
    return 0
