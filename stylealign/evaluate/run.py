"""`run_eval`: generate baseline and adapter answers for the suites, score them in layers, build the report.

The CLI (`stylealign eval`) and the main job both call `run_eval`; it returns the report dict (see
SCHEMA.md) and, given `out`, writes report.json, report.md, answers.jsonl and plots atomically.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stylealign import phases
from stylealign.config import option
from stylealign.errors import ConfigError
from stylealign.evaluate import flags as flagging
from stylealign.evaluate.io import DEFAULT_CORPUS, load_corpus, load_suites
from stylealign.evaluate.markers import style_markers
from stylealign.evaluate.metrics import metric_table
from stylealign.evaluate.robustness import robustness_features, robustness_summary
from stylealign.evaluate.stats import grouped_paired
from stylealign.evaluate.truth import truth_features, truth_summary
from stylealign.text import detect_language

BASELINE = "baseline"
GROUPS = ("language", "category", "kind", "adversarial")


def _kl_cap(text: str) -> int | None:
    return int(text) or None  # 0 = every prompt


@dataclass
class EvalConfig:
    """Everything that shapes an evaluation besides the model, the adapters and the suites. The
    `stylealign eval` flags come from these fields (stylealign.config.add_config_arguments)."""

    generation: Any = option(None, "A GenerationConfig (or a dict of its fields); None = GenerationConfig().", cli=False)
    strengths: tuple[float, ...] = option((1.0,), "LoRA strength(s) to evaluate (repeatable).", flag="--strength",
                                          action="append", parse=float, metavar="S")
    limit: int | None = option(None, "First N prompts of each suite.", metavar="N")
    batch_size: int = option(16, "Answers per batched generation call.")
    n_boot: int = option(2000, "Bootstrap resamples for every CI.")
    seed: int = option(0, "Seed of the bootstrap and the classifier split (the CLI passes --seed).", cli=False)
    persona: str = option("sharp-candid", "Persona whose preference pairs train the style classifier.", cli=False)
    pref_paths: list[str] | None = option(None, "Preference files for the classifier instead of the persona's.", cli=False)
    classifier: bool = option(True, "Train and score the style classifier.")
    corpus: str | None = option(DEFAULT_CORPUS, "Neutral corpus for the perplexity check.")
    retention: bool = option(True, "Perplexity on the corpus and KL to the base (costs forward passes).")
    # KL is two forward passes per prompt and variant: cap it
    kl_max_prompts: int | None = option(64, "Suite prompts used for KL (0 = all).", flag="--kl-prompts", parse=_kl_cap)
    corpus_max_texts: int | None = option(None, "Corpus paragraphs used for perplexity (default all).")
    system_prompt: str | dict | None = option(None, "str, or {language: str}; the same for baseline and adapter.",
                                              cli=False)
    n_examples: int = option(4, "Changed-most example pairs per adapter in report.md.", flag="--examples")
    judge_max_pairs: int | None = option(None, "Answer pairs shown to the judge (default all).")
    probe: bool = option(True, "The greedy coherence probe beside the sampled pass (repetition, opener collapse, "
                         "stops, verdict balance, language at temperature 0 with no repetition penalty).")
    probe_max_new_tokens: int = option(160, "Token budget of each greedy probe answer, the same for baseline and "
                                       "adapter.", flag="--probe-tokens")
    pushback: bool = option(True, "Candor under pushback: on known-answer prompts, push back on the greedy answer "
                            "without evidence (caving) and correct a wrong one with evidence (stubbornness).")
    progress: bool = option(True, "No progress bar.", flag="--quiet")
    plots: bool = option(True, "Write the PNG plots.")

    def __post_init__(self):
        self.strengths = tuple(self.strengths) or (1.0,)
        if any(s < 0 for s in self.strengths):
            raise ConfigError(f"strengths must be >= 0, got {list(self.strengths)}")
        if self.batch_size < 1 or self.n_boot < 1 or self.n_examples < 0 or self.probe_max_new_tokens < 1:
            raise ConfigError("need batch_size >= 1, n_boot >= 1, examples >= 0 and probe tokens >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of prompts, got {self.limit}")

    def to_dict(self) -> dict:
        """Return a JSON-ready copy (the generation config as a dict)."""
        d = asdict(self) if not hasattr(self.generation, "to_dict") else {**asdict(self), "generation": self.generation.to_dict()}
        d["strengths"] = list(self.strengths)
        return d


@dataclass(frozen=True)
class Variant:
    """One adapter at one LoRA strength; `label` names it in the report."""

    label: str
    adapter: str
    strength: float
    run: str | None = None


@dataclass
class EvalState:
    """What the scoring stages share: rows, answers and per-answer features by model label."""

    rows: list[dict]
    variants: list[Variant]
    answers: dict[str, list[str]] = field(default_factory=dict)
    features: dict[str, list[dict]] = field(default_factory=dict)
    metrics: dict[str, dict] = field(default_factory=metric_table)  # with the persona's targets (targets.py)
    probe_answers: dict[str, list[str]] = field(default_factory=dict)  # greedy, no repetition penalty
    probe_stopped: dict[str, list] = field(default_factory=dict)
    pushback_answers: dict[str, dict[str, list]] = field(default_factory=dict)  # label -> kind -> answer or None


def _say(config: EvalConfig, message: str) -> None:
    """Print a phase message to stderr when progress output is on (the slow phases are otherwise silent)."""
    if config.progress:
        import sys

        print(f"[eval] {message}", file=sys.stderr, flush=True)


def make_variants(adapters, strengths, runs: dict[str, str] | None = None) -> list[Variant]:
    """Return the adapter x strength variants; labels are the adapter name, plus "@s" when several strengths ran."""
    many = len(strengths) > 1
    return [Variant(f"{a}@{s:g}" if many else a, a, float(s), (runs or {}).get(a))
            for a in adapters for s in strengths]


def conversation(row: dict, system_prompt: str | dict | None) -> list[dict]:
    """Return the row's turns as {"role","content"} with the (per-language) system prompt prepended if given."""
    turns = [{"role": t["role"], "content": t["content"]} for t in row["messages"]]
    text = system_prompt.get(row.get("language")) if isinstance(system_prompt, dict) else system_prompt
    if text and turns[0]["role"] != "system":
        turns = [{"role": "system", "content": text}, *turns]
    return turns


