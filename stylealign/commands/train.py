"""`stylealign train sft|dpo|all`: thin shell over stylealign.train.train_run."""

from __future__ import annotations

import argparse
import time

STAGES_BY_COMMAND = {"sft": ("sft",), "dpo": ("dpo",), "all": ("sft", "dpo")}


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

    p.add_argument("--persona", default="sharp-candid", help="Persona name under personas/ or a persona folder.")
    p.add_argument("--run", default=None, help="Run folder to write (default runs/<persona>-<stage>-<time>).")
    p.add_argument("--resume", action="store_true", help="Continue an interrupted run (its .partial folder).")
    p.add_argument("--overwrite", action="store_true", help="Replace an existing finished run folder.")
    p.add_argument("--data", action="append", default=None, metavar="FILE",
                   help="Train on these files instead of the persona's (repeatable; any supported format).")
    if dpo:
        p.add_argument("--init", default=None, metavar="RUN",
                       help="Start from this run's (SFT) adapter; it is also the frozen DPO reference.")
    add_recipe_arguments(p)


def run(args) -> int:
    from stylealign.config import recipe_from_args
    from stylealign.personas import load_persona
    from stylealign.train import train_run

    stages = STAGES_BY_COMMAND[args.stage]
    persona = load_persona(args.persona)
    recipe = recipe_from_args(args)
    run_dir = args.run or f"runs/{persona.name}-{args.stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    files = {stages[-1]: args.data} if args.data else None
    # Errors (bad data, a taken run folder, a diverged stage) become one `stylealign: error:` line in cli.main.
    out = train_run(persona, recipe, run_dir, stages=stages, resume=args.resume, overwrite=args.overwrite,
                    init_adapter=getattr(args, "init", None), data_files=files)
    print(f"run written to {out}")
    return 0
