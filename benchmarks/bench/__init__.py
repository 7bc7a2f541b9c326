"""The benchmark harness (not installed; `stylealign bench` runs it from a source checkout): the kit's
training and generation paths against plain TRL / transformers code, on this machine, in one
invocation (ratios, so a shared machine's load mostly cancels out).

Public API: `Settings`, `run_bench(settings) -> report dict`, `markdown(report)`, and the arithmetic in
`bench.arith` (FLOPs per token, utilisation, medians, ratios, targets).
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
from .run import Settings, markdown, run_bench

__all__ = ["TARGETS", "Dims", "Settings", "evaluate_targets", "flops_per_token", "markdown", "mean_context",
           "median", "ratio", "run_bench", "utilisation"]
