"""`run_eval`: generate baseline and adapter answers for the suites, score them in layers, build the report.

The CLI (`stylealign eval`) and the main job both call `run_eval`; it returns the report dict (see
SCHEMA.md) and, given `out`, writes report.json, report.md, answers.jsonl and plots atomically.

The stages live beside it: config (EvalConfig), state (variants, the shared state), answers (generation),
scoring (per-answer features) and sections (the report's sections); report.py assembles and writes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stylealign import phases
from stylealign.errors import ConfigError
from stylealign.evaluate import flags as flagging
from stylealign.evaluate.answers import (
    answer_settings,
    generate_answers,
    generate_probe_answers,
    generate_pushback_answers,
)
from stylealign.evaluate.config import EvalConfig, generation_config
from stylealign.evaluate.io import load_suites
from stylealign.evaluate.robustness import robustness_summary
from stylealign.evaluate.scoring import score_answers, score_probe, train_classifier
from stylealign.evaluate.sections import (
    comparisons,
    examples,
    judge_section,
    probe_section,
    pushback_section,
    retention,
    truth_section,
)
from stylealign.evaluate.state import EvalState, make_variants


def _say(config: EvalConfig, message: str) -> None:
    """Print a phase message to stderr when progress output is on (the slow phases are otherwise silent)."""
    if config.progress:
        import sys

        print(f"[eval] {message}", file=sys.stderr, flush=True)


def run_eval(generator, adapters: list[str], suites, config: EvalConfig | None = None, *, judge=None,
             judge_spec: str | None = None, embedder: Any = "default", out: str | Path | None = None,
             runs: dict[str, str] | None = None, base_model: str | None = None,
             fail_under: list[str] = (), fail_over: list[str] = (), resume: bool = False) -> dict:
    """Evaluate `adapters` (names already loaded in `generator`) against the base model; return the report.

    `suites`: suite file paths (or lists of rows). `embedder`: "default" loads MiniLM, None skips the
    embedding-based checks (relevance, drift, classifier), or pass any object with `.encode`.
    `judge`: an optional Judge callable. `runs`: adapter name -> run folder, recorded in the report.
    `fail_under` / `fail_over`: gate specs (see gate.py); the result lands in report["gate"].
    `resume`: continue the interrupted evaluation in `out` (same settings) instead of starting over.
    """
    from stylealign.evaluate.report import build_report, write_outputs
    from stylealign.evaluate.resume import AnswerLog, check_judge

    config = config or EvalConfig()
    gen_config = generation_config(config)
    from stylealign.evaluate import targets

    persona = targets.load_targets_persona(config.persona)
    state = EvalState(load_suites(suites, config.limit), make_variants(adapters, config.strengths, runs),
                      metrics=targets.persona_metric_table(persona))
    if not state.rows:
        raise ConfigError("no prompts: the suites are empty")
    log = AnswerLog(out, answer_settings(state, config, gen_config, base_model or getattr(generator, "base", None)),
                    resume)
    check_judge(judge, judge_spec)  # a dead endpoint fails now, not after the generation
    _say(config, f"generating {len(state.rows)} prompts x (baseline + {len(state.variants)} variant(s))")
    with phases.phase("eval: sampled answers"):
        generate_answers(generator, state, config, gen_config, log)
    if config.probe:
        _say(config, f"coherence probe: greedy, no repetition penalty, {config.probe_max_new_tokens} new tokens")
        with phases.phase("eval: greedy probe"):
            generate_probe_answers(generator, state, config, log)
        if config.pushback and any(r.get("expected") in ("yes", "no") for r in state.rows):
            _say(config, "pushback: known-answer prompts asked again after a pushback")
            with phases.phase("eval: pushback"):
                generate_pushback_answers(generator, state, config, log)
    sections = score_and_summarise(generator, state, config, embedder, persona, judge, judge_spec)
    with phases.phase("eval: report"):
        report = build_report(state, config, gen_config, sections, base_model or getattr(generator, "base", None),
                              judge_spec)
        if fail_under or fail_over:
            from stylealign.evaluate.gate import check_gates

            report["gate"] = check_gates(report, list(fail_under), list(fail_over))
        if out is not None:
            write_outputs(report, state, Path(out), config.plots)
            log.finish()
    return report


def score_and_summarise(generator, state: EvalState, config: EvalConfig, embedder, persona, judge,
                        judge_spec: str | None) -> dict:
    """Score the generated answers (markers, embeddings, classifier, lexicons, probe) and return the report's
    sections: retention, judge, comparisons with CIs, classifier, truth, examples, probe, robustness, flags."""
    from stylealign.evaluate import targets
    from stylealign.evaluate.resume import judge_or_failed

    _say(config, "scoring: markers, embeddings, style classifier")
    with phases.phase("eval: embedder, classifier, scoring"):
        own_embedder = embedder == "default"
        if own_embedder:
            from stylealign.evaluate.content import load_embedder

            embedder = load_embedder()
        clf, clf_section = train_classifier(config, embedder)
        score_answers(state, embedder, clf)
        lexicons = targets.persona_lexicons(persona)
        targets.add_lexicon_features(state, lexicons)
        score_probe(state, lexicons)
        if own_embedder:  # needed only here: its weights go before the retention pass
            del embedder, clf
            phases.release_memory()
    _say(config, "retention (perplexity, KL)" + (" and judge" if judge else ""))
    with phases.phase("eval: retention" + (", judge" if judge else "")):
        sections = {"retention": retention(generator, state, config), "judge": judge_or_failed(judge_section, judge, state, config, judge_spec)}
    _say(config, "statistics (bootstrap CIs)")
    with phases.phase("eval: statistics"):
        sections.update({"comparisons": comparisons(state, config), "classifier": clf_section, "truth": truth_section(state),
                         "examples": examples(state, config.n_examples), "probe": probe_section(state, config),
                         "pushback": pushback_section(state, config)})
        sections["robustness"] = robustness_summary(sections["comparisons"])
        sections["flags"] = flagging.find_flags(sections, [v.label for v in state.variants])
    return sections
