"""`stylealign bench`: a thin entry to the benchmark harness in the checkout's benchmarks/ folder.

The harness is not installed with the package (it measures the package); its options are the
fields of `bench.settings.Settings`, turned into flags by stylealign.config.add_config_arguments.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from stylealign.errors import NotFound

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def harness():
    """Return the `bench` package from benchmarks/ (raises FileNotFoundError outside a source checkout)."""
    if not (BENCHMARKS / "bench" / "__init__.py").is_file():
        raise NotFound(f"stylealign bench runs from a source checkout: {BENCHMARKS}/bench not found")
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module("bench")


def register(sub) -> None:
    from stylealign.options import add_config_arguments

    p = sub.add_parser("bench", help="Benchmark training and generation against plain TRL on this machine.",
                       description="Measure SFT, DPO and generation speed and memory of the kit against plain "
                                   "TRL / transformers code, in one invocation, and write report.json + report.md.")
    try:
        add_config_arguments(p, harness().Settings)
    except FileNotFoundError as e:
        p.set_defaults(func=lambda args, error=e: _raise(error))
        return
    p.set_defaults(func=run)


def _raise(error: Exception) -> int:
    """Report, when the command runs (not while `--help` is built), that the harness is missing."""
    raise error


def run(args) -> int:
    from stylealign.options import config_from_args

    bench = harness()
    report = bench.run_bench(config_from_args(args, bench.Settings))
    print()
    print(bench.markdown(report))
    out = report["settings"]["out"]
    print(f"report: {out}/report.json, {out}/report.md")
    return 0 if not any("error" in r for runs in report["arms"].values() for r in runs) else 1
