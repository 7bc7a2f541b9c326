"""`stylealign quickstart`: the README's main job — train, compare, evaluate, open the arena."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stylealign.errors import ConfigError, RunFailed
from stylealign.options import add_config_arguments, config_from_args, option

DEFAULT_RUN = "runs/sharp-candid-quickstart"
SUITES = ("eval/suites/style_en.jsonl", "eval/suites/style_zh.jsonl", "eval/suites/known_answers.jsonl")
SMOKE = "eval/suites/smoke.jsonl"  # the held-out prompts of the side-by-side comparison


@dataclass
class QuickstartOptions:
    """`stylealign quickstart`: which persona and recipe, where the run goes, what to do after training."""

    persona: str = option("sharp-candid", "Persona name under personas/ or a persona folder.")
    recipe: str = option("smollm2-135m_qlora_cpu", "Shipped recipe name or YAML path.")
    run: str = option(DEFAULT_RUN, "Run folder; reused if complete.")
    retrain: bool = option(False, "Train again even if the run folder is complete.", flag="--retrain")
    limit: int = option(8, "Prompts per evaluation suite (0: skip the evaluation).")
    arena: bool = option(True, "Stop after the evaluation instead of serving the studio (its Arena tab open).",
                         flag="--no-arena")
    port: int = option(7860, "Studio port on 127.0.0.1.")
    best_effort: bool = option(False, "Serve the arena and exit 0 even when the run or its evaluation raised red "
                               "flags.", flag="--best-effort")

    def __post_init__(self):
        if self.limit < 0 or not 0 < self.port < 65536:
            raise ConfigError(f"quickstart: need --limit >= 0 and 0 < --port < 65536, got {self.limit} and {self.port}")


def register(sub) -> None:
    p = sub.add_parser("quickstart", help="Train sharp-candid on the embedded model, evaluate it, open the arena.",
                       description="The main job: train (or reuse) a run, print baseline vs adapter answers to "
                                   "held-out prompts, run the evaluation, then serve the studio on 127.0.0.1 with "
                                   "its Arena tab open on the run.")
    add_config_arguments(p, QuickstartOptions)
    p.set_defaults(func=run)


PHASES = "main_job.json"  # in the run folder: wall time, CPU time and peak RSS per phase of the last main job


def run(args) -> int:
    from stylealign import phases
    from stylealign.generate import generator_for_runs

    args = config_from_args(args, QuickstartOptions)
    check_suites(SUITES + (SMOKE,) if args.limit > 0 else (SMOKE,))
    with phases.phase("train (or reuse)"):
        run_dir = train_or_reuse(args)
    phases.release_memory()  # the training model and the trainers are gone now
    show_selection(run_dir)
    with phases.phase("load generator"):
        gen = generator_for_runs([str(run_dir)])
    name = gen.adapter_names[0]
    with phases.phase("comparison"):
        show_comparison(gen, name)
    report = None
    if args.limit > 0:
        with phases.phase("evaluation"):
            report = evaluate(gen, name, run_dir, args.limit)
    write_phases(run_dir)
    flags = red_flags(run_dir, report)
    print(f"\n== {verdict_line(flags)}", flush=True)
    if flags and not args.best_effort:
        raise RunFailed(f"{run_dir} has red flags; see {run_dir / 'eval' / 'report.md'} (--best-effort serves the "
                        "arena anyway)")
    if args.arena:
        serve_studio(gen, run_dir, args.port)
    return 0


def red_flags(run_dir: Path, report: dict | None) -> list[dict]:
    """The run's red flags (its manifest) and the evaluation's error-level flags, as {"code", "message"}."""
    from stylealign.manifest import read_manifest

    flags = list(read_manifest(run_dir).red_flags)
    for f in (report or {}).get("flags") or []:
        if f.get("severity") == "error":
            flags.append({"code": f["code"], "message": f["message"]})
    return flags


def verdict_line(flags: list[dict]) -> str:
    """One line: no red flags, or how many and which."""
    if not flags:
        return "no red flags: the run met its selection rule and its evaluation raised none"
    codes = sorted({f["code"] for f in flags})
    return f"{len(flags)} red flag(s): {', '.join(codes)}"


def write_phases(run_dir: Path) -> dict:
    """Print the main job's per-phase table and write it to <run>/main_job.json; return the summary."""
    from stylealign import phases
    from stylealign.files import write_json

    log = phases.log()
    summary = log.summary()
    write_json(Path(run_dir) / PHASES, summary)
    print(f"\n== main job: {summary['wall_s'] / 60:.1f} min, peak RSS {summary['peak_rss_mb'] / 1024:.2f} GiB "
          f"({Path(run_dir) / PHASES}); OpenMP threads: {summary['omp_wait']}\n{log.table()}", flush=True)
    return summary


def train_or_reuse(args: QuickstartOptions) -> Path:
    """Return a finished run folder: the existing one, or a freshly trained (or resumed) one."""
    from stylealign.config import load_recipe
    from stylealign.personas import load_persona
    from stylealign.train import run_paths, train_run

    final, work = run_paths(args.run)
    if final.exists() and not args.retrain:
        print(f"== reusing the finished run {final} (pass --retrain to train again)")
        return final
    print(f"== training {args.persona} with recipe {args.recipe} -> {final}")
    return train_run(load_persona(args.persona), load_recipe(args.recipe), final, resume=work.exists(),
                     overwrite=args.retrain)


