"""Generating the answers the evaluation scores: the sampled pass, the greedy coherence probe and the
pushback turns, per strength and batched, each batch logged as it finishes (so `--resume` keeps it), plus
the settings a resumed evaluation must match.
"""

from __future__ import annotations

from stylealign.evaluate.config import EvalConfig
from stylealign.evaluate.state import BASELINE, EvalState, conversation, known_rows, variant_label


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
            label = BASELINE if m is None else variant_label(state.variants, m, strength)
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
            label = BASELINE if m is None else variant_label(state.variants, m, strength)
            picked = [j for j, (_, mm) in enumerate(jobs) if mm == m]
            state.probe_answers[label] = [texts[j] for j in picked]
            state.probe_stopped[label] = [stopped[j] for j in picked]


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
        labels = {m: BASELINE if m is None else variant_label(state.variants, m, strength) for m in models}
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
