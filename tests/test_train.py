"""Training: SFT and DPO on LoRA; what moves, what stays frozen, what a run folder holds, resume."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from stylealign.config import load_recipe
from stylealign.data import DataError
from stylealign.errors import UserError
from stylealign.personas import load_persona
from stylealign.train import train_run


def test_sft_moves_lora_keeps_base_and_writes_a_complete_run(small_persona, tiny_recipe_overrides, tmp_path,
                                                             tiny_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    recipe = load_recipe(None, tiny_recipe_overrides)
    run = train_run(load_persona(small_persona), recipe, tmp_path / "run", stages=("sft",))
    assert not (tmp_path / "run.partial").exists()
    for name in ("adapter/adapter_config.json", "adapter/adapter_model.safetensors", "manifest.json", "training.png"):
        assert (run / name).exists(), name
    assert not list(run.rglob("*.bin")) and not list(run.rglob("*.pt")), "safetensors only, no pickles"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["persona"] == "mini" and manifest["data"]["sft"]["train_rows"] == 12
    assert manifest["base_model"]["sha256"] and manifest["recipe"]["sft"]["max_steps"] == 3
    assert manifest["stages"]["sft"]["steps"] == 3 and manifest["peak_memory_mb"]["rss"] > 0
    progress = [json.loads(line) for line in (run / "stages" / "sft" / "progress.jsonl").read_text().splitlines()]
    assert [p["step"] for p in progress if "loss" in p] == [1, 2, 3] and progress[-1]["max_steps"] == 3  # live view
    # LoRA B starts at zero, so any non-zero B means training moved the adapter.
    trained = load_file(run / "adapter" / "adapter_model.safetensors")
    assert any(t.abs().sum() > 0 for n, t in trained.items() if "lora_B" in n)
    # The base weights did not move: the tiny model on disk is what PeftModel loads under the adapter.
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model = PeftModel.from_pretrained(base, run / "adapter")
    fresh = AutoModelForCausalLM.from_pretrained(tiny_model_dir).state_dict()
    for name, tensor in model.get_base_model().state_dict().items():
        if "lora_" not in name and name.replace(".base_layer", "") in fresh:
            assert torch.equal(tensor, fresh[name.replace(".base_layer", "")]), name


def test_all_runs_dpo_from_the_sft_adapter_with_one_base(small_persona, tiny_recipe_overrides, tmp_path):
    recipe = load_recipe(None, tiny_recipe_overrides)
    run = train_run(load_persona(small_persona), recipe, tmp_path / "run")
    sft = load_file(run / "stages" / "sft" / "adapter" / "adapter_model.safetensors")
    dpo = load_file(run / "adapter" / "adapter_model.safetensors")
    assert sft.keys() == dpo.keys(), "DPO continued the SFT adapter (same tensors), not a new one"
    assert any(not torch.equal(sft[k], dpo[k]) for k in sft), "DPO moved the adapter"
    history = json.loads((run / "stages" / "dpo" / "log_history.json").read_text())
    assert any("rewards/margins" in e for e in history)
    cfg = json.loads((run / "adapter" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and "ref" not in str(sorted((run / "adapter").iterdir()))


def test_bad_data_trains_nothing_and_names_file_line_field(small_persona, tiny_recipe_overrides, tmp_path):
    bad = small_persona / "data" / "sft.jsonl"
    lines = bad.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2].replace('"role": "user"', '"role": "usr"', 1)
    lines.append("{not json")
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        train_run(load_persona(small_persona), load_recipe(None, tiny_recipe_overrides), tmp_path / "run")
    message = str(err.value)
    assert "sft.jsonl:3: messages[0].role: unknown role 'usr'" in message
    assert f"sft.jsonl:{len(lines)}:" in message
    assert not (tmp_path / "run").exists() and not (tmp_path / "run.partial").exists()


def test_too_long_examples_fail_validation(small_persona, tiny_recipe_overrides, tmp_path):
    recipe = load_recipe(None, {**tiny_recipe_overrides, "max_length": 40})
    with pytest.raises(DataError, match="too long"):
        train_run(load_persona(small_persona), recipe, tmp_path / "run", stages=("sft",))


def test_interrupted_run_leaves_no_complete_folder_and_resumes(small_persona, tiny_recipe_overrides, tmp_path,
                                                               monkeypatch):
    from transformers import TrainerCallback

    from stylealign.train import trainers as train_mod

    class Boom(TrainerCallback):
        def on_save(self, args, state, control, **kw):
            raise KeyboardInterrupt

    overrides = {**tiny_recipe_overrides, "sft.max_steps": 4, "sft.save_steps": 2}
    real = train_mod.sft_trainer

    def interrupted(*a, **kw):
        trainer = real(*a, **kw)
        trainer.add_callback(Boom())
        return trainer

    monkeypatch.setattr(train_mod, "sft_trainer", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_run(load_persona(small_persona), load_recipe(None, overrides), tmp_path / "run", stages=("sft",))
    assert not (tmp_path / "run").exists()
    assert list((tmp_path / "run.partial" / "stages" / "sft").glob("checkpoint-2"))
    with pytest.raises(UserError, match="--resume"):
        train_run(load_persona(small_persona), load_recipe(None, overrides), tmp_path / "run", stages=("sft",))
    steps_after_resume = []

    class Count(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            steps_after_resume.append(state.global_step)

    def counted(*a, **kw):
        trainer = real(*a, **kw)
        trainer.add_callback(Count())
        return trainer

    with pytest.raises(UserError, match=r"started with another recipe \(sft.learning_rate 0.005 -> 0.001\)"):
        train_run(load_persona(small_persona), load_recipe(None, {**overrides, "sft.learning_rate": 1e-3}),
                  tmp_path / "run", stages=("sft",), resume=True)
    monkeypatch.setattr(train_mod, "sft_trainer", counted)
    run = train_run(load_persona(small_persona), load_recipe(None, overrides), tmp_path / "run", stages=("sft",),
                    resume=True)
    assert json.loads((run / "manifest.json").read_text())["stages"]["sft"]["steps"] == 4
    assert steps_after_resume == [3, 4], "resumed after the step-2 checkpoint, not from scratch"
    assert not (tmp_path / "run.partial").exists()
    # The resumed run is the uninterrupted run: the same loss at every step (optimizer, schedule, RNG and data
    # position all come back from the checkpoint). Tolerance: 1e-5 relative (fp32 on a CPU; measured equal).
    monkeypatch.setattr(train_mod, "sft_trainer", real)
    straight = train_run(load_persona(small_persona), load_recipe(None, overrides), tmp_path / "straight",
                         stages=("sft",))
    resumed, uninterrupted = (_losses(r / "stages" / "sft" / "log_history.json") for r in (run, straight))
    assert sorted(resumed) == [1, 2, 3, 4] and sorted(uninterrupted) == [1, 2, 3, 4]
    for step, loss in uninterrupted.items():
        assert resumed[step] == pytest.approx(loss, rel=1e-5), step


def _losses(history_file) -> dict[int, float]:
    """Return {step: training loss} from a stage's log_history.json."""
    return {e["step"]: e["loss"] for e in json.loads(history_file.read_text()) if "loss" in e}