def check_suites(paths) -> None:
    """Fail before training, not after it, when the prompt suites the job reads later are not where it runs."""
    from stylealign.errors import UserError

    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise UserError(f"{missing[0]}: not found under {Path.cwd()}; run the main job from the stylealign checkout "
                        f"(`./run.sh main` does), where eval/suites/ is")


def show_selection(run_dir: Path) -> None:
    """Print which checkpoint the run published and every candidate's greedy probe scores."""
    from stylealign.manifest import read_manifest

    sel = read_manifest(run_dir).selection
    if sel.get("status") != "ok":
        return
    pct = lambda x: "–" if x is None else f"{x:.0%}"  # noqa: E731
    n = sum(o["n"] for o in sel["baseline"]["openers"].values())
    wanted = sel.get("metric") or {"metric": sel["rule"]["metric"], "direction": "up"}  # older manifests
    metric = f"{'max' if wanted['direction'] == 'up' else 'min'} {wanted['metric']}"
    metric += f" [{wanted['source']}]" if wanted.get("source") else ""
    enough = sel["rule"].get("style_enough") if wanted["metric"] == "verdict_first" and wanted["direction"] == "up" else 0
    metric += f", or the least repetitive with verdict-first >= {enough:.0%} on yes/no prompts" if enough else ""
    print(f"\n== checkpoint selection on {n} held-out probe prompts (greedy, {sel['rule']['max_new_tokens']} tokens; "
          f"rule: {metric}, repetition <= base + "
          f"{sel['rule']['max_repetition_over_base']:.0%}, yes-share {sel['rule']['yes_share_min']:.0%}-"
          f"{sel['rule']['yes_share_max']:.0%}, top opener <= {sel['rule']['max_top_opener']:.0%})")
    for name, s in [("base", sel["baseline"])] + [(f"{c['stage']} {c['step']}", c["scores"]) for c in sel["candidates"]]:
        mark = " <- published" if name == f"{sel['selected']['stage']} {sel['selected']['step']}" else ""
        print(f"  {name:<9} verdict-first {pct(s['verdict_first']):>4} (yes/no {pct(s.get('verdict_first_yes_no')):>4})  "
              f"repetitive {pct(s['repetitive']):>4}  top opener {pct(s['top_opener']):>4}  "
              f"yes-share {pct(s['yes_share']):>4}{mark}")
    if not sel["rule_met"]:
        print("  no candidate met the rule; published the one that missed it least")


def show_comparison(gen, name: str, n: int = 4) -> None:
    """Print baseline and adapter answers to a few held-out prompts (same decoding settings and seed:
    the measured reading settings, see generate.READING)."""
    from stylealign.data import load_eval
    from stylealign.generate import reading_config

    rows = load_eval([SMOKE])[:n]
    convs = [r["messages"] for r in rows]
    cfg = reading_config()
    answers = gen.generate(convs + convs, [None] * len(rows) + [name] * len(rows), cfg)
    print(f"\n== held-out prompts, baseline vs {name} ({cfg.to_dict()})")
    for i, row in enumerate(rows):
        print(f"\n> {row['messages'][-1]['content']}\n[baseline] {answers[i]}\n[{name}] {answers[len(rows) + i]}")


# The main job's perplexity check reads 32 of the neutral corpus's 112 paragraphs (spread over both languages), in
# proportion to its 8 prompts per suite: the full corpus was 166 s of a 27-minute job on 2 cores (benchmarks/README.md).
# `stylealign eval` reads all of it.
MAIN_CORPUS_TEXTS = 32


def evaluate(gen, name: str, run_dir: Path, limit: int, embedder="default", **config) -> dict:
    """Run the evaluation (sampled pass + greedy coherence probe) on `limit` prompts per suite, write it
    under run/eval, print the headline; `config` overrides EvalConfig fields."""
    from stylealign.evaluate.report import headline
    from stylealign.evaluate.run import EvalConfig, run_eval

    print(f"\n== evaluating {name} against the baseline ({limit} prompts per suite)", flush=True)
    config = {"corpus_max_texts": MAIN_CORPUS_TEXTS, **config}
    report = run_eval(gen, [name], list(SUITES), EvalConfig(limit=limit, **config), out=run_dir / "eval",
                      runs={name: str(run_dir)}, embedder=embedder)
    print(headline(report))
    print(f"full report: {run_dir / 'eval' / 'report.md'}")
    return report


def serve_studio(gen, run_dir: Path, port: int) -> None:
    """Serve the studio on 127.0.0.1, its Arena tab open on the baseline and this run, reusing the loaded model."""
    from stylealign.arena.settings import DEFAULT_VOTES
    from stylealign.commands.studio import open_arena, serve
    from stylealign.studio import Studio

    studio = Studio.open(".")
    serve(studio, open_arena([str(run_dir)], studio.inside(DEFAULT_VOTES), generator=gen), port=port)