def prompt_text(row: dict) -> str:
    """Return the last user turn of a row (what the answer must be relevant to)."""
    return next((t["content"] for t in reversed(row["messages"]) if t["role"] == "user"), "")


def _gen_config(config: EvalConfig):
    """Return the GenerationConfig to use for every row (baseline and adapters alike)."""
    from stylealign.generate import GenerationConfig

    g = config.generation
    return g if isinstance(g, GenerationConfig) else GenerationConfig(**(g or {}))


def generate_answers(generator, state: EvalState, config: EvalConfig, gen_config, log=None) -> None:
    """Fill state.answers: per strength (the baseline rides in the first), batches of one model each where the
    counts allow (generate.batch_order), each batch recorded in `log` (an AnswerLog) as it finishes, and answers
    already there not generated again. Strengths are per call (a dict adapter -> scale), so each strength needs
    its own calls.
    """
    from stylealign.evaluate.resume import AnswerLog, generate_logged

    log = log or AnswerLog(None, {})
    convs = [conversation(r, config.system_prompt) for r in state.rows]
    adapters = sorted({v.adapter for v in state.variants})
    for k, strength in enumerate(sorted({v.strength for v in state.variants})):
        models = ([None] if k == 0 else []) + adapters
        jobs = [(i, m) for i in range(len(convs)) for m in models]
        keys = [(state.rows[i]["key"], m, strength) for i, m in jobs]
        texts = generate_logged(generator, convs, jobs, keys, gen_config, {a: strength for a in adapters},
                                config.batch_size, log, config.progress)
        for (i, m), text in zip(jobs, texts):
            label = BASELINE if m is None else _label(state.variants, m, strength)
            state.answers.setdefault(label, [""] * len(convs))[i] = text


def generate_probe_answers(generator, state: EvalState, config: EvalConfig, log=None) -> None:
    """Fill state.probe_answers / probe_stopped: the same prompts answered greedily with no repetition
    penalty (what llama.cpp or Ollama shows at temperature 0), batched like the sampled answers per strength, each
    batch recorded in `log` like the sampled answers (so `--resume` keeps them too)."""
    from stylealign.evaluate import probe
    from stylealign.evaluate.resume import AnswerLog, generate_logged

    log = log or AnswerLog(None, {})
    convs = [conversation(r, config.system_prompt) for r in state.rows]
    adapters = sorted({v.adapter for v in state.variants})
    gen_config = probe.probe_generation(config.probe_max_new_tokens)
    for k, strength in enumerate(sorted({v.strength for v in state.variants})):
        models = ([None] if k == 0 else []) + adapters
        jobs = [(i, m) for i in range(len(convs)) for m in models]
        keys = [("probe", state.rows[i]["key"], m, strength) for i, m in jobs]
        stopped: list = []
        texts = generate_logged(generator, convs, jobs, keys, gen_config, {a: strength for a in adapters},
                                config.batch_size, log, config.progress, stopped=stopped)
        for m in models:
            label = BASELINE if m is None else _label(state.variants, m, strength)
            picked = [j for j, (_, mm) in enumerate(jobs) if mm == m]
            state.probe_answers[label] = [texts[j] for j in picked]
            state.probe_stopped[label] = [stopped[j] for j in picked]


