"""`stylealign eval`: thin shell over stylealign.evaluate.run_eval (baseline vs adapters, scored in layers)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from stylealign.commands.chat import QUANT_HELP, SAMPLING_GROUP, SamplingOptions
from stylealign.errors import NotFound
from stylealign.evaluate.config import EvalConfig
from stylealign.options import REQUIRED, option

DESCRIPTION = """Generate answers from the base model and each adapter (optionally at several LoRA strengths)
for every prompt in the suites, score them (L0 style markers, L1 classifier/content/retention/robustness/
truth, optional L2 judge) with bootstrap CIs overall, per language and per category, and write
report.json, report.md, answers.jsonl and plots. --fail-under/--fail-over turn it into a CI gate
(exit 1 when a gate fails). Gate metric names: see stylealign/evaluate/gate.py or SCHEMA.md."""


@dataclass
class EvalOptions:
    """`stylealign eval`'s options: what to evaluate and where, how to score (`scoring`) and sample (`sampling`).
    `persona` and `system_prompt` here are what the user asked for; the scoring config gets what they resolve to."""

    adapter: list = option(REQUIRED, "Run folder (runs/<run> or its name) or adapter folder; repeatable.",
                           action="append", metavar="RUN")
    suite: list = option([], "Eval suite JSONL (repeatable; default: the persona's eval_suites, else style_en, "
                         "style_zh, known_answers).", action="append", metavar="FILE")
    judge: str | None = option(None, "Optional pairwise judge (never the small base model).",
                               metavar="hf:PATH|openai:URL#MODEL")
    backend: str | None = option(None, "Generate on an OpenAI-compatible server (vLLM, llama.cpp) instead of in this "
                                 "process: BASE_MODEL is the baseline's model name there, each run's adapter is served "
                                 "under the run folder's name (stylealign serve, vllm --lora-modules NAME=RUN/adapter). "
                                 "Key: $STYLEALIGN_API_KEY.", metavar="openai:URL#BASE_MODEL")
    out: str | None = option(None, "Output folder (default runs/<first run>/eval).", metavar="DIR")
    resume: bool = option(False, "Continue the interrupted evaluation in --out (its answers.progress.jsonl; same "
                          "settings).", flag="--resume")
    fail_under: list = option([], "Exit 1 if METRIC < VALUE for any adapter (repeatable), e.g. p_persona.diff=0.2.",
                              action="append", metavar="METRIC=VALUE")
    fail_over: list = option([], "Exit 1 if METRIC > VALUE for any adapter (repeatable), e.g. retention.ppl_ratio=1.2.",
                             action="append", metavar="METRIC=VALUE")
    base: str | None = option(None, "Base model (default: the runs' own, from their manifests).")
    quant: str | None = option(None, QUANT_HELP, choices=("nf4", "none"))
    persona: str | None = option(None, "Persona whose preference pairs train the style classifier (default: the "
                                 "run's persona, else sharp-candid).")
    system_prompt: str = option("auto", "System prompt for baseline AND adapter: auto = the persona's if the run baked "
                                "it into training, persona = always, none = never.", choices=("auto", "persona", "none"))
    scoring: EvalConfig = option(EvalConfig(), "Scoring.", group="scoring (stylealign.evaluate.EvalConfig)")
    sampling: SamplingOptions = option(SamplingOptions(), "Sampling.", group=SAMPLING_GROUP)

    def __post_init__(self):
        from stylealign.evaluate.gate import parse_spec

        for spec in self.fail_under + self.fail_over:  # a bad gate fails now, not after minutes of generation
            parse_spec(spec)


def register(sub) -> None:
    from stylealign.options import add_config_arguments

    p = sub.add_parser("eval", help="Measure what an adapter changed vs the base model (report + CI gates).",
                       description=DESCRIPTION)
    add_config_arguments(p, EvalOptions)
    p.set_defaults(func=run)


def resolve_run(name: str) -> str:
    """Return an existing run/adapter folder for `name` (a path, or a name under runs/)."""
    for candidate in (Path(name), Path("runs") / name):
        if candidate.is_dir():
            return str(candidate)
    raise NotFound(f"{name}: no such run folder (looked at {name} and runs/{name})")


def system_prompts(mode: str, manifest, persona) -> dict | None:
    """Return {language: system prompt} for `--system-prompt` mode (the run's RunManifest), or None."""
    if mode == "none" or (mode == "auto" and not manifest.bake_system_prompt):
        return None
    if mode == "auto":
        en = manifest.system_prompt
        return {"en": en, "zh": manifest.system_prompt_zh or en} if en else None
    return {"en": persona.system_prompt_for("en"), "zh": persona.system_prompt_for("zh")} if persona else None


def _persona(name: str):
    """Return the loaded persona, or None when it cannot be loaded (the classifier then reads raw files)."""
    try:
        from stylealign.personas import load_persona

        return load_persona(name)
    except Exception:
        return None


def default_suites(persona, kit_suites) -> list[str]:
    """Return the persona's own held-out suites (persona.yaml eval_suites) when it declares them, else the kit's."""
    own = [str(f) for f in persona.eval_suite_files()] if persona is not None else []
    return own or [s for s in kit_suites if Path(s).exists()]


def _persona_text(persona) -> str:
    """Return the persona description given to a judge."""
    from stylealign.evaluate.judge import DEFAULT_PERSONA

    if persona is None:
        return DEFAULT_PERSONA
    return " ".join(persona.description.split()) + "\nDo: " + "; ".join(persona.style_do) + "\nDon't: " + "; ".join(persona.style_dont)


def _generator(args, runs: list[str]):
    """Return the in-process Generator for the runs, or the --backend server with the runs registered."""
    if args.backend:
        from stylealign.backend import backend_for_runs

        return backend_for_runs(args.backend, runs)
    from stylealign.generate import generator_for_runs

    return generator_for_runs(runs, base=args.base, quant=args.quant)


def run(args) -> int:
    from dataclasses import replace

    from stylealign.evaluate.gate import describe_failures
    from stylealign.evaluate.io import DEFAULT_SUITES
    from stylealign.evaluate.judge import make_judge
    from stylealign.evaluate.report import headline
    from stylealign.evaluate.resume import check_judge
    from stylealign.evaluate.run import run_eval
    from stylealign.manifest import read_manifest
    from stylealign.options import config_from_args

    # Bad specs, values, folders or a dead judge fail here, before minutes of generation, as one line (cli.main).
    args = config_from_args(args, EvalOptions)
    generation = args.sampling.generation_config()
    runs = [resolve_run(a) for a in args.adapter]
    manifest = read_manifest(runs[0])
    persona_name = args.persona or manifest.persona_name or "sharp-candid"
    persona = _persona(persona_name)
    base = args.base or manifest.base_name
    judge = make_judge(args.judge, base_model=base, persona=_persona_text(persona)) if args.judge else None
    check_judge(judge, args.judge)
    gen = _generator(args, runs)
    names = gen.adapter_names
    out = Path(args.out or Path(runs[0]) / "eval")
    config = replace(args.scoring, generation=generation, seed=generation.seed,
                     persona=persona_name, system_prompt=system_prompts(args.system_prompt, manifest, persona))
    report = run_eval(gen, names, args.suite or default_suites(persona, DEFAULT_SUITES), config, judge=judge,
                      judge_spec=args.judge, out=out, runs=dict(zip(names, runs)), base_model=gen.base,
                      fail_under=args.fail_under, fail_over=args.fail_over, resume=args.resume)
    print(headline(report))
    print(f"report: {out / 'report.md'}")
    if "gate" not in report:
        return 0
    if not report["gate"]["passed"]:
        print(describe_failures(report["gate"]), file=sys.stderr)
        return 1
    print(f"gates passed ({len(report['gate']['checks'])} checks)")
    return 0
