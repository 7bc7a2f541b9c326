"""The trainers (stylealign.train.trainers): the fast path (label-position LM head, length-grouped batches, language
filter, attention choice) and the arguments a recipe passes to TRL."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import tiny_trainer

from stylealign.config import load_recipe
from stylealign.personas import load_persona


@pytest.mark.parametrize("stage,padding_free", [("sft", False), ("sft", True), ("dpo", False)])
def test_label_position_head_gives_trl_kernel_results_and_gradients(stage, padding_free, tiny_model_dir, small_persona,
                                                                     tiny_recipe_overrides, tmp_path, monkeypatch):
    """On a CPU the kit scores only label positions with a plain log-softmax (and in DPO runs each pair's prompt
    once, its KV cache shared by chosen and rejected); per-token log-probs, entropy, top-1 and the LoRA gradients
    must equal what TRL's own fused kernel gives on the full batch."""
    from stylealign import lmhead

    results, shared_calls = {}, []
    real_shared = lmhead.shared_prompt_hidden
    monkeypatch.setattr(lmhead, "shared_prompt_hidden", lambda *a, **k: shared_calls.append(1) or real_shared(*a, **k))
    overrides = {**tiny_recipe_overrides, "sft.padding_free": padding_free}
    for head in ("auto", "trl"):
        trainer = tiny_trainer(stage, tiny_model_dir, small_persona, {**overrides, "lm_head": head}, tmp_path / head)
        fast = "label-positions" + (", shared prompt" if stage == "dpo" else "")  # DPO: each prompt runs once
        assert trainer.stylealign_lm_head == (fast if head == "auto" else "trl")
        batch = next(iter(trainer.get_train_dataloader()))
        if stage == "sft":  # what SFTTrainer.compute_loss passes
            out = trainer.model(**batch, fused_lm_head=True)
        else:  # what DPOTrainer._compute_loss passes
            labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
            kwargs = {k: v for k, v in batch.items() if k != "completion_mask"}
            out = trainer.model(**kwargs, labels=labels, use_cache=False, fused_lm_head=True)
        assert 0 < int(out.label_mask.sum()) < out.label_mask.numel()  # prompt tokens are not scored
        out.log_probs.sum().backward()
        grads = {n: p.grad.clone() for n, p in trainer.model.named_parameters() if p.grad is not None}
        fields = {k: getattr(out, k) for k in ("log_probs", "entropy", "is_top1", "label_mask")}
        if stage == "dpo":
            fields["mean_logits"] = out.mean_logits
        results[head] = (fields, grads)
    assert len(shared_calls) == (1 if stage == "dpo" else 0)  # the DPO batch took the shared-prompt pass
    (fast, fast_grads), (trl, trl_grads) = results["auto"], results["trl"]
    for key in trl:
        assert fast[key] is not None, key
        if fast[key].dtype == torch.bool:
            assert torch.equal(fast[key], trl[key]), key
        else:
            torch.testing.assert_close(fast[key], trl[key], rtol=1e-4, atol=1e-4, msg=key)
    assert fast_grads.keys() == trl_grads.keys() and fast_grads
    assert all("lora" in n for n in fast_grads)  # the base stays frozen
    for name in trl_grads:
        torch.testing.assert_close(fast_grads[name], trl_grads[name], rtol=1e-3, atol=1e-5, msg=name)


