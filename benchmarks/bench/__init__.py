"""The benchmark harness (not installed; `stylealign bench` runs it from a source checkout): the kit's
training and generation paths against plain TRL / transformers code, on this machine, in one
invocation (ratios, so a shared machine's load mostly cancels out).

Public API: `Settings`, `run_bench(settings) -> report dict`, `markdown(report)`, and the arithmetic in
`bench.arith` (FLOPs per token, utilisation, medians, ratios, targets).

Modules: settings (what to measure, the CLI flags), run
(orchestration: one subprocess per arm), spec (one arm's JSON spec), worker (the subprocess's entry) with
training, generation and measure (the arms, clocks and memory), host (the machine), shapes (random
Llamas), scale (the scale area: SFT at growing model sizes), rows (the data), summary (rates, ratios, targets)
and report (Markdown, report.json).
"""

from .arith import (
                                    TARGETS,
                                    Dims,
                                    evaluate_targets,
                                    flops_per_token,
                                    mean_context,
                                    median,
                                    ratio,
                                    utilisation,
)
from .report import markdown
from .run import run_bench
from .settings import Settings

__all__ = ["TARGETS", "Dims", "Settings", "evaluate_targets", "flops_per_token", "markdown", "mean_context",
           "median", "ratio", "run_bench", "utilisation"]
