"""Checkpoint selection, a guard against over-stylisation.

During `train all`, every saved checkpoint and each stage's end answers the persona's held-out probe
prompts (`data.probe` in persona.yaml; never the eval suites) greedily, with no repetition penalty —
what llama.cpp or Ollama will show a user. Each candidate's probe scores are kept; the run publishes
the best candidate under the recipe's rule (`select:`): move the rule's metric the wanted way among candidates
whose repetition (and share of empty answers) is at most the base model's plus a margin, whose yes-share of
verdicts lies in a band, whose most common opener starts at most a given share of answers, and whose yes/no
verdicts agree with the base model's own stance (what it says unprompted, `verdict.stance`) at least a given
share of the time where both take one: style that keeps what the model knows. Once a candidate has enough
style (`select.style_enough`: verdict-first on the probe's yes/no prompts, for verdict_first raised), the least
repetitive of those with enough wins rather than the most styled. When no candidate meets the
rule, the one that misses it least is published, and the manifest says so. Before the first checkpoint a stage
keeps its adapter every `select.early_every` steps, unscored; they are probed only when the stage's scored
candidates all break the rule (score_early): damage done late in a stage is caught for one probe, and a stage
that goes well pays nothing (stylealign.candidates).

The rule's metric, `select.metric: persona` by default, follows the persona's declared `targets:`: the
probe scores two persona style markers (evaluate.targets.PROBE_STYLE), verdict_first and hedge_fill
(hedges + fillers, for hedge_rate / boilerplate_rate); the first of them, in that order, whose markers
the persona declares in one direction is the metric, raised for `up` and lowered for `down`
(warm-tutor: verdict_first down; sharp-candid: verdict_first up, as before). A persona that declares
none of them gets verdict_first up. `verdict_first` and `stopped` name a metric to raise outright.

The same greedy answers feed the on-policy negatives of DPO (`dpo.on_policy_negatives`): the SFT
adapter's own looping or collapsed answers become `rejected`, the persona's answers `chosen`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

from stylealign.candidates import load_into, run_candidates
from stylealign.evaluate import probe
from stylealign.evaluate.verdict import belief_consistency, parse_verdict, polarity
from stylealign.files import file_record, read_jsonl, write_json, write_jsonl
from stylealign.text import plain_turns


def probe_rows(persona, recipe) -> list[dict]:
    """Return the persona's probe prompts in the recipe's languages ([] when it declares none)."""
    from stylealign.data import load_eval

    files = persona.probe_files() if hasattr(persona, "probe_files") else []
    rows = load_eval(files) if files else []
    if recipe.language_list:
        rows = [r for r in rows if r.get("language") in recipe.language_list]
    return rows


class Prober:
    """Greedy probe answers of the base model and of candidate adapters.

    On a GPU it decodes with the training model itself (adapter on, or disabled for the base). On a CPU
    it decodes from its own unquantized copy of the base (a few hundred MB for the embedded model), with
    the candidate's saved adapter loaded into it: bitsandbytes dequantises every 4-bit weight at every
    decode step there, which made one probe of 32 answers take minutes instead of seconds. The copy is
    loaded for each probe and freed after it, so the training steps between probes do not carry it
    (SmolLM2, the main job's SFT peak: 3,264 -> 3,116 MiB, for about a second of loading per probe).
    """

    def __init__(self, recipe, tokenizer, rows: list[dict]):
        import torch

        self.settings, self.tokenizer, self.rows = recipe.select, tokenizer, rows
        self.recipe, self.on_gpu = recipe, torch.cuda.is_available()
        self.base_answers: list[str] | None = None  # the base model's greedy answers, for belief consistency

    def answers(self, conversations: list[list[dict]], model=None, adapter: str | Path | None = None):
        """Return (answers, stopped): greedy answers with the adapter saved at `adapter` (None: the base)."""
        if self.on_gpu:
            return _greedy(model, self.tokenizer, conversations, self.settings, adapter is not None)
        import gc

        from stylealign.generate import Generator
        from stylealign.phases import trim_heap

        gen = Generator(base=self.recipe.base, quant="none", dtype=self.recipe.dtype)
        try:
            if adapter is not None:
                gen.add_adapter("candidate", str(adapter))
            stopped: list[bool] = []
            names = [None if adapter is None else "candidate"] * len(conversations)
            texts = gen.generate(conversations, names, probe.probe_generation(self.settings.max_new_tokens),
                                 batch_size=self.settings.batch_size, stopped=stopped)
        finally:
            del gen
            gc.collect()  # PEFT's modules hold reference cycles
            trim_heap()
        return texts, stopped

    def score(self, model=None, adapter: str | Path | None = None) -> dict:
        """Return the probe summary (evaluate.probe.summarize) of the greedy answers to the probe rows."""
        convs = [plain_turns(r["messages"]) for r in self.rows]
        answers, stopped = self.answers(convs, model, adapter)
        scores = probe.summarize(answers, self.rows, stopped)
        scores["examples"] = [{"id": r.get("id"), "answer": a} for r, a in list(zip(self.rows, answers))[:4]]
        scores["answers"] = answers
        if adapter is None:
            self.base_answers = answers
        elif self.base_answers is not None:
            belief = belief_consistency(self.base_answers, answers)
            scores["belief_consistency"], scores["belief_n"] = belief["share"], belief["n"]
        return scores


def _greedy(model, tokenizer, conversations: list[list[dict]], settings, adapter: bool = True):
    """Return (answers, stopped) of the training `model` decoding greedily (adapter on, or disabled);
    its train/eval mode is restored afterwards."""
    from stylealign.generate import Generator

    was_training = model.training
    off = model.disable_adapter() if not adapter and hasattr(model, "disable_adapter") else contextlib.nullcontext()
    stopped: list[bool] = []
    try:
        with off:
            gen = Generator(model=model, tokenizer=tokenizer)
            answers = gen.generate(conversations, [None] * len(conversations), probe.probe_generation(settings.max_new_tokens),
                                   batch_size=settings.batch_size, stopped=stopped)
    finally:
        model.train(was_training)
    return answers, stopped


# ---------------------------------------------------------------- the rule


BELIEF_MIN_N = 4  # verdicts on which base and candidate both take a stance, before belief consistency counts


def violations(scores: dict, base: dict, rule) -> dict[str, float]:
    """Return how far a candidate misses each constraint of the rule (0 = met)."""
    rep, base_rep = scores.get("repetitive") or 0.0, base.get("repetitive") or 0.0
    yes, top = scores.get("yes_share"), scores.get("top_opener") or 0.0
    return {
        "repetition": max(0.0, rep - (base_rep + rule.max_repetition_over_base)),
        "yes_share": 0.0 if yes is None else max(0.0, rule.yes_share_min - yes, yes - rule.yes_share_max),
        "top_opener": max(0.0, top - rule.max_top_opener),
        "empty": max(0.0, (scores.get("empty") or 0.0) - (base.get("empty") or 0.0) - rule.max_repetition_over_base),
        "belief": (max(0.0, rule.min_belief_consistency - scores["belief_consistency"])
                   if scores.get("belief_consistency") is not None and (scores.get("belief_n") or 0) >= BELIEF_MIN_N
                   else 0.0),
    }


def resolve_metric(rule, persona=None) -> dict:
    """Return the rule's metric as {"metric", "direction" ("up"/"down"), "source"}: the recipe's
    `select.metric`, or for "persona" the persona's declared direction on the first probe style marker
    it declares (module docstring)."""
    if rule.metric != "persona":
        return {"metric": rule.metric, "direction": "up", "source": f"select.metric: {rule.metric}"}
    from stylealign.evaluate.targets import PROBE_STYLE

    declared = getattr(persona, "targets", None) or {}
    for probe_name, markers in PROBE_STYLE.items():
        named = [m for m in markers if m in declared]
        wanted = {declared[m] for m in named}
        if len(wanted) == 1:
            return {"metric": probe_name.removeprefix("probe_"), "direction": wanted.pop(),
                    "source": "persona targets: " + ", ".join(f"{m} {declared[m]}" for m in named)}
    return {"metric": "verdict_first", "direction": "up",
            "source": "the kit's default (the persona declares no target the probe scores)"}


def choose(candidates: list[dict], base: dict, rule, persona=None) -> tuple[int, bool]:
    """Return (index of the best candidate, whether it meets the rule). Among candidates that meet every
    constraint the best rule metric wins — highest for a metric wanted up, lowest for one wanted down
    (resolve_metric) — then less repetition, then the earlier one; when none does, the smallest total
    miss wins. A candidate without a score on the metric ranks last on it.

    With verdict_first raised and `rule.style_enough` set, the candidates that meet every constraint and open
    with a verdict on at least that share of the probe's yes/no prompts are styled enough: the least
    repetitive of them wins, then the more styled, then the earlier. Past the target, more verdicts are bought
    with coherence (the main job's SFT step 20 against step 10, benchmarks/CANDOR.md §8)."""
    if not candidates:
        raise ValueError("no candidates to choose from")
    wanted = resolve_metric(rule, persona)
    sign = 1.0 if wanted["direction"] == "up" else -1.0
    miss = [sum(violations(c["scores"], base, rule).values()) for c in candidates]
    values = [c["scores"].get(wanted["metric"]) for c in candidates]
    metric = [float("-inf") if v is None else sign * v for v in values]
    rep = [c["scores"].get("repetitive") or 0.0 for c in candidates]
    ok = [i for i, m in enumerate(miss) if m == 0]
    if wanted["metric"] == "verdict_first" and sign > 0 and rule.style_enough > 0:
        enough = [i for i in ok if (candidates[i]["scores"].get("verdict_first_yes_no") or 0.0) >= rule.style_enough]
        if enough:
            return min(enough, key=lambda i: (rep[i], -metric[i], i)), True
    if ok:
        return max(ok, key=lambda i: (metric[i], -rep[i], -i)), True
    return min(range(len(candidates)), key=lambda i: (miss[i], -metric[i], i)), False


# ---------------------------------------------------------------- on-policy negatives


def on_policy_pairs(prober: Prober, model, adapter: str | Path, rows: list[dict], n: int, seed: int = 0) -> list[dict]:
    """Return preference pairs whose `rejected` is the model's own greedy answer to a preference prompt
    when that answer repeats itself, opens like most of its answers while the persona's does not, or gives
    the opposite yes/no verdict to the persona's (a "No"-bot's "No, plants do not need light")."""
    import random

    picked = random.Random(seed).sample(rows, min(n, len(rows)))
    convs = [plain_turns(r["prompt"]) for r in picked]
    answers, stopped = prober.answers(convs, model, adapter)
    langs = [r.get("language", "en") for r in picked]
    feats = probe.score_answers(answers, [{"language": lg, "messages": c} for lg, c in zip(langs, convs)], stopped)
    top = probe.mark_top_openers(answers, langs, [dict(f) for f in feats])
    out = []
    for row, answer, f, lang in zip(picked, answers, feats, langs):
        chosen = row["chosen"][-1]["content"]
        collapsed = f["probe_top_opener"] == 1 and probe.opener(chosen, lang) != top[lang]["opener"]
        said, right = polarity(parse_verdict(answer)), polarity(parse_verdict(chosen))
        contrary = bool(said and right and said != right)
        if answer.strip() and (f["probe_repetitive"] == 1 or collapsed or contrary):
            out.append({**row, "id": f"{row.get('id', 'pair')}-on-policy", "rejected_kind": "on_policy",
                        "rejected": [{"role": "assistant", "content": answer}]})
    return out


# ---------------------------------------------------------------- one training run


def selection_flags(selection: dict) -> list[dict]:
    """Return the run's red flags from its selection block: the published candidate breaks the rule."""
    if selection.get("status") != "ok" or selection.get("rule_met"):
        return []
    chosen = selection["selected"]
    from stylealign.config import SelectSettings
    from stylealign.options import from_dict

    rule = from_dict(SelectSettings, selection["rule"], "select")
    missed = {k: round(v, 3) for k, v in violations(chosen["scores"], selection["baseline"], rule).items() if v > 0}
    what = ", ".join(f"{k} by {v:g}" for k, v in missed.items()) or "the rule"
    return [{"code": "selection_rule_not_met",
             "message": f"no checkpoint met the selection rule; published {chosen['stage']} step {chosen['step']}, "
                        f"which misses {what} (greedy probe)"}]


def on_policy_mix(persona_pairs: list[dict], n_on_policy: int, share: float, seed: int) -> list[dict]:
    """Return the persona pairs that go with `n_on_policy` on-policy pairs so that those make up `share`
    of the DPO rows (a seeded sample); all of them when share is 0 or there are no on-policy pairs."""
    import random

    if share <= 0 or n_on_policy == 0:
        return persona_pairs
    keep = min(len(persona_pairs), round(n_on_policy * (1 - share) / share))
    return random.Random(seed).sample(persona_pairs, keep)


class RunSelection:
    """Checkpoint selection for one training run: the base model's probe scores, then the stages' candidates,
    the DPO start point, and the manifest's selection block."""

    def __init__(self, persona, recipe, tokenizer, work: Path, model):
        self.recipe, self.persona = recipe, persona
        self.rows = probe_rows(persona, recipe)
        self.prober = Prober(recipe, tokenizer, self.rows) if self.rows else None
        self.base = self._baseline(work, model) if self.rows else None

    def _baseline(self, work: Path, model) -> dict:
        path = work / "probe_baseline.json"
        if path.exists():  # resumed: the base model answers as before
            scores = json.loads(path.read_text())
            self.prober.base_answers = scores.get("answers")
            return scores
        print(f"[select] probing the base model on {len(self.rows)} held-out prompts (greedy)", flush=True)
        scores = self.prober.score(model, adapter=None)
        write_json(path, scores)
        return scores

    def before_dpo(self, model, dpo_data, stages_dir: Path, sft_stages=("sft",), negatives: str = "on_policy.jsonl"):
        """Start DPO from the best candidate of the SFT stages (recipe select.dpo_from) and add on-policy negatives
        (kept in stages_dir / `negatives`) to `dpo_data`."""
        sft = run_candidates(stages_dir.parent, sft_stages)
        start = sft[-1] if sft else None
        if self.rows and sft and self.recipe.select.dpo_from == "best":
            start = sft[choose(sft, self.base, self.recipe.select, self.persona)[0]]
            if start is not sft[-1]:
                print(f"[select] DPO starts from SFT step {start['step']} (best under the rule)", flush=True)
                load_into(model, start)
        d = self.recipe.dpo
        if d.on_policy_negatives > 0 and start is not None:
            pairs = self._negatives(model, start, dpo_data, stages_dir / negatives, d.on_policy_negatives)
            dpo_data.train = pairs + on_policy_mix(dpo_data.train, len(pairs), d.on_policy_share, self.recipe.seed)
        return model

    def _negatives(self, model, start: dict, dpo_data, path: Path, n: int) -> list[dict]:
        if not path.exists():
            pairs = on_policy_pairs(self.prober, model, start["path"], dpo_data.train, n, self.recipe.seed)
            write_jsonl(path, pairs)
            print(f"[select] {len(pairs)} on-policy negatives from {min(n, len(dpo_data.train))} SFT answers", flush=True)
        rows = read_jsonl(path)
        dpo_data.files.append(file_record(path, len(rows)))
        return rows

    def met(self, work: Path, stages) -> bool:
        """Whether a candidate of these stages meets the selection rule."""
        cands = run_candidates(work, stages)
        return bool(cands) and choose(cands, self.base, self.recipe.select, self.persona)[1]

    def block(self, work: Path, stages) -> dict:
        """Return the manifest's selection block: rule, base scores, every candidate, the selected one."""
        cands = run_candidates(work, stages)
        if not cands:
            return {"status": "no candidates"}
        best, met = choose(cands, self.base, self.recipe.select, self.persona)
        for c in cands:
            c["violations"] = violations(c["scores"], self.base, self.recipe.select)
            c["path"] = os.path.relpath(c["path"], work)  # the run folder is renamed when published
        return {"status": "ok", "rule": dataclasses.asdict(self.recipe.select),
                "metric": resolve_metric(self.recipe.select, self.persona), "baseline": self.base, "candidates": cands,
                "selected": cands[best], "rule_met": met}
