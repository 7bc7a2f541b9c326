"""`stylealign synth NAME`: grow a persona's preference (and SFT) data with a teacher and a student."""

from __future__ import annotations

import time
from dataclasses import dataclass

from stylealign.options import REQUIRED, option

DESCRIPTION = """The teacher answers in character (chosen; SFT rows with --sft-out), the student (the base model
to be trained, no persona prompt) answers the same conversations (rejected, on-policy). Filters, each counted
in the summary: near-duplicates (of each other, the persona's data, the eval suites), empty / truncated /
unfinished answers, wrong language, repetition, chosen ≈ rejected, pairs that miss the persona's declared
targets. Rows are appended per batch with fsync; a rerun continues where the last one stopped."""

@dataclass
class SynthTarget:
    """The persona `synth` grows (its other options are SynthConfig's)."""

    persona: str = option(REQUIRED, "persona name or folder", positional=True)


def register(sub) -> None:
    from stylealign.options import add_config_arguments
    from stylealign.synth import SynthConfig

    p = sub.add_parser("synth", help="Build preference pairs (teacher in character vs the base model) for a persona.",
                       description=DESCRIPTION)
    add_config_arguments(p, SynthTarget)
    add_config_arguments(p, SynthConfig)
    p.set_defaults(func=run)


def run(args) -> int:
    from stylealign.options import config_from_args
    from stylealign.personas import load_persona
    from stylealign.synth import SynthConfig, run_synth

    started = time.monotonic()
    persona = load_persona(args.persona)
    summary = run_synth(persona, config_from_args(args, SynthConfig))
    print(summary.format())
    print(f"wall time {time.monotonic() - started:.0f} s; check the data with `stylealign personas validate {persona.name}`")
    return 0
