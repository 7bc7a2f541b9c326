"""`stylealign bench`: the kit's training and generation paths against plain TRL / transformers code,
on this machine, in one invocation (ratios, so a shared machine's load mostly cancels out).

Public API: `Settings`, `run_bench(settings) -> report dict`, `markdown(report)`, and the arithmetic in
`stylealign.bench.arith` (FLOPs per token, utilisation, medians, ratios, targets).
"""

from stylealign.bench.arith import (
                                    TARGETS,
                                    Dims,
                                    evaluate_targets,
                                    flops_per_token,
                                    mean_context,
                                    median,
                                    ratio,
                                    utilisation,
)
from stylealign.bench.run import Settings, markdown, run_bench

__all__ = ["TARGETS", "Dims", "Settings", "evaluate_targets", "flops_per_token", "markdown", "mean_context",
           "median", "ratio", "run_bench", "utilisation"]
