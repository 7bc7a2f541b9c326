"""`stylealign export` (merged weights, GGUF, Ollama Modelfile, checked) and `stylealign serve` (llama.cpp's
OpenAI-compatible server on 127.0.0.1 with the exported base and adapter)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stylealign.errors import ConfigError, RunFailed, UserError
from stylealign.options import REQUIRED, add_config_arguments, config_from_args, option

EXPORT_HELP = """Write the run's adapter as merged safetensors (base dequantized, never merged into 4-bit), a base GGUF
plus a LoRA GGUF in llama.cpp's format, and an Ollama Modelfile, into --out (atomically), then check on held-out
prompts, greedy, that the exports answer like the PEFT adapter (token agreement, per-token KL, style markers; the
base GGUF vs the HF base is the ceiling). Exits 1 when a check fails."""
SERVE_HELP = """Start llama-cpp-python's OpenAI-compatible server with the run's base GGUF (model name: the base's)
and base + LoRA GGUF (model name: the run folder's), exporting the GGUF files first if RUN/export has none. Prints
the vLLM command for GPUs."""


@dataclass
class ExportOptions:
    """`stylealign export RUN`: which formats, where, and how the check judges them."""

    run: str = option(REQUIRED, "Run folder (runs/<run> or its name).", positional=True, metavar="RUN")
    to: str = option("all", "What to write (ollama implies gguf).", choices=("merged", "gguf", "ollama", "all"))
    out: str | None = option(None, "Output folder (default RUN/export).", metavar="DIR")
    base: str | None = option(None, "Base model (default: the run's); for GGUF, the .gguf file it came from.")
    adapter_type: str = option("f16", "LoRA GGUF tensor type.", choices=("f32", "f16", "bf16", "q8_0"))
    merged_dtype: str = option("fp32", "dtype of the merged safetensors.", choices=("fp32", "bf16", "fp16"))
    check: bool = option(True, "Write the files without the llama.cpp/PEFT check.", flag="--no-check")
    horizon: int = option(48, "Greedy tokens compared per prompt.")
    suite: str | None = option(None, "Held-out prompts for the check (default eval/suites/smoke.jsonl).")
    min_agreement: float = option(0.90, "Fail below this llama.cpp+LoRA top-1 agreement with the adapter (or the "
                                  "base GGUF's ceiling - 0.05).")
    overwrite: bool = option(False, "Replace an existing export folder.", flag="--overwrite")

    def __post_init__(self):
        if self.horizon < 1 or not 0 <= self.min_agreement <= 1:
            raise ConfigError(f"export: need --horizon >= 1 and 0 <= --min-agreement <= 1, "
                              f"got {self.horizon} and {self.min_agreement}")


@dataclass
class ServeOptions:
    """`stylealign serve RUN`: the export to serve and where."""

    run: str = option(REQUIRED, "Run folder (runs/<run> or its name).", positional=True, metavar="RUN")
    export: str | None = option(None, "Export folder with gguf/ (default RUN/export).", metavar="DIR")
    host: str = option("127.0.0.1", "Interface to bind (default: localhost only).")
    port: int = option(8000, "Port to serve on.")
    strength: float = option(1.0, "LoRA scale (0 = base, 1 = as trained).")
    n_ctx: int = option(2048, "Context length of the server, in tokens.")

    def __post_init__(self):
        if not 0 < self.port < 65536 or self.n_ctx < 1:
            raise ConfigError(f"serve: need 0 < --port < 65536 and --n-ctx >= 1, got {self.port} and {self.n_ctx}")


def register(sub) -> None:
    p = sub.add_parser("export", help="Export an adapter: merged weights, GGUF + LoRA GGUF, Ollama Modelfile; checked.",
                       description=EXPORT_HELP)
    add_config_arguments(p, ExportOptions)
    p.set_defaults(func=run_export)
    s = sub.add_parser("serve", help="Serve the run with llama.cpp's OpenAI-compatible server on 127.0.0.1.",
                       description=SERVE_HELP)
    add_config_arguments(s, ServeOptions)
    s.set_defaults(func=run_serve)


def _check_config(args, system_prompt):
    from stylealign.export.check_run import default_config

    config = default_config(system_prompt)
    if args.suite:
        from stylealign.evaluate.io import load_suites

        config.prompts = load_suites([args.suite], None)
    config.horizon, config.min_agreement = args.horizon, args.min_agreement
    return config


def _run_folder(name: str) -> str:
    """Return the run folder `name` names (resolve_run), a missing one as a UserError."""
    from stylealign.commands.eval import resolve_run

    try:
        return resolve_run(name)
    except FileNotFoundError as e:
        if isinstance(e, UserError):
            raise
        raise UserError(f"{e}; pass a run folder or the name of one under runs/") from None


def run_export(args) -> int:
    from stylealign.export.run import export_run, run_info

    args = config_from_args(args, ExportOptions)
    run = _run_folder(args.run)
    config = _check_config(args, run_info(run, args.base)["system_prompt"]) if args.check else None
    out = Path(args.out or Path(run) / "export")
    report = export_run(run, out, args.to, args.base, args.adapter_type, args.merged_dtype, check=args.check,
                        check_config=config, overwrite=args.overwrite)
    print((out / "report.md").read_text(encoding="utf-8"))
    print((out / "COMMANDS.md").read_text(encoding="utf-8"))
    if not report["passed"]:
        raise RunFailed(f"{out}: the export does not answer like the adapter (its check failed): see "
                        f"{out / 'report.md'}; the files stay there to inspect")
    return 0


def run_serve(args) -> int:
    from stylealign.export.serve import serve

    args = config_from_args(args, ServeOptions)
    return serve(_run_folder(args.run), args.export, args.host, args.port, args.strength, args.n_ctx)
