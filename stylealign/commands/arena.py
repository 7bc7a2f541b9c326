"""`stylealign arena`: the side-by-side / blind-battle app, and `arena export-prefs` for DPO pairs."""

from __future__ import annotations

import errno
import socket
import sys
from pathlib import Path

from stylealign.errors import PROG, UserError


def register(subparsers) -> None:
    from stylealign.arena.settings import ArenaConfig, ExportConfig
    from stylealign.options import add_config_arguments

    p = subparsers.add_parser("arena", help="compare adapters with the baseline, vote blind, see ratings",
                              description="Open the arena app (Gradio) on 127.0.0.1.")
    add_config_arguments(p, ArenaConfig)
    p.set_defaults(func=run_arena)
    sub = p.add_subparsers(dest="arena_command", metavar="SUBCOMMAND")
    e = sub.add_parser("export-prefs", help="turn decisive votes into DPO preference rows (JSONL)")
    add_config_arguments(e, ExportConfig)
    e.set_defaults(func=run_export)


def run_arena(args) -> int:
    from stylealign.arena.service import ArenaService
    from stylealign.arena.settings import ArenaConfig
    from stylealign.options import config_from_args

    # Every check on the arguments comes before any model loads: a mistake fails in a second, not minutes.
    args = config_from_args(args, ArenaConfig)
    _check_runs(args.adapter, need_adapter=not (args.fake or args.backend))  # a server holds its own adapters
    _check_address(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.auth:
        print(f"{PROG}: warning: serving on {args.host} without --auth: anyone who can reach it can use it",
              file=sys.stderr)
    generator = None
    if args.fake:
        from stylealign.fakes import FakeGenerator

        generator = FakeGenerator(adapters=(), delay=0.03)
    elif args.backend:
        from stylealign.backend import open_backend

        generator = open_backend(args.backend)
    service = ArenaService.from_runs(args.adapter, args.votes, base=args.base, generator=generator, limits=args.limits)
    from stylealign.ui.app import build_app, launch_app  # gradio takes seconds to import: after the checks

    demo = build_app(service, concurrency=args.concurrency)
    launch_app(demo, host=args.host, port=args.port, share=args.share, auth=args.auth)
    return 0


def _check_runs(runs: list[str], need_adapter: bool) -> None:
    """Raise a UserError for an --adapter that is not a run folder (with an adapter, when one will be loaded)."""
    from stylealign.generate import adapter_dir

    for run in runs:
        try:
            if not Path(run).is_dir():
                raise FileNotFoundError("no such folder")
            if need_adapter:
                adapter_dir(run)
        except FileNotFoundError as e:
            raise UserError(f"--adapter {run}: not a run folder ({e}); pass a folder that `stylealign train` "
                            "wrote") from None


def _check_address(host: str, port: int) -> None:
    """Raise a UserError if the app cannot listen on host:port; asked before a model loads."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a closing port is free
            s.bind(address)
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise UserError(f"--port {port}: already in use on {host}; pass another --port, or stop the program "
                            "using it") from e
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); pass an address "
                        "of this machine as --host (default 127.0.0.1) and a --port it may use") from e


def run_export(args) -> int:
    from stylealign.arena.export import export_preferences
    from stylealign.arena.settings import ExportConfig
    from stylealign.options import config_from_args

    args = config_from_args(args, ExportConfig)
    n = export_preferences(args.export_votes, args.out, keep_system=args.keep_system,
                           multi_turn="skip" if args.skip_multi_turn else "last")
    print(f"wrote {n} preference rows to {args.out}")
    return 0
