"""`stylealign personas new NAME`: scaffold a persona folder from a few answers.

Writes `personas/NAME/persona.yaml` (every field commented), an empty `data/` folder and a data card
stub (`README.md` with the stats markers `personas stats --card` fills). Nothing is overwritten.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from stylealign.options import REQUIRED, option

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class PersonaDraft:
    """The answers a new persona is written from (`personas new`'s flags come from these fields; check_draft
    lists what is wrong with them)."""

    name: str = option(REQUIRED, "folder name, e.g. warm-tutor", positional=True)
    title: str = option("", "title, e.g. Warm Tutor")
    languages: tuple[str, ...] = option(("en",), "en or zh (repeatable; default en)", flag="--language",
                                        action="append", metavar="LANGUAGE")
    description: str = option("", "the persona in a sentence or two")
    traits: tuple[str, ...] = option((), "repeatable", flag="--trait", action="append", metavar="TRAIT")
    do: tuple[str, ...] = option((), "a style rule to follow (repeatable)", action="append", metavar="DO")
    dont: tuple[str, ...] = option((), "a style rule to avoid (repeatable)", action="append", metavar="DONT")
    system_prompt: str = option("", "the system prompt (English)")
    system_prompt_zh: str = option("", "the system prompt (Chinese; needed with --language zh)")
    targets: dict[str, str] = option({}, "a metric that defines the style and its direction (repeatable), e.g. "
                                     "asks_back=up", flag="--target", action="append", metavar="METRIC=up|down")

    def __post_init__(self):
        """Normalise what the flags give (lists; None for a flag left out; METRIC=DIRECTION strings)."""
        for key in ("title", "description", "system_prompt", "system_prompt_zh"):
            setattr(self, key, getattr(self, key) or "")
        self.languages = tuple(self.languages or ("en",))
        self.traits, self.do, self.dont = tuple(self.traits), tuple(self.do), tuple(self.dont)
        if not isinstance(self.targets, dict):
            self.targets = dict(t.partition("=")[::2] for t in self.targets)

    def missing(self) -> list[str]:
        """Return the required fields still empty."""
        need = ["title", "description", "system_prompt"] + (["system_prompt_zh"] if "zh" in self.languages else [])
        return [k for k in need if not getattr(self, k).strip()]


def check_draft(draft: PersonaDraft, root: Path) -> list[str]:
    """Return every problem with a draft (bad name, existing folder, unknown language/metric, missing fields)."""
    from stylealign.evaluate.metrics import metric_table
    from stylealign.personas import DIRECTIONS, SUPPORTED_LANGUAGES

    problems = []
    if not NAME.fullmatch(draft.name):
        problems.append(f"name: {draft.name!r} must be lower-case letters, digits, '-' or '_' (e.g. warm-tutor)")
    elif (root / draft.name).exists():
        problems.append(f"{root / draft.name}: already exists (pick another name or edit its persona.yaml)")
    problems += [f"--language: unsupported {lg!r} (supported: {', '.join(SUPPORTED_LANGUAGES)})"
                 for lg in draft.languages if lg not in SUPPORTED_LANGUAGES]
    known = metric_table()
    for metric, direction in draft.targets.items():
        if metric not in known:
            problems.append(f"--target {metric}: unknown metric (see stylealign/evaluate/metrics.py)")
        elif direction not in DIRECTIONS:
            problems.append(f"--target {metric}={direction}: direction must be up or down")
    problems += [f"--{k.replace('_', '-')}: missing" for k in draft.missing()]
    return problems


def _q(text: str) -> str:
    """Return `text` as a YAML scalar (a JSON string is valid YAML and needs no escaping rules of its own)."""
    return json.dumps(" ".join(text.split()), ensure_ascii=False)


def _list(items) -> str:
    return "[" + ", ".join(_q(i) for i in items) + "]" if items else "[]"


def persona_yaml(draft: PersonaDraft, kit_suites: bool) -> str:
    """Return the commented persona.yaml for a draft."""
    zh = f"system_prompt_zh: {_q(draft.system_prompt_zh)}\n" if "zh" in draft.languages else \
        "# system_prompt_zh: \"...\"   # add with zh to languages\n"
    if draft.targets:
        targets = "targets:\n" + "".join(f"  {m}: {d}\n" for m, d in draft.targets.items())
    else:
        targets = "# targets:\n#   hedge_rate: down\n#   asks_back: up\n"
    evals = ("  eval: [../../eval/suites/*.jsonl]      # held-out suites the data must not overlap\n" if kit_suites else "")
    return f"""# {draft.title}: a persona for stylealign. Field reference: personas/README.md.
name: {draft.name}                  # must equal the folder name
title: {_q(draft.title)}
languages: [{', '.join(draft.languages)}]            # en, zh
description: {_q(draft.description)}
traits: {_list(draft.traits)}
style:
  do: {_list(draft.do)}
  dont: {_list(draft.dont)}
# Used at inference time, and by `stylealign synth` to put a teacher model in character.
system_prompt: {_q(draft.system_prompt)}
{zh}bake_system_prompt: false   # true: prepend the system prompt to every training row
adapter: true
data:                         # globs relative to this folder
  sft: [data/sft_*.jsonl]                 # conversations in character (write them, or `stylealign synth --sft-out`)
  preference: [data/pref_*.jsonl]         # `stylealign synth` writes data/pref_synth.jsonl
{evals}# Held-out prompts of your own (eval-suite rows in eval/): add eval/*.jsonl to data.eval above too.
# eval_suites: [eval/*.jsonl]   # what `stylealign eval` uses by default (else the kit's suites)
# The metrics that define the style and the way it should move (the report's checkmarks follow them;
# synth drops pairs whose chosen answer loses on them). Names: stylealign/evaluate/metrics.py, or a
# lexicon of your own under lexicons: (see personas/README.md).
{targets}requirements:                 # what `stylealign personas validate` enforces
  sft_min: 20
  pref_min: 20
  near_duplicate_max: 0.75
"""


def card_stub(draft: PersonaDraft) -> str:
    """Return the data card stub; `stylealign personas stats NAME --card` fills the tables."""
    return (f"# {draft.title}: data card\n\n{draft.description}\n\n## How the data was made\n\n"
            "(Who wrote the SFT conversations; which teacher and student `stylealign synth` used; what was filtered.)\n\n"
            "## Statistics\n\n<!-- stats:start -->\n<!-- stats:end -->\n")


def write_persona(draft: PersonaDraft, root: Path) -> Path:
    """Create root/NAME with persona.yaml, data/, eval/ and README.md; return the folder."""
    folder = root / draft.name
    kit_suites = any((root.resolve().parent / "eval" / "suites").glob("*.jsonl"))
    (folder / "data").mkdir(parents=True)
    (folder / "eval").mkdir()
    (folder / "persona.yaml").write_text(persona_yaml(draft, kit_suites), encoding="utf-8")
    (folder / "README.md").write_text(card_stub(draft), encoding="utf-8")
    return folder