@pytest.mark.slow
def test_embedded_qlora_sft_then_dpo_end_to_end(small_persona, tmp_path, embedded_dir):
    """The real path: 4-bit NF4 SmolLM2-135M, SFT then DPO, reload reproduces logits, margins grew."""
    import bitsandbytes as bnb
    from peft import PeftModel

    from stylealign import models
    from stylealign.generate import Generator

    recipe = load_recipe("smollm2-135m_qlora_cpu", {"quant": "nf4", "sft.max_steps": 3, "dpo.max_steps": 4, "sft.batch_size": 4,
                                                     "dpo.batch_size": 2, "dpo.learning_rate": 5e-4,
                                                     "sft.grad_accum": 1, "dpo.grad_accum": 1,  # NF4 on a CPU is slow
                                                     "sft.save_steps": 100, "dpo.save_steps": 100})
    run = train_run(load_persona(small_persona), recipe, tmp_path / "run")
    assert json.loads((run / "manifest.json").read_text())["base_model"]["quant"] == "nf4"

    gen = Generator(base="smollm2-135m", quant="nf4")
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in gen.model.modules())
    gen.add_adapter("sft", str(run / "stages" / "sft"))
    gen.add_adapter("dpo", str(run))
    pairs = [json.loads(line) for line in (small_persona / "data" / "pref.jsonl").read_text().splitlines()]

    def margin(adapter):
        logps = _logps(gen, [(p["prompt"], p[side]) for p in pairs for side in ("chosen", "rejected")], adapter)
        return sum(logps[0::2]) / len(pairs) - sum(logps[1::2]) / len(pairs)

    assert margin("dpo") > margin("sft"), "DPO raised log p(chosen) - log p(rejected) on its training pairs"

    # A plain PeftModel.from_pretrained on a fresh 4-bit base reproduces the Generator's adapter logits.
    fresh = PeftModel.from_pretrained(models.load_model("smollm2-135m", quant="nf4"), run / "adapter").eval()
    enc = gen.encode([pairs[0]["prompt"]])
    with torch.no_grad():
        plain = fresh(**enc).logits.float()
    assert torch.allclose(plain, gen.logits(enc["input_ids"], enc["attention_mask"], "dpo"), atol=1e-3)
    shutil.rmtree(run)


