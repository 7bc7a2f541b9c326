"""`stylealign train sft|dpo|all`: thin shell over stylealign.train.train_run."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

from stylealign.errors import RunFailed
from stylealign.options import add_config_arguments, config_from_args, option

STAGES_BY_COMMAND = {"sft": ("sft",), "dpo": ("dpo",), "all": ("sft", "dpo")}


@dataclass
class TrainOptions:
    """`stylealign train sft|all`: the persona, the run folder and its data (the recipe has its own flags)."""

    persona: str = option("sharp-candid", "Persona name under personas/ or a persona folder.")
    run: str | None = option(None, "Run folder to write (default runs/<persona>-<stage>-<time>).")
    resume: bool = option(False, "Continue an interrupted run (its .partial folder).", flag="--resume")
    overwrite: bool = option(False, "Replace an existing finished run folder.", flag="--overwrite")
    data: list = option([], "Train on these files instead of the persona's (repeatable; any supported format).",
                        action="append", metavar="FILE")
    best_effort: bool = option(False, "Exit 0 even when no checkpoint met the selection rule (the run is published "
                               "with a red flag either way).", flag="--best-effort")


@dataclass
class DPOTrainOptions(TrainOptions):
    """`stylealign train dpo`: also the run to start from."""

    init: str | None = option(None, "Start from this run's (SFT) adapter; it is also the frozen DPO reference.",
                              metavar="RUN")


def register(sub) -> None:
    parser = sub.add_parser("train", help="Train a persona's style adapter (LoRA SFT, then DPO).")
    stages = parser.add_subparsers(dest="stage", metavar="STAGE", required=True)
    helps = {"sft": "LoRA SFT on the persona's conversations.",
             "dpo": "DPO on the persona's preference pairs (from an SFT run with --init, or a fresh LoRA).",
             "all": "SFT, then DPO continuing from the SFT adapter (frozen copy as reference)."}
    for name, text in helps.items():
        p = stages.add_parser(name, help=text, description=text)
        add_train_arguments(p, dpo=name == "dpo")
        p.set_defaults(func=run)


def add_train_arguments(p: argparse.ArgumentParser, dpo: bool = False) -> None:
    from stylealign.config import add_recipe_arguments

    add_config_arguments(p, DPOTrainOptions if dpo else TrainOptions)
    add_recipe_arguments(p)


def run(args) -> int:
    from stylealign.config import recipe_from_args
    from stylealign.personas import load_persona
    from stylealign.train import train_run

    stages = STAGES_BY_COMMAND[args.stage]
    recipe = recipe_from_args(args)
    options = config_from_args(args, DPOTrainOptions if args.stage == "dpo" else TrainOptions)
    persona = load_persona(options.persona)
    run_dir = options.run or f"runs/{persona.name}-{args.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    files = {stages[-1]: options.data} if options.data else None
    # Errors (bad data, a taken run folder, a diverged stage) become one `stylealign: error:` line in cli.main.
    out = train_run(persona, recipe, run_dir, stages=stages, resume=options.resume, overwrite=options.overwrite,
                    init_adapter=getattr(options, "init", None), data_files=files)
    print(f"run written to {out}")
    check_red_flags(out, options.best_effort)
    return 0


def check_red_flags(run_dir, best_effort: bool) -> None:
    """Print the run's red flags; raise RunFailed (exit 1) when there are any, unless `best_effort`."""
    import sys

    from stylealign.manifest import read_manifest

    flags = read_manifest(run_dir).red_flags
    for f in flags:
        print(f"stylealign: red flag: {f['code']}: {f['message']}", file=sys.stderr)
    if flags and not best_effort:
        raise RunFailed(f"{run_dir} has red flags; pass --best-effort to accept it")
