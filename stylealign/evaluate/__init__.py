"""Measure what a style adapter changed: baseline vs adapter answers, scored in layers with bootstrap CIs.

Public API:
    run_eval(generator, adapters, suites, config=EvalConfig(), judge=None, ...) -> report dict
    headline(report) -> str                      a few lines for the terminal / main job
    EvalConfig                                   strengths, limit, n_boot, seed, generation config, ...
    style_markers(text, language=None) -> dict   L0 markers of one answer
    parse_verdict(text) -> label                 yes/no/depends/unknown/refusal/recommend/none
    check_gates(report, fail_under, fail_over)   CI gate evaluation
    make_judge(spec), judge_pair, win_rate_summary, Judge (L2)
    bootstrap_ci, paired_diff                    statistics
Report schema: stylealign/evaluate/SCHEMA.md. Heavy libraries (torch, sentence-transformers,
scikit-learn, matplotlib) are imported only where used.
"""

from stylealign.evaluate.gate import check_gates
from stylealign.evaluate.judge import Judge, judge_pair, make_judge, win_rate_summary
from stylealign.evaluate.markers import style_markers
from stylealign.evaluate.report import SCHEMA_VERSION, headline
from stylealign.evaluate.run import EvalConfig, run_eval
from stylealign.evaluate.stats import bootstrap_ci, paired_diff
from stylealign.evaluate.verdict import parse_verdict

__all__ = ["EvalConfig", "Judge", "SCHEMA_VERSION", "bootstrap_ci", "check_gates", "headline", "judge_pair",
           "make_judge", "paired_diff", "parse_verdict", "run_eval", "style_markers", "win_rate_summary"]
