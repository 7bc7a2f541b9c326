"""`stylealign personas list|show|validate|stats`: inspect personas and check their data."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def register(subparsers) -> None:
    """Add the `personas` command and its subcommands to the top-level parser."""
    parser = subparsers.add_parser("personas", help="list, show, validate personas and their data",
                                   description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="personas folder (default: $STYLEALIGN_PERSONAS or ./personas upward)")
    sub = parser.add_subparsers(dest="personas_command", metavar="SUBCOMMAND", required=True)

    sub.add_parser("list", help="list the personas").set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="print a persona's spec and data files")
    show.add_argument("name", help="persona name or folder")
    show.set_defaults(func=cmd_show)

    validate = sub.add_parser("validate", help="check persona.yaml and all data; exit 1 listing every problem")
    validate.add_argument("name", nargs="?", help="persona name or folder (default: every persona)")
    validate.set_defaults(func=cmd_validate)

    stats = sub.add_parser("stats", help="data statistics (counts, categories, languages, lengths, ...)")
    stats.add_argument("name", nargs="?", help="persona name or folder (default: every persona)")
    fmt = stats.add_mutually_exclusive_group()
    fmt.add_argument("--markdown", action="store_true", help="print Markdown tables (for the data card)")
    fmt.add_argument("--json", action="store_true", help="print JSON")
    stats.add_argument("--card", action="store_true",
                       help="also write the tables into the persona's README.md (between the stats markers)")
    stats.set_defaults(func=cmd_stats)


def _personas(args) -> list:
    """Return the persona named in args (or all of them); PersonaError propagates to the caller."""
    from stylealign.personas import list_personas, load_persona

    if getattr(args, "name", None):
        return [load_persona(args.name, root=args.root)]
    return list_personas(args.root)


def _fail(error: Exception) -> int:
    print(error, file=sys.stderr)
    return 1


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per persona: name, adapter or not, languages, file counts, title."""
    from stylealign.personas import PersonaError

    try:
        personas = _personas(args)
    except PersonaError as e:
        return _fail(e)
    for p in personas:
        files = f"sft {len(p.sft_files())} / pref {len(p.preference_files())} files"
        kind = "adapter" if p.adapter else "base   "
        print(f"{p.name:<16} {kind}  {','.join(p.languages):<6} {files:<22} {p.title}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a persona's fields, system prompts and the files each data glob matches."""
    from stylealign.data import show_path
    from stylealign.personas import PersonaError

    try:
        (p,) = _personas(args)
    except PersonaError as e:
        return _fail(e)
    print(f"{p.name}: {p.title}   ({p.file})")
    print(f"adapter: {p.adapter}   languages: {', '.join(p.languages)}   bake_system_prompt: {p.bake_system_prompt}")
    print(f"\n{p.description}\n\ntraits: {', '.join(p.traits)}")
    for label, items in (("do", p.style_do), ("don't", p.style_dont)):
        print(f"{label}:" + "".join(f"\n  - {item}" for item in items))
    print(f"\nsystem prompt:\n  {p.system_prompt}")
    if p.system_prompt_zh:
        print(f"system prompt (zh):\n  {p.system_prompt_zh}")
    for kind in ("sft", "preference", "baseline", "eval"):
        patterns = getattr(p.data, kind)
        if patterns:
            print(f"\ndata.{kind}: {', '.join(patterns)}")
            print("".join(f"  {show_path(f)}\n" for f in p.files(kind)).rstrip() or "  (no files)")
    if p.requirements:
        print("\nrequirements: " + ", ".join(f"{k} {v}" for k, v in p.requirements.items()))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """Check each persona and its data; print the report; return 1 when anything is wrong."""
    from stylealign.checker import check_persona
    from stylealign.personas import PersonaError

    try:
        personas = _personas(args)
    except PersonaError as e:
        return _fail(e)
    failed = 0
    for persona in personas:
        report = check_persona(persona)
        print(report.format(), file=sys.stdout if report.ok else sys.stderr)
        failed += not report.ok
    return 1 if failed else 0


def cmd_stats(args: argparse.Namespace) -> int:
    """Print each persona's data statistics (text, Markdown or JSON); --card updates its README.md."""
    from stylealign.checker import format_stats, persona_stats, update_card
    from stylealign.personas import PersonaError

    try:
        personas = _personas(args)
    except PersonaError as e:
        return _fail(e)
    for persona in personas:
        # paths in the tables are shown relative to the repo (the personas folder's parent), wherever we run
        with contextlib.chdir(persona.path.resolve().parent.parent):
            stats = persona_stats(persona)
        if args.json:
            print(json.dumps(stats, default=_jsonable, ensure_ascii=False, indent=2))
        else:
            print(("## " if args.markdown else "") + f"{persona.name}\n\n" + format_stats(stats, args.markdown))
        if args.card:
            update_card(persona.path / "README.md", format_stats(stats, markdown=True), persona.title)
            print(f"updated {persona.path / 'README.md'}", file=sys.stderr)
        if stats["problems"]:
            print(f"note: {stats['problems']} problem(s) left rows out; run `stylealign personas validate "
                  f"{persona.name}`", file=sys.stderr)
    return 0


def _jsonable(value):
    """Return a JSON-friendly form of the dataclasses in the stats (similar pairs)."""
    from dataclasses import asdict, is_dataclass

    return asdict(value) if is_dataclass(value) else str(value)
