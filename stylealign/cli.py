"""The `stylealign` command: a thin shell over package functions.

Each area registers its subcommands from `stylealign.commands.<area>`; heavy imports (torch,
transformers, gradio) happen inside the command functions so `stylealign --help` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

AREAS = ("personas", "synth", "train", "chat", "eval", "arena", "studio", "export", "bench", "quickstart")  # command modules


def build_parser() -> argparse.ArgumentParser:
    """Return the top-level parser with every area's subcommands registered."""
    parser = argparse.ArgumentParser(prog="stylealign", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--debug", action="store_true",
                        help="Show the full traceback of an error instead of its one-line message (any position).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for area in AREAS:
        importlib.import_module(f"stylealign.commands.{area}").register(sub)
    return parser


def _version() -> str:
    from stylealign import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    # Before torch loads OpenMP: idle threads spin on a free machine and sleep on a busy one (stylealign.omp).
    from stylealign import omp

    omp.choose()
    from stylealign.quiet import quiet

    quiet()
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]  # accepted anywhere, not only before the subcommand
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        _trl_flags(parser, args, unknown)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        _refuse_undecodable(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("stylealign: interrupted (a run resumes with --resume)", file=sys.stderr)
        return 130
    except Exception as e:
        return _fail(e, debug)


def _trl_flags(parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]) -> None:
    """Take `--sft.<field> VALUE` / `--dpo.<field> VALUE` for a TRL field the recipe has no name for (the recipe
    passes it to TRL's config, which validates it); anything else is argparse's "unrecognized arguments"."""
    rest = list(unknown)
    while rest:
        flag = rest.pop(0)
        name, _, value = flag[2:].partition("=") if flag.startswith("--") else ("", "", "")
        if not hasattr(args, "recipe") or not name.startswith(("sft.", "dpo.")) or not (value or rest):
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        section, _, field = name.partition(".")
        setattr(args, f"recipe:{section}.{field.replace('-', '_')}", value or rest.pop(0))


def _refuse_undecodable(args: argparse.Namespace) -> None:
    """Refuse a path or value that is not valid UTF-8 before any work: manifests, records and reports are
    UTF-8 JSON, so such a path would train for minutes and then fail while writing them."""
    from stylealign.errors import UserError

    for name, value in vars(args).items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(item, str):
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    shown = item.encode("utf-8", "backslashreplace").decode()
                    raise UserError(f"{name.split(':', 1)[-1]} {shown}: not valid UTF-8; rename the file or "
                                    f"folder (or pass another) to a UTF-8 name") from None


def _fail(exc: Exception, debug: bool) -> int:
    """Print a user error as `stylealign: error: <message>` and return its exit code; a bug prints one line
    with the path of its saved traceback and returns 1; --debug re-raises either."""
    from stylealign.errors import PROG, describe, report_bug

    if debug:
        raise exc
    known = describe(exc)
    if known is None:
        print(f"{PROG}: {report_bug(exc)}", file=sys.stderr)
        return 1
    message, code = known
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
