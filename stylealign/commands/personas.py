"""`stylealign personas list|show|validate|stats|new`: inspect personas, check their data, scaffold new ones."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from dataclasses import dataclass

from stylealign.options import REQUIRED, add_config_arguments, config_from_args, option

ROOT_HELP = "personas folder (default: $STYLEALIGN_PERSONAS or ./personas upward)"


@dataclass
class Root:
    """The `personas` command's own flag (before the subcommand)."""

    root: str | None = option(None, ROOT_HELP)


@dataclass
class Selection:
    """Which personas a subcommand works on: one by name, or (without a name) every one under the root."""

    name: str | None = option(None, "persona name or folder (default: every persona)", positional=True, nargs="?")
    root: str | None = option(None, ROOT_HELP, cli=False)  # Root's flag on the parent command, set by selection()


@dataclass
class OneSelection(Selection):
    name: str = option(REQUIRED, "persona name or folder", positional=True)


@dataclass
class StatsOptions(Selection):
    """`personas stats`: how to print, and whether to update the data card."""

    markdown: bool = option(False, "print Markdown tables (for the data card)", flag="--markdown", exclusive="format")
    json: bool = option(False, "print JSON", flag="--json", exclusive="format")
    card: bool = option(False, "also write the tables into the persona's README.md (between the stats markers)",
                        flag="--card")


def register(subparsers) -> None:
    """Add the `personas` command and its subcommands to the top-level parser."""
    from stylealign.scaffold import PersonaDraft

    parser = subparsers.add_parser("personas", help="list, show, validate personas and their data",
                                   description=__doc__.splitlines()[0])
    add_config_arguments(parser, Root)
    sub = parser.add_subparsers(dest="personas_command", metavar="SUBCOMMAND", required=True)
    commands = (("list", "list the personas", None, cmd_list),
                ("show", "print a persona's spec and data files", OneSelection, cmd_show),
                ("validate", "check persona.yaml and all data; exit 1 listing every problem", Selection, cmd_validate),
                ("new", "scaffold personas/NAME (asks for what the flags leave out, on a terminal)", PersonaDraft,
                 cmd_new),
                ("stats", "data statistics (counts, categories, languages, lengths, ...)", StatsOptions, cmd_stats))
    for name, text, options, func in commands:
        p = sub.add_parser(name, help=text)
        if options is not None:
            add_config_arguments(p, options)
        p.set_defaults(func=func)


def selection(args: argparse.Namespace, cls=Selection):
    """Return the subcommand's options `cls` from the flags, with the `personas --root` folder."""
    options = config_from_args(args, cls)
    options.root = args.root
    return options


def _personas(options: Selection) -> list:
    """Return the persona named in the options (or all of them); PersonaError propagates to the caller."""
    from stylealign.personas import list_personas, load_persona

    if options.name:
        return [load_persona(options.name, root=options.root)]
    return list_personas(options.root)


def cmd_list(args: argparse.Namespace) -> int:
    """Print one line per persona: name, adapter or not, languages, file counts, title."""

    personas = _personas(Selection(root=args.root))
    for p in personas:
        files = f"sft {len(p.sft_files())} / pref {len(p.preference_files())} files"
        kind = "adapter" if p.adapter else "base   "
        print(f"{p.name:<16} {kind}  {','.join(p.languages):<6} {files:<22} {p.title}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    """Print a persona's fields, system prompts and the files each data glob matches."""
    from stylealign.data import show_path

    (p,) = _personas(selection(args, OneSelection))
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

    personas = _personas(selection(args))
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

    from stylealign.errors import UserError
    from stylealign.personas import PersonaError, personas_root
    from stylealign.scaffold import PersonaDraft, check_draft, write_persona

    try:
        root = personas_root(args.root)
    except PersonaError:
        root = Path("personas")
    draft = config_from_args(args, PersonaDraft)
    if sys.stdin.isatty():
        _ask(draft)
    problems = check_draft(draft, root)
    if problems:
        raise UserError("\n".join(f"personas new: {p}" for p in problems))
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

    args = selection(args, StatsOptions)
    personas = _personas(args)
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