def _logps(gen, items, adapter) -> list[float]:
    """Return the summed log-probability of each `answer` after its `prompt` under `adapter`, all
    (prompt, answer) items in one right-padded forward pass (a 4-bit forward on a CPU costs about the same
    for one row as for sixteen: the weights are dequantized per call)."""
    tok = gen.tokenizer
    fulls, starts = [], []
    for prompt, answer in items:
        head = tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        fulls.append(tok.apply_chat_template(prompt + answer, tokenize=False))
        starts.append(len(tok(head, add_special_tokens=False)["input_ids"]))
    ids = tok(fulls, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    logits = gen.logits(ids["input_ids"], ids["attention_mask"], adapter)[:, :-1]
    logp = torch.log_softmax(logits, -1).gather(-1, ids["input_ids"][:, 1:, None])[..., 0]
    mask = ids["attention_mask"][:, 1:].bool()
    return [float(logp[i, start - 1:][mask[i, start - 1:]].sum()) for i, start in enumerate(starts)]


def test_padding_free_batches_give_the_padded_loss(small_persona, tiny_recipe_overrides, tmp_path, tiny_model_dir):
    """Padding-free batches must not attend across examples: same loss as the padded batch. (A forward
    pass with a KV cache would skip transformers' packed-sequence masking; the Trainer turns it off.)"""
    from stylealign import models
    from stylealign.train import load_stage_data, sft_trainer

    losses = {}
    for free in (True, False):
        recipe = load_recipe(None, {**tiny_recipe_overrides, "sft.padding_free": free, "sft.group_by_length": False})
        model = models.load_model(str(tiny_model_dir), quant="none", dtype="fp32")
        tok = models.load_tokenizer(str(tiny_model_dir))
        data = load_stage_data(load_persona(small_persona), "sft", recipe, tok)
        trainer = sft_trainer(model, tok, data, recipe, tmp_path / f"pf{free}")
        batch = next(iter(trainer.get_train_dataloader()))
        trainer.model.eval()
        assert trainer.model.config.use_cache is False
        with torch.no_grad():
            losses[free] = float(trainer.model(**batch).loss)
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