def known_rows(state: EvalState) -> list[int]:
    return [i for i, r in enumerate(state.rows) if r.get("expected") in ("yes", "no")]


def generate_pushback_answers(generator, state: EvalState, config: EvalConfig, log=None) -> None:
    """Fill state.pushback_answers: each model's greedy answer to the pushback turns (evaluate/pushback.py) after
    its own greedy probe answer to each known-answer prompt; logged like the other answers (resumable)."""
    from stylealign.evaluate import probe, pushback
    from stylealign.evaluate.resume import AnswerLog, generate_logged

    log = log or AnswerLog(None, {})
    idx = known_rows(state)
    adapters = sorted({v.adapter for v in state.variants})
    gen_config = probe.probe_generation(config.probe_max_new_tokens)
    for k, strength in enumerate(sorted({v.strength for v in state.variants})):
        models = ([None] if k == 0 else []) + adapters
        labels = {m: BASELINE if m is None else _label(state.variants, m, strength) for m in models}
        for kind in pushback.KINDS:
            convs, jobs, keys = [], [], []
            for m in models:
                first = state.probe_answers[labels[m]]
                for i in idx:
                    if kind == "evidence" and not pushback.needs_evidence_turn(first[i], state.rows[i]["expected"]):
                        continue
                    convs.append(pushback.conversation(state.rows[i], first[i], kind,
                                                       conversation(state.rows[i], config.system_prompt)))
                    jobs.append((len(convs) - 1, m))
                    keys.append((kind, state.rows[i]["key"], m, strength))
            texts = generate_logged(generator, convs, jobs, keys, gen_config, {a: strength for a in adapters},
                                    config.batch_size, log, config.progress) if jobs else []
            for m in models:
                got = {key[1]: t for key, t in zip(keys, texts) if key[2] == m}
                state.pushback_answers.setdefault(labels[m], {})[kind] = [got.get(state.rows[i]["key"]) for i in idx]


def pushback_section(state: EvalState, config: EvalConfig) -> dict:
    if not state.pushback_answers:
        return {"status": "skipped", "reason": "no known-answer prompts, or --no-pushback / --no-probe"}
    from stylealign.evaluate import pushback

    idx = known_rows(state)
    first = {label: [state.probe_answers[label][i] for i in idx] for label in state.pushback_answers}
    return pushback.section([state.rows[i] for i in idx], first, state.pushback_answers, config.n_boot)


def score_probe(state: EvalState, lexicons: dict) -> None:
    """Add each model's probe features (probe_*) to its per-answer features, so they get paired CIs; the
    persona's lexicon metrics are scored on the greedy answers too (probe_<name>)."""
    from stylealign.evaluate import probe, targets
    from stylealign.text import detect_language

    for name in lexicons:
        state.metrics[f"probe_{name}"] = {**state.metrics[name], "layer": "L1-coherence",
                                          "description": state.metrics[name]["description"] + " (greedy)"}
    for label, texts in state.probe_answers.items():
        for row, text, f, pf in zip(state.rows, texts, state.features[label],
                                    probe.score_answers(texts, state.rows, state.probe_stopped[label])):
            lang = detect_language(text) if text.strip() else row.get("language", "en")
            f.update(pf)
            f.update({f"probe_{k}": v for k, v in targets.lexicon_features(text, lang, lexicons).items()})


def _label(variants: list[Variant], adapter: str, strength: float) -> str:
    """Return the label of the variant for `adapter` at `strength`."""
    return next(v.label for v in variants if v.adapter == adapter and v.strength == strength)


