"""`stylealign personas list|show|validate|stats|new`: inspect personas, check their data, scaffold new ones."""

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

    new = sub.add_parser("new", help="scaffold personas/NAME (asks for what the flags leave out, on a terminal)")
    new.add_argument("name", help="folder name, e.g. warm-tutor")
    new.add_argument("--title")
    new.add_argument("--language", action="append", default=None, help="en or zh (repeatable; default en)")
    new.add_argument("--description")
    new.add_argument("--trait", action="append", default=[], help="repeatable")
    new.add_argument("--do", action="append", default=[], help="a style rule to follow (repeatable)")
    new.add_argument("--dont", action="append", default=[], help="a style rule to avoid (repeatable)")
    new.add_argument("--system-prompt")
    new.add_argument("--system-prompt-zh")
    new.add_argument("--target", action="append", default=[], metavar="METRIC=up|down",
                     help="a metric that defines the style and its direction (repeatable), e.g. asks_back=up")
    new.set_defaults(func=cmd_new)

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


QUESTIONS = {"title": "Title (e.g. Warm Tutor)", "description": "Describe the persona in a sentence or two",
             "system_prompt": "System prompt (English)", "system_prompt_zh": "System prompt (Chinese)"}


def cmd_new(args: argparse.Namespace) -> int:
    """Scaffold a persona folder from flags, asking on a terminal for whatever they leave out."""
    from pathlib import Path

    from stylealign.personas import PersonaError, personas_root
    from stylealign.scaffold import PersonaDraft, check_draft, write_persona

    try:
        root = personas_root(args.root)
    except PersonaError:
        root = Path("personas")
    draft = PersonaDraft(args.name, args.title or "", tuple(args.language or ["en"]), args.description or "",
                         tuple(args.trait), tuple(args.do), tuple(args.dont), args.system_prompt or "",
                         args.system_prompt_zh or "", dict(t.partition("=")[::2] for t in args.target))
    if sys.stdin.isatty():
        _ask(draft)
    problems = check_draft(draft, root)
    if problems:
        return _fail("\n".join(f"personas new: {p}" for p in problems))
    folder = write_persona(draft, root)
    print(f"created {folder}/ (persona.yaml, data/, eval/, README.md)\nnext: write data/sft_*.jsonl, then "
          f"`stylealign synth {draft.name} --teacher ...`, `stylealign personas validate {draft.name}`")
    return 0


def _ask(draft) -> None:
    """Fill the draft's missing fields (and empty lists) from terminal answers."""
    for key in draft.missing():
        setattr(draft, key, input(f"{QUESTIONS[key]}: ").strip())
    for key, label in (("traits", "Traits"), ("do", "Style: do"), ("dont", "Style: don't")):
        if not getattr(draft, key):
            answer = input(f"{label} (separate with ';', empty to skip): ")
            setattr(draft, key, tuple(x.strip() for x in answer.split(";") if x.strip()))


def cmd_stats(args: argparse.Namespace) -> int:
    """Print each persona's data statistics (text, Markdown or JSON); --card updates its README.md."""
    from stylealign.datacard import format_stats, persona_stats, update_card
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
