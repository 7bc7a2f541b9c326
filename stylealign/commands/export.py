"""`stylealign export` (merged weights, GGUF, Ollama Modelfile, checked) and `stylealign serve` (llama.cpp's
OpenAI-compatible server on 127.0.0.1 with the exported base and adapter)."""

from __future__ import annotations

import sys
from pathlib import Path

EXPORT_HELP = """Write the run's adapter as merged safetensors (base dequantized, never merged into 4-bit), a base GGUF
plus a LoRA GGUF in llama.cpp's format, and an Ollama Modelfile, into --out (atomically), then check on held-out
prompts, greedy, that the exports answer like the PEFT adapter (token agreement, per-token KL, style markers; the
base GGUF vs the HF base is the ceiling). Exits 1 when a check fails."""


def register(sub) -> None:
    p = sub.add_parser("export", help="Export an adapter: merged weights, GGUF + LoRA GGUF, Ollama Modelfile; checked.",
                       description=EXPORT_HELP)
    p.add_argument("run", metavar="RUN", help="Run folder (runs/<run> or its name).")
    p.add_argument("--to", default="all", choices=("merged", "gguf", "ollama", "all"))
    p.add_argument("--out", default=None, metavar="DIR", help="Output folder (default RUN/export).")
    p.add_argument("--base", default=None, help="Base model (default: the run's); for GGUF, the .gguf file it came from.")
    p.add_argument("--adapter-type", default="f16", choices=("f32", "f16", "bf16", "q8_0"), help="LoRA GGUF tensor type.")
    p.add_argument("--merged-dtype", default="fp32", choices=("fp32", "bf16", "fp16"))
    p.add_argument("--no-check", action="store_true", help="Write the files without the llama.cpp/PEFT check.")
    p.add_argument("--horizon", type=int, default=48, help="Greedy tokens compared per prompt.")
    p.add_argument("--suite", default=None, help="Held-out prompts for the check (default eval/suites/smoke.jsonl).")
    p.add_argument("--min-agreement", type=float, default=0.90,
                   help="Fail below this llama.cpp+LoRA top-1 agreement with the adapter (or the base GGUF's ceiling - 0.05).")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_export)
    s = sub.add_parser("serve", help="Serve the run with llama.cpp's OpenAI-compatible server on 127.0.0.1.",
                       description="Start llama-cpp-python's OpenAI-compatible server with the run's base GGUF (model "
                                   "name: the base's) and base + LoRA GGUF (model name: the run folder's), exporting the "
                                   "GGUF files first if RUN/export has none. Prints the vLLM command for GPUs.")
    s.add_argument("run", metavar="RUN")
    s.add_argument("--export", default=None, metavar="DIR", help="Export folder with gguf/ (default RUN/export).")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--strength", type=float, default=1.0, help="LoRA scale (0 = base, 1 = as trained).")
    s.add_argument("--n-ctx", type=int, default=2048)
    s.set_defaults(func=run_serve)


def _check_config(args, system_prompt):
    from stylealign.export.check_run import default_config

    config = default_config(system_prompt)
    if args.suite:
        from stylealign.evaluate.io import load_suites

        config.prompts = load_suites([args.suite], None)
    config.horizon, config.min_agreement = args.horizon, args.min_agreement
    return config


def run_export(args) -> int:
    from stylealign.commands.evaluate import resolve_run
    from stylealign.export.run import ExportError, export_run, run_info

    try:
        run = resolve_run(args.run)
        config = None if args.no_check else _check_config(args, run_info(run, args.base)["system_prompt"])
        report = export_run(run, args.out or Path(run) / "export", args.to, args.base, args.adapter_type,
                            args.merged_dtype, check=not args.no_check, check_config=config, overwrite=args.overwrite)
    except (ExportError, FileNotFoundError, ValueError) as e:
        print(f"export: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path(run) / "export")
    print((out / "report.md").read_text(encoding="utf-8"))
    print((out / "COMMANDS.md").read_text(encoding="utf-8"))
    if not report["passed"]:
        print(f"export: the check failed (see {out / 'report.md'})", file=sys.stderr)
        return 1
    return 0


def run_serve(args) -> int:
    from stylealign.commands.evaluate import resolve_run
    from stylealign.export.serve import ServeError, serve

    try:
        return serve(resolve_run(args.run), args.export, args.host, args.port, args.strength, args.n_ctx)
    except (ServeError, FileNotFoundError, ValueError) as e:
        print(f"serve: {e}", file=sys.stderr)
        return 2
