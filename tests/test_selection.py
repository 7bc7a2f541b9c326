"""Checkpoint selection: the rule picks the known best candidate and respects its constraints; a run
records every candidate and publishes the selected one; the shipped recipe's DPO loss has its terms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stylealign import candidates, selection
from stylealign.config import SelectSettings, load_recipe

HELDOUT = Path(__file__).resolve().parents[1] / "personas" / "sharp-candid" / "probe" / "heldout.jsonl"
BASE = {"repetitive": 0.30, "yes_share": 0.5, "top_opener": 0.2}


def cand(step, vf, rep, yes, top, stage="sft"):
    return {"stage": stage, "step": step, "path": f"c{step}",
            "scores": {"verdict_first": vf, "repetitive": rep, "yes_share": yes, "top_opener": top}}


def test_choose_maximises_the_metric_among_candidates_that_meet_the_rule():
    cands = [cand(20, 0.40, 0.30, 0.50, 0.30), cand(40, 0.70, 0.33, 0.45, 0.40),  # best that meets the rule
             cand(60, 0.90, 0.60, 0.50, 0.40),   # more style, but loops (0.60 > 0.30 + 0.05)
             cand(80, 0.95, 0.30, 0.05, 0.45),   # a "No"-bot: yes-share 0.05
             cand(90, 0.99, 0.30, 0.50, 0.85)]   # collapsed onto one opener
    best, met = selection.choose(cands, BASE, SelectSettings())
    assert (cands[best]["step"], met) == (40, True)


def test_each_constraint_excludes_a_candidate():
    rule = SelectSettings()
    assert selection.violations(cand(1, 1, 0.36, 0.5, 0.2)["scores"], BASE, rule)["repetition"] == pytest.approx(0.01)
    assert selection.violations(cand(1, 1, 0.30, 0.8, 0.2)["scores"], BASE, rule)["yes_share"] == pytest.approx(0.1)
    assert selection.violations(cand(1, 1, 0.30, 0.2, 0.2)["scores"], BASE, rule)["yes_share"] == pytest.approx(0.1)
    assert selection.violations(cand(1, 1, 0.30, 0.5, 0.6)["scores"], BASE, rule)["top_opener"] == pytest.approx(0.1)
    assert sum(selection.violations(cand(1, 1, 0.35, None, 0.5)["scores"], BASE, rule).values()) == 0


def test_when_no_candidate_meets_the_rule_the_smallest_miss_wins_and_says_so():
    cands = [cand(10, 0.9, 0.9, 0.5, 0.3), cand(20, 0.5, 0.40, 0.5, 0.3), cand(30, 0.9, 0.5, 0.0, 0.9)]
    best, met = selection.choose(cands, BASE, SelectSettings())
    assert (cands[best]["step"], met) == (20, False)


def test_ties_prefer_less_repetition_then_the_earlier_candidate():
    cands = [cand(10, 0.6, 0.32, 0.5, 0.3), cand(20, 0.6, 0.31, 0.5, 0.3), cand(30, 0.6, 0.31, 0.5, 0.3)]
    best, _ = selection.choose(cands, BASE, SelectSettings())
    assert cands[best]["step"] == 20


def test_styled_enough_candidates_give_way_to_the_least_repetitive():
    """With verdict_first raised, candidates past `style_enough` on the probe's yes/no prompts are styled enough:
    the least repetitive of them wins (the main job's SFT step 10 over step 20); below it, or with the switch off,
    or for a persona that wants fewer verdicts, the most styled candidate wins as before."""
    def styled(step, vf, vf_yes_no, rep):
        c = cand(step, vf, rep, 0.5, 0.3)
        c["scores"]["verdict_first_yes_no"] = vf_yes_no
        return c

    cands = [styled(10, 0.49, 0.69, 0.07), styled(20, 0.62, 0.85, 0.18), styled(30, 0.67, 0.92, 0.36)]  # 30 loops
    base = {"repetitive": 0.18, "yes_share": 0.25, "top_opener": 0.36}
    assert selection.choose(cands, base, SelectSettings()) == (0, True)
    assert selection.choose(cands, base, SelectSettings(style_enough=0.0)) == (1, True)
    assert selection.choose(cands, base, SelectSettings(style_enough=0.9)) == (1, True)  # none enough: most styled
    assert selection.choose(cands, base, SelectSettings(style_enough=0.8)) == (1, True)  # only step 20 is enough
    assert selection.choose([styled(10, 0.5, 0.7, 0.1), styled(20, 0.6, 0.8, 0.1)], base, SelectSettings()) == (1, True)
    from stylealign.personas import load_persona

    tutor = load_persona(PERSONAS / "warm-tutor")  # verdict_first down: fewest verdicts, as before
    assert selection.choose(cands, base, SelectSettings(), tutor) == (0, True)
    assert selection.choose([styled(10, 0.3, 0.9, 0.07), styled(20, 0.2, 0.9, 0.18)], base, SelectSettings(),
                            tutor) == (1, True)
    with pytest.raises(ValueError, match="style_enough"):
        SelectSettings(style_enough=1.5)


PERSONAS = Path(__file__).resolve().parents[1] / "personas"


def test_a_down_target_makes_the_rule_pick_the_lower_candidate():
    """warm-tutor declares verdict_first down: `persona` picks the candidate with fewer bare verdicts up
    front, where `verdict_first` picks the one with more."""
    from stylealign.personas import load_persona

    tutor = load_persona(PERSONAS / "warm-tutor")
    assert selection.resolve_metric(SelectSettings(), tutor)["metric"] == "verdict_first"
    assert selection.resolve_metric(SelectSettings(), tutor)["direction"] == "down"
    cands = [cand(10, 0.70, 0.30, 0.50, 0.30), cand(20, 0.20, 0.31, 0.50, 0.30), cand(30, 0.45, 0.30, 0.50, 0.30),
             cand(40, 0.05, 0.60, 0.50, 0.30)]  # fewest verdicts, but loops: excluded
    assert cands[selection.choose(cands, BASE, SelectSettings(metric="persona"), tutor)[0]]["step"] == 20
    assert cands[selection.choose(cands, BASE, SelectSettings(metric="verdict_first"), tutor)[0]]["step"] == 10


def test_persona_resolves_to_verdict_first_up_for_sharp_candid_and_chooses_the_same():
    from stylealign.personas import load_persona

    sharp = load_persona(PERSONAS / "sharp-candid")
    wanted = selection.resolve_metric(SelectSettings(), sharp)
    assert (wanted["metric"], wanted["direction"]) == ("verdict_first", "up")
    cands = [cand(10, 0.40, 0.30, 0.50, 0.30), cand(20, 0.70, 0.33, 0.45, 0.40), cand(30, 0.70, 0.31, 0.50, 0.30),
             cand(40, 0.90, 0.60, 0.50, 0.40), cand(50, 0.30, 0.30, 0.50, 0.30)]
    by_persona = selection.choose(cands, BASE, SelectSettings(metric="persona"), sharp)
    assert by_persona == selection.choose(cands, BASE, SelectSettings(metric="verdict_first"), sharp) == (2, True)


def test_persona_metric_without_a_scored_target_is_verdict_first_up_and_hedges_down_resolve_to_hedge_fill():
    from types import SimpleNamespace

    assert selection.resolve_metric(SelectSettings(), None)["metric"] == "verdict_first"
    none_scored = SimpleNamespace(targets={"asks_back": "up", "list_items": "down"})
    assert (selection.resolve_metric(SelectSettings(), none_scored)["direction"]) == "up"
    hedgy = SimpleNamespace(targets={"asks_back": "up", "hedge_rate": "down"})
    wanted = selection.resolve_metric(SelectSettings(), hedgy)
    assert (wanted["metric"], wanted["direction"]) == ("hedge_fill", "down")
    cands = [{**cand(10, 0.5, 0.30, 0.5, 0.3), "scores": {**cand(10, 0.5, 0.30, 0.5, 0.3)["scores"], "hedge_fill": 3.0}},
             {**cand(20, 0.5, 0.30, 0.5, 0.3), "scores": {**cand(20, 0.5, 0.30, 0.5, 0.3)["scores"], "hedge_fill": 1.0}}]
    assert selection.choose(cands, BASE, SelectSettings(), hedgy)[0] == 1
    assert selection.resolve_metric(SelectSettings(metric="stopped"), hedgy) == {
        "metric": "stopped", "direction": "up", "source": "select.metric: stopped"}


def test_select_settings_validate():
    with pytest.raises(ValueError, match="yes_share_min"):
        SelectSettings(yes_share_min=0.8, yes_share_max=0.2)


def test_shipped_cpu_recipe_dpo_loss_contains_its_terms(tmp_path):
    from stylealign.train import dpo_config

    recipe = load_recipe("smollm2-135m_qlora_cpu")
    args = dpo_config(recipe, tmp_path)
    assert args.loss_type == recipe.dpo.loss_type_list
    assert args.loss_weights == recipe.dpo.loss_weight_list
    assert args.beta == recipe.dpo.beta
    if len(args.loss_type) > 1:
        assert len(args.loss_weights) == len(args.loss_type)


def test_multi_loss_recipe_fields_reach_trl(tmp_path):
    from stylealign.train import dpo_config

    recipe = load_recipe(None, {"dpo.loss_type": "sigmoid, sft", "dpo.loss_weights": "1.0,0.2", "dpo.beta": 0.3})
    args = dpo_config(recipe, tmp_path)
    assert (args.loss_type, args.loss_weights, args.beta) == (["sigmoid", "sft"], [1.0, 0.2], 0.3)
    with pytest.raises(ValueError, match="loss_weights"):
        load_recipe(None, {"dpo.loss_type": "sigmoid,sft", "dpo.loss_weights": "1.0"})


def test_train_all_scores_candidates_and_publishes_the_selected_one(small_persona, tiny_recipe_overrides, tmp_path,
                                                                    capsys):
    """On the tiny model: every checkpoint and stage end becomes a scored candidate, each announced in one line, the
    manifest records them with the rule, adapter/ holds the selected candidate's weights, and DPO got on-policy
    pairs."""
    from safetensors.torch import load_file

    from stylealign.personas import load_persona
    from stylealign.train import train_run

    probe_dir = small_persona / "probe"
    probe_dir.mkdir()
    rows = [line for line in HELDOUT.read_text().splitlines() if line.strip()][:4]
    (probe_dir / "p.jsonl").write_text("\n".join(rows) + "\n")
    yaml_file = small_persona / "persona.yaml"
    yaml_file.write_text(yaml_file.read_text() + "  probe: [probe/p.jsonl]\n")
    overrides = {**tiny_recipe_overrides, "sft.max_steps": 4, "sft.save_steps": 2, "select.max_new_tokens": 8,
                 "dpo.max_steps": 2, "dpo.save_steps": 10, "dpo.on_policy_negatives": 3, "select.retry_lr": 0}
    run = train_run(load_persona(small_persona), load_recipe(None, overrides), tmp_path / "run")
    sel = json.loads((run / "manifest.json").read_text())["selection"]
    assert sel["status"] == "ok" and sel["rule"]["metric"] == "persona"
    assert sel["metric"] == selection.resolve_metric(load_recipe(None, overrides).select, load_persona(small_persona))
    assert [(c["stage"], c["step"]) for c in sel["candidates"]] == [("sft", 2), ("sft", 4), ("dpo", 2)]
    out = capsys.readouterr().out.splitlines()
    announced = [line.split(":")[0] for line in out if line.startswith(("[select] sft step", "[select] dpo step"))]
    assert announced == ["[select] sft step 2", "[select] sft step 4", "[select] dpo step 2"]
    assert {"repetitive", "top_opener", "yes_share", "verdict_first", "stopped"} <= set(sel["candidates"][0]["scores"])
    assert "repetitive" in sel["baseline"]
    chosen = run / sel["selected"]["path"] / "adapter_model.safetensors"
    published, picked = load_file(str(run / "adapter" / "adapter_model.safetensors")), load_file(str(chosen))
    assert published.keys() == picked.keys() and all((published[k] == picked[k]).all() for k in picked)
    assert (run / "stages" / "on_policy.jsonl").exists()
    assert (run / "training.png").stat().st_size > 0


def _with_probe(persona: Path) -> Path:
    (persona / "probe").mkdir()
    rows = [line for line in HELDOUT.read_text().splitlines() if line.strip()][:4]
    (persona / "probe" / "p.jsonl").write_text("\n".join(rows) + "\n")
    (persona / "persona.yaml").write_text((persona / "persona.yaml").read_text() + "  probe: [probe/p.jsonl]\n")
    return persona


@pytest.mark.parametrize("reachable", [False, True])
def test_a_run_is_trained_again_at_a_lower_rate_only_when_no_candidate_meets_the_rule(small_persona, tiny_recipe_overrides,
                                                                                   tmp_path, monkeypatch, reachable):
    from stylealign.personas import load_persona
    from stylealign.train import RETRY, train_run

    # the tiny model's answers are noise; the rule's verdict on them is set here, the mechanism is what is tested
    monkeypatch.setattr(selection, "violations", lambda scores, base, rule: {"repetition": 0.0 if reachable else 0.5})
    overrides = {**tiny_recipe_overrides, "sft.max_steps": 2, "sft.save_steps": 10, "select.max_new_tokens": 8,
                 "dpo.max_steps": 1, "dpo.save_steps": 10, "select.retry_lr": 0.25}
    run = train_run(load_persona(_with_probe(small_persona)), load_recipe(None, overrides), tmp_path / "run")
    info = json.loads((run / "manifest.json").read_text())
    stages = [(c["stage"], c["step"]) for c in info["selection"]["candidates"]]
    if reachable:
        assert stages == [("sft", 2), ("dpo", 1)] and "sft" + RETRY not in info["stages"]
        assert info["selection"]["rule_met"] and "red_flags" not in info
    else:
        assert stages == [("sft", 2), ("dpo", 1), ("sft" + RETRY, 2), ("dpo" + RETRY, 1)]
        for kind in ("sft", "dpo"):
            assert info["stages"][kind + RETRY]["learning_rate"] == pytest.approx(0.25 * info["stages"][kind]["learning_rate"])
        assert [f["code"] for f in info["red_flags"]] == ["selection_rule_not_met"]


def test_early_candidates_are_kept_unscored_and_probed_only_when_the_stage_breaks_the_rule(
        small_persona, tiny_recipe_overrides, tmp_path, monkeypatch, capsys):
    """A stage keeps its adapter every `select.early_every` steps before its first checkpoint. When its scored
    candidates all break the rule (the SFT stage here: damage done late), the early ones are probed, and the one
    that meets the rule is published with no retry; when a stage goes well (DPO here) they stay on disk, unprobed."""
    from safetensors.torch import load_file

    from stylealign.personas import load_persona
    from stylealign.train import RETRY, train_run

    # the tiny model's answers are noise: each SFT candidate's repetition is set by its step (only step 2 keeps
    # the base's), every DPO candidate's is the base's; the mechanism is what is tested
    real = selection.Prober.score

    def score(self, model=None, adapter=None):
        scores = real(self, model, adapter)
        damaged = adapter is not None and "/stages/sft/" in str(adapter) and not str(adapter).endswith("step-2")
        scores["repetitive"] = 1.0 if damaged else 0.0
        return scores

    monkeypatch.setattr(selection.Prober, "score", score)
    monkeypatch.setattr(selection, "violations", lambda scores, base, rule: {"repetition": scores["repetitive"]})
    overrides = {**tiny_recipe_overrides, "sft.max_steps": 4, "sft.save_steps": 4, "select.max_new_tokens": 8,
                 "dpo.max_steps": 2, "dpo.save_steps": 10, "select.early_every": 1, "select.retry_lr": 0.25}
    run = train_run(load_persona(_with_probe(small_persona)), load_recipe(None, overrides), tmp_path / "run")
    info = json.loads((run / "manifest.json").read_text())
    sel, sft = info["selection"], run / "stages" / "sft" / "candidates"
    assert [(c["stage"], c["step"], c.get("early", False)) for c in sel["candidates"]] == [
        ("sft", 1, True), ("sft", 2, True), ("sft", 3, True), ("sft", 4, False), ("dpo", 2, False)]
    assert (sel["selected"]["stage"], sel["selected"]["step"], sel["rule_met"]) == ("sft", 2, True)
    assert "red_flags" not in info and "sft" + RETRY not in info["stages"]
    announced = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if "(early)" in line]
    assert announced == [f"[select] sft step {n} (early)" for n in (1, 2, 3)]
    kept = run / "stages" / "dpo" / "candidates" / "step-1"
    assert (kept / "adapter_model.safetensors").exists() and not (kept / candidates.SCORES).exists()
    early, end = (load_file(str(sft / f"step-{n}" / "adapter_model.safetensors")) for n in (2, 4))
    assert any(not (early[k] == end[k]).all() for k in end), "the early candidate holds step 2's weights"


def test_scoring_an_early_candidate_on_a_gpu_swaps_its_weights_in_and_puts_the_model_back(tiny_model_dir, tmp_path):
    """On a GPU the prober decodes with the training model itself: the early candidate's weights must be the
    ones probed, and the training weights must be back afterwards."""
    import torch
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    folder = tmp_path / "stage" / "candidates" / "step-3"
    model.save_pretrained(folder, selected_adapters=["default"], safe_serialization=True)
    saved = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(1.0)  # the training went on after step 3
    now = {k: v.clone() for k, v in get_peft_model_state_dict(model).items()}

    class GpuProber:
        on_gpu, seen = True, []

        def score(self, model, adapter):
            self.seen.append({k: v.clone() for k, v in get_peft_model_state_dict(model).items()})
            return {"verdict_first": 0.5, "repetitive": 0.0, "top_opener": 0.2, "yes_share": 0.5}

    prober = GpuProber()
    records = candidates.score_early(model, prober, tmp_path / "stage", "sft")
    assert [(r["step"], r["early"]) for r in records] == [(3, True)]
    assert all(torch.equal(prober.seen[0][k], saved[k]) for k in saved), "the probe saw step 3's weights"
    back = get_peft_model_state_dict(model)
    assert all(torch.equal(back[k], now[k]) for k in now), "the training weights are restored"
    assert candidates.score_early(model, prober, tmp_path / "stage", "sft") == [], "scored once"


def test_on_policy_pairs_make_up_the_stated_share_of_dpo_rows():
    from stylealign.selection import on_policy_mix

    persona = [{"id": i} for i in range(100)]
    assert len(on_policy_mix(persona, 20, 0.5, seed=0)) == 20
    assert len(on_policy_mix(persona, 20, 0.25, seed=0)) == 60
    assert on_policy_mix(persona, 20, 0.0, seed=0) == persona
    assert on_policy_mix(persona, 0, 0.5, seed=0) == persona
    assert on_policy_mix(persona, 20, 0.5, seed=0) == on_policy_mix(persona, 20, 0.5, seed=0)


def test_cpu_prober_loads_its_copy_for_each_probe_and_frees_it_after(tiny_model_dir, tmp_path, monkeypatch):
    """On a CPU the probe decodes from its own unquantized copy of the base, which lives only during a probe:
    the training steps between probes do not carry it."""
    import gc
    import types
    import weakref

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from stylealign import generate, models

    torch.manual_seed(0)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model_dir),
                          LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False))
    peft.save_pretrained(tmp_path / "candidate")
    alive, real = weakref.WeakSet(), generate.Generator

    class Tracked(real):
        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            alive.add(self)

    monkeypatch.setattr(generate, "Generator", Tracked)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    recipe = types.SimpleNamespace(base=str(tiny_model_dir), dtype="fp32",
                                   select=SelectSettings(max_new_tokens=8, batch_size=4))
    prober = selection.Prober(recipe, models.load_tokenizer(str(tiny_model_dir)), [])
    convs = [[{"role": "user", "content": f"Is {n} a prime number?"}] for n in (7, 9, 12)]
    base, _ = prober.answers(convs)
    gc.collect()
    assert len(alive) == 0, "no generator outlives its probe"
    tuned, stopped = prober.answers(convs, adapter=tmp_path / "candidate")
    gc.collect()
    assert len(alive) == 0 and len(tuned) == len(stopped) == 3
    assert tuned != base, "the candidate's adapter was loaded"


def test_empty_answers_and_contradicting_the_base_fail_the_rule_and_the_candidate_that_keeps_beliefs_wins():
    """A destroyed adapter answers nothing: no repetition, no opener, no verdicts, yet it must not pass. A candidate
    whose verdicts contradict the base model's own stance fails too; the one that keeps it is published."""
    rule = SelectSettings()
    empty = cand(30, 0.0, 0.0, None, 0.0)
    empty["scores"]["empty"] = 0.9
    assert selection.violations(empty["scores"], BASE, rule)["empty"] == pytest.approx(0.85)
    contrary = cand(10, 0.90, 0.30, 0.5, 0.3)
    contrary["scores"].update(belief_consistency=0.25, belief_n=8)
    keeps = cand(20, 0.70, 0.30, 0.5, 0.3)
    keeps["scores"].update(belief_consistency=0.75, belief_n=8)
    assert selection.violations(contrary["scores"], BASE, rule)["belief"] == pytest.approx(0.25)
    few = cand(40, 0.95, 0.30, 0.5, 0.3)
    few["scores"].update(belief_consistency=0.0, belief_n=selection.BELIEF_MIN_N - 1)  # too few shared stances to judge
    assert selection.violations(few["scores"], BASE, rule)["belief"] == 0
    cands = [empty, contrary, keeps]
    assert selection.choose(cands, BASE, rule) == (2, True)


def test_belief_consistency_counts_only_prompts_where_both_take_a_stance():
    from stylealign.evaluate.verdict import belief_consistency, stance

    base = ["The answer to this question is yes, plants do need sunlight.", "No, snakes do not have legs.",
            "The Moon is far away.", "The answer is no."]
    adapter = ["Yes. They need it.", "They do.", "No.", "It isn't."]
    assert [stance(b) for b in base] == ["yes", "no", None, "no"]
    got = belief_consistency(base, adapter)
    assert got == {"agree": 2, "n": 3, "share": pytest.approx(2 / 3)}