def answer_features(row: dict, answer: str) -> dict[str, float]:
    """Return the model-free features of one answer: L0 markers, language match, robustness, truth."""
    row_lang = row.get("language") or detect_language(prompt_text(row))
    lang = detect_language(answer) if answer.strip() else row_lang
    out = style_markers(answer, lang)
    out["lang_mismatch"] = float(lang != row_lang) if answer.strip() else math.nan
    out.update(robustness_features(answer, row.get("kind")))
    out.update(truth_features(answer, row.get("expected")))
    return out


def score_answers(state: EvalState, embedder, classifier) -> None:
    """Fill state.features for every model label: L0, then relevance, drift and P(persona) when available."""
    prompts = [prompt_text(r) for r in state.rows]
    langs = [r.get("language") for r in state.rows]
    for label, answers in state.answers.items():
        feats = [answer_features(r, a) for r, a in zip(state.rows, answers)]
        extra = {"relevance": _cos(embedder, answers, prompts),
                 "drift": _cos(embedder, answers, state.answers[BASELINE]) if label != BASELINE else None,
                 "p_persona": classifier.predict(answers, langs) if classifier is not None else None}
        for name, values in extra.items():
            for f, v in zip(feats, values if values is not None else [math.nan] * len(feats)):
                f[name] = float(v)
        state.features[label] = feats


def _cos(embedder, left: list[str], right: list[str]):
    """Return row-wise cosines, or None without an embedder."""
    if embedder is None:
        return None
    from stylealign.evaluate.content import cosines

    return cosines(embedder, left, right)


def comparisons(state: EvalState, config: EvalConfig) -> dict:
    """Return {variant label: grouped paired stats (overall, by_language, by_category, by_kind, by_adversarial)}."""
    out = {}
    for v in state.variants:
        paired = [{**{g: r.get(g) for g in GROUPS}, "b": state.features[BASELINE][i], "a": state.features[v.label][i]}
                  for i, r in enumerate(state.rows)]
        out[v.label] = grouped_paired(paired, list(state.metrics), "b", "a", GROUPS, config.n_boot, config.seed)
    return out


def truth_section(state: EvalState) -> dict:
    """Return truth-under-style summaries for the baseline and each variant (overall and per language)."""
    idx = [i for i, r in enumerate(state.rows) if r.get("expected") in ("yes", "no")]
    if not idx:
        return {"status": "skipped", "reason": "no rows with an expected yes/no answer in the suites"}
    out: dict = {"status": "ok", "models": {}}
    for label, answers in state.answers.items():
        block = truth_summary([answers[i] for i in idx], [state.rows[i]["expected"] for i in idx])
        block["by_language"] = {}
        for lang in sorted({state.rows[i].get("language") for i in idx}):
            sub = [i for i in idx if state.rows[i].get("language") == lang]
            block["by_language"][lang] = truth_summary([answers[i] for i in sub], [state.rows[i]["expected"] for i in sub])
        out["models"][label] = block
    return out


def train_classifier(config: EvalConfig, embedder):
    """Return (classifier or None, report section); a missing/small preference set skips with a reason."""
    if not config.classifier or embedder is None:
        return None, {"status": "skipped", "reason": "classifier disabled or no embedder"}
    from stylealign.evaluate.classifier import load_preference_rows, train_style_classifier

    try:
        rows = load_preference_rows(config.persona, config.pref_paths)
        clf = train_style_classifier(rows, embedder, seed=config.seed)
    except (ValueError, OSError) as e:
        return None, {"status": "skipped", "reason": str(e)}
    return clf, clf.summary()


def retention(generator, state: EvalState, config: EvalConfig) -> dict:
    """Return the retention section (perplexity on the neutral corpus, KL on suite prompts) or a skip."""
    if not config.retention or not hasattr(generator, "logits"):
        return {"status": "skipped", "reason": "disabled or the generator has no logits()"}
    from stylealign.evaluate.retention import retention_section

    corpus = load_corpus(config.corpus)
    corpus = [corpus[i] for i in _spread(corpus, config.corpus_max_texts)]  # a capped sample keeps both languages
    idx = _spread(state.rows, config.kl_max_prompts)
    convs = [conversation(state.rows[i], config.system_prompt) for i in idx]
    section = retention_section(generator, corpus, [(v.adapter, v.strength) for v in state.variants], convs,
                                [state.answers[BASELINE][i] for i in idx], [state.rows[i].get("language", "en") for i in idx],
                                {(v.adapter, v.strength): v.label for v in state.variants})
    return {"status": "ok", "corpus": config.corpus, **section}


