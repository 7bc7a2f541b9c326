"""`stylealign bench`: measure the kit against plain TRL / transformers code on this machine."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("bench", help="Benchmark training and generation against plain TRL on this machine.",
                       description="Measure SFT, DPO and generation speed and memory of the kit against plain "
                                   "TRL / transformers code, in one invocation, and write report.json + report.md.")
    p.add_argument("--quick", action="store_true", help="Few steps on short rows (about two minutes on 2 CPU cores).")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--model", default="smollm2-135m", help="Base: embedded alias or local HF folder (default smollm2-135m).")
    which.add_argument("--shape", default=None, help="A randomly initialised Llama of this shape instead "
                       "(llama-8b, llama-3b, llama-1b, smollm2-135m, tiny); rows are stitched to --seq-len tokens.")
    p.add_argument("--quant", default=None, choices=("nf4", "none"), help="Kit's base weights (default: the recipe's).")
    p.add_argument("--recipe", default=None, help="Recipe for the kit arms (default: the CPU recipe on CPU, a GPU recipe on GPU).")
    p.add_argument("--persona", default="sharp-candid", help="Persona whose rows are trained on (default sharp-candid).")
    p.add_argument("--out", default=None, help="Output folder (default runs/bench-<time>/).")
    p.add_argument("--threads", type=int, default=0, help="torch threads in every arm (default: torch's default).")
    p.add_argument("--only", default=None, help="Comma-separated areas to run: sft,dpo,gen (default all).")
    p.add_argument("--reps", type=int, default=0, help="Alternated kit/reference runs per area (quick 1, full 2).")
    p.add_argument("--steps", type=int, default=0, help="Timed steps per training run (after one warm-up step).")
    p.add_argument("--seq-len", type=int, default=0, help="Stitch rows to about this many tokens (--shape: 2048).")
    p.add_argument("--gen-batch", type=int, default=16, help="Rows per generation batch (the evaluation's default 16).")
    p.add_argument("--gen-quant", default=None, choices=("nf4", "none"),
                   help="Base weights for generation (default: as `stylealign eval`: unquantized on a CPU, the recipe's on a GPU).")
    p.add_argument("--max-new-tokens", type=int, default=0, help="Generation length cap (quick 24, full 64).")
    p.add_argument("--kit-set", action="append", default=[], metavar="KEY=VALUE",
                   help="Recipe override for the kit arms only (repeatable), e.g. sft.gradient_checkpointing=true.")
    p.add_argument("--ref", default="trl", choices=("trl", "kit"),
                   help="Reference arms: plain TRL / model.generate (default), or for training the kit as shipped (to A/B --kit-set).")
    p.add_argument("--omp-policy", default="passive", choices=("passive", "active", "inherit"),
                   help="OMP_WAIT_POLICY for every arm (default passive: with active spinning, other processes' load "
                        "slows 2-thread torch 2-10x and drowns the ratios).")
    p.add_argument("--no-profile", action="store_true", help="Skip the extra profiled step of each arm.")
    p.set_defaults(func=run)


def run(args) -> int:
    from stylealign.bench import Settings, markdown, run_bench

    areas = tuple(a.strip() for a in args.only.split(",")) if args.only else ("sft", "dpo", "gen")
    unknown = set(areas) - {"sft", "dpo", "gen"}
    if unknown:
        print(f"error: unknown area(s) {sorted(unknown)}; choose from sft, dpo, gen", file=sys.stderr)
        return 2
    import yaml

    kit_set = {}
    for item in args.kit_set:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --kit-set takes KEY=VALUE, got {item!r}", file=sys.stderr)
            return 2
        kit_set[key.strip()] = yaml.safe_load(value)
    settings = Settings(quick=args.quick, model=args.model, shape=args.shape, quant=args.quant, recipe=args.recipe,
                        persona=args.persona, out=args.out, threads=args.threads, areas=areas,
                        profile=not args.no_profile, reps=args.reps, sft_steps=args.steps, dpo_steps=args.steps,
                        seq_len=args.seq_len, max_new_tokens=args.max_new_tokens, gen_batch=args.gen_batch,
                        gen_quant=args.gen_quant, kit_set=kit_set, ref=args.ref, omp_policy=args.omp_policy)
    try:
        report = run_bench(settings)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print()
    print(markdown(report))
    out = report["settings"]["out"]
    print(f"report: {out}/report.json, {out}/report.md")
    return 0 if not any("error" in r for runs in report["arms"].values() for r in runs) else 1