def test_chunked_scoring_equals_one_pass():
    """Beyond chunk_tokens label positions, chunks are recomputed in backward: same values and gradients."""
    from stylealign.lmhead import score_labels

    g = torch.Generator().manual_seed(0)
    w, b = torch.randn(50, 8, generator=g), None
    y = torch.randint(0, 50, (37,), generator=g)
    runs = []
    for chunk in (1000, 5):
        h = torch.randn(37, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
        fields = score_labels(h, w, b, y, ("log_probs", "entropy", "is_top1", "mean_logits"), chunk_tokens=chunk)
        fields[0].sum().backward()
        runs.append((fields, h.grad))
    (one, g1), (chunked, g2) = runs
    for a, c in zip(one, chunked):
        if a is not None:
            torch.testing.assert_close(a, c)
    torch.testing.assert_close(g1, g2)
    assert one[2] is None  # log_sum_sq_probs was not asked for



def test_a_smaller_micro_batch_with_length_group_trains_each_step_on_the_same_rows():
    """sft.batch_size 2 x grad_accum 4 with length_group 4 feeds every optimizer step the 8 rows it had as 4 x 2
    (so less memory does not move what selection published); a length_group that does not split into
    micro-batches is refused in one line."""
    from stylealign.train.trainers import _train_rows

    rows = [{"id": i, "text": "x" * (1 + (i * 37) % 300)} for i in range(96)]
    as_4x2 = load_recipe("smollm2-135m_qlora_cpu", {"sft.batch_size": 4, "sft.grad_accum": 2, "sft.length_group": 0})
    as_2x4 = load_recipe("smollm2-135m_qlora_cpu", {"sft.batch_size": 2, "sft.grad_accum": 4, "sft.length_group": 4})
    before, after = _train_rows(rows, as_4x2.sft, as_4x2), _train_rows(rows, as_2x4.sft, as_2x4)
    steps = lambda order: [[r["id"] for r in order[i:i + 8]] for i in range(0, len(order), 8)]  # noqa: E731
    assert steps(before) == steps(after)
    plain = load_recipe("smollm2-135m_qlora_cpu", {"sft.batch_size": 2, "sft.grad_accum": 4, "sft.length_group": 0})
    assert steps(_train_rows(rows, plain.sft, plain)) != steps(before), "the group size is what keeps the steps"
    with pytest.raises(ValueError, match="length_group must be 0 or a multiple of batch_size, got 3"):
        load_recipe("smollm2-135m_qlora_cpu", {"sft.length_group": 3})

def test_length_grouped_batches_pad_less_and_keep_every_row():
    from stylealign.train import length_grouped

    g = torch.Generator().manual_seed(0)
    rows = [{"id": i, "text": "x" * int(n)} for i, n in enumerate(torch.randint(1, 400, (200,), generator=g))]
    grouped = length_grouped(rows, batch_size=8, seed=3)
    assert sorted(r["id"] for r in grouped) == list(range(200))
    assert grouped == length_grouped(rows, batch_size=8, seed=3)  # deterministic: resume sees the same order

    def padded(order):
        return sum(8 * max(len(r["text"]) for r in order[i:i + 8]) for i in range(0, len(order), 8))

    shuffled = list(rows)
    import random

    random.Random(3).shuffle(shuffled)
    assert padded(grouped) < 0.75 * padded(shuffled)
    assert grouped[:8] != sorted(grouped[:8], key=lambda r: r["id"])  # not simply the input order


def test_language_filter_keeps_only_those_rows(small_persona, tiny_recipe_overrides, tiny_model_dir):
    from conftest import _rows

    from stylealign import models
    from stylealign.train import load_stage_data

    with open(small_persona / "data" / "sft.jsonl", "a", encoding="utf-8") as f:
        f.write("\n".join(_rows("data/sft_zh_*.jsonl", 5)) + "\n")
    tok = models.load_tokenizer(str(tiny_model_dir))
    persona = load_persona(small_persona)
    everything = load_stage_data(persona, "sft", load_recipe(None, tiny_recipe_overrides), tok).train
    english = load_stage_data(persona, "sft", load_recipe(None, {**tiny_recipe_overrides, "languages": "en"}), tok).train
    assert {r["language"] for r in everything} == {"en", "zh"}
    assert english and {r["language"] for r in english} == {"en"}
    assert len(english) == sum(r["language"] == "en" for r in everything)
    with pytest.raises(ValueError, match="no rows in languages \\['fr'\\]"):
        load_stage_data(persona, "sft", load_recipe(None, {**tiny_recipe_overrides, "languages": "fr"}), tok)


def test_cpu_training_uses_recomputed_eager_attention_unless_the_recipe_says_otherwise():
    from stylealign.train import training_attention

    expected = "eager_recompute" if not torch.cuda.is_available() else None
    assert training_attention(load_recipe(None, {})) == expected
    assert training_attention(load_recipe(None, {"attn_implementation": "eager"})) == "eager"
    assert training_attention(load_recipe(None, {"attn_implementation": "sdpa"})) == "sdpa"
    assert json.loads(json.dumps(load_recipe("smollm2-135m_qlora_cpu").to_dict()))["sft"]["padding_free"] is False


@pytest.mark.parametrize("long_rows", [False, True])
def test_recomputed_eager_attention_equals_eager_and_keeps_no_length_squared_tensors(long_rows, tiny_model_dir,
                                                                                     monkeypatch):
    """eager_recompute gives eager's outputs and LoRA gradients, and autograd keeps no [B, heads, T, T] tensor; rows
    of attention.LONG_ROWS tokens or more run in SDPA (with the same mask), to the same outputs and gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers.integrations import sdpa_attention

    from stylealign import attention, models

    sdpa_calls = []
    real_sdpa = sdpa_attention.sdpa_attention_forward
    monkeypatch.setattr(sdpa_attention, "sdpa_attention_forward", lambda *a, **k: sdpa_calls.append(1) or real_sdpa(*a, **k))
    if long_rows:
        monkeypatch.setattr(attention, "LONG_ROWS", 40)
    runs = {}
    ids = torch.randint(5, 1000, (3, 40), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 30:] = 0  # a padded row
    for attn in ("eager", attention.register()):
        torch.manual_seed(0)
        model = models.load_model(str(tiny_model_dir), quant="none", dtype="fp32", attn=attn)
        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
        model.train()
        square = []

        def pack(t, square=square):
            if t.dim() == 4 and t.shape[-1] == t.shape[-2] == ids.shape[1]:
                square.append(t.shape)
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
        (logits.float() * mask[..., None]).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs[attn] = (logits.detach(), grads, square)
    (eager_logits, eager_grads, eager_square), (re_logits, re_grads, re_square) = runs.values()
    assert eager_square and (long_rows or not re_square)
    assert bool(sdpa_calls) == long_rows  # one call per layer in the long case, none in the short one
    torch.testing.assert_close(re_logits, eager_logits, rtol=1e-5, atol=1e-5)
    assert re_grads.keys() == eager_grads.keys() and re_grads
    rtol = 1e-3 if long_rows else 1e-4  # SDPA's fused kernel sums in another order: 1.3e-4 seen on fp32 gradients
    for name in eager_grads:
        torch.testing.assert_close(re_grads[name], eager_grads[name], rtol=rtol, atol=1e-6,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_report_to_is_off_by_default_and_passes_through(tmp_path, monkeypatch):
    """The recipe's report_to reaches the trainers' arguments, off by default."""
    import stylealign.config
    from stylealign.train.trainers import _common_args

    # the recipe refuses an integration whose package is missing; stand in an installed one for each
    monkeypatch.setitem(stylealign.config._REPORT_PACKAGES, "tensorboard", "json")
    monkeypatch.setitem(stylealign.config._REPORT_PACKAGES, "wandb", "json")
    assert _common_args(load_recipe(None).sft, load_recipe(None), tmp_path, False)["report_to"] == "none"
    recipe = load_recipe("smollm2-135m_qlora_cpu", {"report_to": "tensorboard, wandb"})
    assert _common_args(recipe.dpo, recipe, tmp_path, False)["report_to"] == ["tensorboard", "wandb"]


def test_a_trl_field_the_kit_never_named_works_from_a_recipe_and_from_a_flag(tmp_path):
    """Any field of TRL's SFTConfig / DPOConfig reaches TRL, over the kit's own choice (its scheduler here)."""
    from trl import DPOConfig, SFTConfig

    from stylealign.train.trainers import _common_args, trl_config

    (tmp_path / "r.yaml").write_text("sft:\n  optim: adamw_torch_fused\n  lr_scheduler_type: constant\n")
    recipe = load_recipe(str(tmp_path / "r.yaml"), {"dpo.max_grad_norm": "0.5"})  # a flag's value arrives as text
    assert recipe.sft.trl == {"optim": "adamw_torch_fused", "lr_scheduler_type": "constant"}
    assert recipe.dpo.trl == {"max_grad_norm": 0.5}
    sft = trl_config(SFTConfig, _common_args(recipe.sft, recipe, tmp_path, False), recipe.sft, "sft")
    dpo = trl_config(DPOConfig, _common_args(recipe.dpo, recipe, tmp_path, False), recipe.dpo, "dpo")
    assert (sft.optim.value, sft.lr_scheduler_type.value, dpo.max_grad_norm) == ("adamw_torch_fused", "constant", 0.5)
    assert load_recipe(None).sft.trl == {} and "trl" not in {f.split(".")[-1] for f in _flag_names()}


def _flag_names() -> list[str]:
    from stylealign.cli import build_parser

    train = build_parser()._subparsers._group_actions[0].choices["train"]
    sft = train._subparsers._group_actions[0].choices["sft"]
    return [s for a in sft._actions for s in a.option_strings]


def test_trl_fields_through_the_cli_and_their_errors(capsys, small_persona, tiny_model_dir, tmp_path):
    from helpers import fails_with

    from stylealign.cli import main

    argv = ["train", "sft", "--persona", str(small_persona), "--base", str(tiny_model_dir), "--quant", "none",
            "--dtype", "fp32", "--sft.max-steps", "1", "--select.enabled", "false"]
    assert main(argv + ["--run", str(tmp_path / "ok"), "--sft.optim", "adamw_torch_fused",
                        "--sft.lr-scheduler-type", "constant"]) == 0  # the CLI's spelling of TRL's lr_scheduler_type
    saved = json.loads((tmp_path / "ok" / "manifest.json").read_text())["recipe"]["sft"]["trl"]
    assert saved == {"optim": "adamw_torch_fused", "lr_scheduler_type": "constant"}
    capsys.readouterr()
    fails_with(capsys, argv + ["--run", str(tmp_path / "bad"), "--sft.optim=nonsense"],
               "sft.optim='nonsense': TRL's SFTConfig refuses it")
    assert not (tmp_path / "bad.partial").exists()
    fails_with(capsys, argv + ["--run", str(tmp_path / "typo"), "--sft.optimm", "x"], "sft: unknown field(s) ['optimm']")
    with pytest.raises(SystemExit) as stop:  # not a stage field at all: argparse's own message, exit 2
        main(argv + ["--run", str(tmp_path / "x"), "--bogus", "1"])
    assert stop.value.code == 2 and "unrecognized arguments: --bogus 1" in capsys.readouterr().err


@pytest.mark.parametrize("padding_free", [False, True])
def test_known_facts_reach_the_verdict_head_as_facts(padding_free, tiny_model_dir, small_persona, tiny_recipe_overrides,
                                                      tmp_path):
    """Under `verdict_split: even` an SFT row with `expected` (a known answer) opens with a FACT label, every other
    opening Yes/No with a VERDICT label, padded or packed: the row's flag survives TRL's column filter and the
    collator."""
    from stylealign import lmhead

    sft = small_persona / "data" / "sft.jsonl"
    facts = [{"id": f"fact-{i}", "category": "science", "language": "en", "verdict": side, "expected": side,
              "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
             for i, (side, q, a) in enumerate([("yes", "Is a whale a mammal?", "Yes. It breathes air."),
                                               ("no", "Is the Sun cold?", "No. Its surface is about 5,500 °C.")])]
    opinion = {"id": "opinion-1", "category": "opinions", "language": "en", "verdict": "yes",
               "messages": [{"role": "user", "content": "Is Vim worth learning?"},
                            {"role": "assistant", "content": "Yes. The keys pay off within a month."}]}
    sft.write_text("".join(json.dumps(r) + "\n" for r in [*facts, opinion]), encoding="utf-8")
    overrides = {**tiny_recipe_overrides, "sft.padding_free": padding_free, "sft.verdict_split": "even",
                 "sft.verdict_weight": 5.0, "sft.batch_size": 3}
    trainer = tiny_trainer("sft", tiny_model_dir, small_persona, overrides, tmp_path / "run")
    labels = torch.cat([b["labels"].flatten() for b in trainer.get_train_dataloader()])
    count = lambda v: int((labels == v).sum())  # noqa: E731
    assert (count(lmhead.FACT_YES), count(lmhead.FACT_NO), count(lmhead.VERDICT_YES), count(lmhead.VERDICT_NO)) \
        == (1, 1, 1, 0)