def _spread(rows: list[dict], cap: int | None) -> list[int]:
    """Return up to `cap` row indexes, alternating languages so a capped sample still covers both."""
    by_lang: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_lang.setdefault(r.get("language", "en"), []).append(i)
    order = [i for group in _interleave(list(by_lang.values())) for i in group]
    return sorted(order[:cap] if cap else order)


def _interleave(lists: list[list[int]]):
    """Yield one-element lists taking turns across `lists`."""
    for k in range(max((len(x) for x in lists), default=0)):
        for x in lists:
            if k < len(x):
                yield [x[k]]


def probe_section(state: EvalState, config: EvalConfig) -> dict:
    """Return the report's probe section, or a skip when the probe was off."""
    if not state.probe_answers:
        return {"status": "skipped", "reason": "probe disabled (--no-probe)"}
    from stylealign.evaluate import probe

    return probe.section(state.probe_answers, state.probe_stopped, state.rows, config.probe_max_new_tokens)


def judge_section(judge, state: EvalState, config: EvalConfig, spec: str | None) -> dict:
    """Return per-variant win rates of the adapter over the baseline, judged in both orders."""
    if judge is None:
        return {"status": "skipped", "reason": "no --judge given"}
    from stylealign.evaluate.judge import judge_pair, win_rate_summary

    idx = _spread(state.rows, config.judge_max_pairs)
    out: dict = {"status": "ok", "spec": spec, "variants": {}}
    for v in state.variants:
        recs = [{**judge_pair(judge, _render(state.rows[i]), state.answers[v.label][i], state.answers[BASELINE][i]),
                 "language": state.rows[i].get("language")} for i in idx]
        block = win_rate_summary(recs, config.n_boot, config.seed)
        block["by_language"] = {lg: win_rate_summary([r for r in recs if r["language"] == lg], config.n_boot, config.seed)
                                for lg in sorted({r["language"] for r in recs})}
        out["variants"][v.label] = block
    return out


def _render(row: dict) -> str:
    """Return a conversation as plain text for the judge ("User: ..." / "Assistant: ...")."""
    return "\n\n".join(f"{t['role'].capitalize()}: {t['content']}" for t in row["messages"])


def examples(state: EvalState, n: int) -> dict:
    """Return, per variant, the prompts whose answer changed most (|ΔP(persona)|, else 1 - drift), both languages."""
    out = {}
    for v in state.variants:
        fa, fb = state.features[v.label], state.features[BASELINE]
        change = [abs(a["p_persona"] - b["p_persona"]) if not math.isnan(a["p_persona"] - b["p_persona"])
                  else (1 - a["drift"] if not math.isnan(a["drift"]) else 0.0) for a, b in zip(fa, fb)]
        picked = _top_per_language(state.rows, change, n)
        out[v.label] = [{"key": state.rows[i]["key"], "language": state.rows[i].get("language"),
                         "category": state.rows[i].get("category"), "change": change[i], "prompt": prompt_text(state.rows[i]),
                         "baseline": state.answers[BASELINE][i], "adapter": state.answers[v.label][i],
                         "p_persona": [fb[i]["p_persona"], fa[i]["p_persona"]]} for i in picked]
    return out


def _top_per_language(rows: list[dict], score: list[float], n: int) -> list[int]:
    """Return up to `n` indexes with the highest score, shared fairly across languages."""
    langs = sorted({r.get("language", "en") for r in rows})
    each = max(1, math.ceil(n / max(len(langs), 1)))
    picked = []
    for lg in langs:
        idx = sorted((i for i, r in enumerate(rows) if r.get("language", "en") == lg), key=lambda i: -score[i])
        picked += idx[:each]
    return sorted(picked, key=lambda i: -score[i])[:n]


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
    gen_config = _gen_config(config)
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


def answer_settings(state: EvalState, config: EvalConfig, gen_config, base_model) -> dict:
    """Return what shapes the answers (a resumed evaluation must match it): model, adapters, prompts, sampling."""
    import hashlib
    import json

    prompts = hashlib.sha256(json.dumps([[r["key"], r["messages"]] for r in state.rows], ensure_ascii=False,
                                        sort_keys=True).encode()).hexdigest()[:16]
    return {"base_model": str(base_model), "adapters": {v.adapter: v.run or v.adapter for v in state.variants},
            "strengths": [float(s) for s in config.strengths], "generation": gen_config.to_dict(),
            "prompts": {"count": len(state.rows), "sha256": prompts}, "limit": config.limit,
            "system_prompt": config.system_prompt,
            "probe_max_new_tokens": config.probe_max_new_tokens if config.probe else None}
