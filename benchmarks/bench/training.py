"""The training arms (SFT or DPO, in the worker process): the kit's own trainer built from the recipe, and
plain TRL built as a user writes it (fp32 from_pretrained, config defaults, LoRA via peft_config), both
timed by bench.measure.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from .measure import count_batches, memory, reset_peak, step_clock, summarise_steps
from .spec import ArmSpec

LORA_R = 16  # the plain-TRL arms' LoRA rank, and the generation arm's zero-init adapter's


def _recipe(spec: ArmSpec):
    from stylealign.config import load_recipe

    stage = spec.area
    overrides = {"base": spec.model, "eval_fraction": 0.0, f"{stage}.max_steps": spec.total_steps,
                 f"{stage}.batch_size": spec.batch_size, f"{stage}.grad_accum": 1,
                 f"{stage}.save_steps": 10**6, f"{stage}.logging_steps": 10**6, f"{stage}.warmup_ratio": 0.0}
    if spec.quant:
        overrides["quant"] = spec.quant
    if spec.max_length:
        overrides["max_length"] = spec.max_length
    if spec.arm == "kit":
        overrides.update(spec.kit_set or {})
    return load_recipe(spec.recipe, overrides)


def user_lora():
    from peft import LoraConfig

    return LoraConfig(r=LORA_R, lora_alpha=2 * LORA_R, target_modules="all-linear", task_type="CAUSAL_LM")


def _user_model(path: str, quant: str = "none", attn: str | None = None):
    """What plain user code loads: from_pretrained defaults (fp32 for an fp32 checkpoint on CPU), or for
    QLoRA the 4-bit NF4 config of TRL's and PEFT's examples (bf16 compute, double quantization)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    kwargs = {"attn_implementation": attn} if attn else {}
    if quant == "nf4":
        kwargs.update(dtype=torch.bfloat16, quantization_config=BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16))
        if torch.cuda.is_available():
            kwargs["device_map"] = {"": 0}
    return AutoModelForCausalLM.from_pretrained(path, **kwargs)


def setup_padding_free(recipe, area: str) -> bool:
    return area == "sft" and recipe.sft.padding_free


def train_arm(spec: ArmSpec) -> dict:
    """Return the timed steps, memory and setup of one training arm (SFT or DPO, kit or plain TRL)."""
    import torch

    from stylealign import models

    if spec.arm == "ref" and spec.ref == "kit":  # A/B of --kit-set: the reference is the kit as shipped
        spec = dataclasses.replace(spec, arm="kit", kit_set={})
    rows = json.loads(Path(spec.rows).read_text())["sft" if spec.area == "sft" else "preference"]
    started = time.perf_counter()
    base = models.resolve_base(spec.model)
    tokenizer = models.load_tokenizer(base)
    make = _kit_trainer if spec.arm == "kit" else _ref_trainer
    trainer, setup = make(spec, base, tokenizer, rows, Path(spec.work))
    copies = 1 if spec.area == "sft" else (1 if getattr(trainer, "ref_model", None) is None else 2)
    batches: list[dict] = []
    count_batches(trainer, batches)
    profile_to = Path(spec.profile) if spec.profile else None
    clock = step_clock(spec.total_steps, spec.warmup, profile_to)
    trainer.add_callback(clock)
    load_s = time.perf_counter() - started
    reset_peak()
    trainer.train()
    result = summarise_steps(clock, batches, spec.warmup, profile_to is not None)
    result.update(setup=setup, model_copies=copies, load_seconds=round(load_s, 2), threads=torch.get_num_threads(),
                  memory=memory(), profile=profile_to.name if profile_to else None)
    return result


def _kit_trainer(spec: ArmSpec, base, tokenizer, rows: list[dict], out_dir: Path):
    """Return (trainer, setup) for the kit's own SFT / DPO trainer with the recipe."""
    import torch

    from stylealign import models, train

    recipe = _recipe(spec)
    torch.manual_seed(recipe.seed)
    if recipe.threads > 0:
        torch.set_num_threads(recipe.threads)
    model = models.load_model(base, quant=recipe.quant, dtype=recipe.dtype, attn=train.training_attention(recipe))
    data = train.StageData(rows, [])
    if spec.area == "sft":
        trainer = train.sft_trainer(model, tokenizer, data, recipe, out_dir)
    else:
        from peft import get_peft_model

        model = get_peft_model(model, train.lora_config(recipe))  # as after SFT: a trainable adapter
        trainer = train.dpo_trainer(model, tokenizer, data, recipe, out_dir)
    stage = getattr(recipe, spec.area)
    setup = {"quant": recipe.quant, "dtype": str(models.parse_dtype(recipe.dtype)).replace("torch.", ""),
             "padding_free": recipe.sft.padding_free if spec.area == "sft" else False,
             "gradient_checkpointing": stage.gradient_checkpointing,
             "fast_paths": [f"lm head {trainer.stylealign_lm_head}", f"LoRA {trainer.stylealign_lora_compute}",
                            f"attention {trainer.model.config._attn_implementation}"]
             + (["length-grouped"] if stage.group_by_length and not setup_padding_free(recipe, spec.area) else [])
             + ([f"compiled ({trainer.stylealign_compile})"] if recipe.compile == "on" else [])}
    return trainer, setup


def _ref_trainer(spec: ArmSpec, base, tokenizer, rows: list[dict], out_dir: Path):
    """Return (trainer, setup) for plain TRL as a user writes it (fp32, config defaults, peft_config)."""
    import torch

    from stylealign import train

    torch.manual_seed(0)
    extra = dict(spec.ref_set or {})
    attn = extra.pop("attn_implementation", None)
    model = _user_model(base.path, spec.ref_quant, attn)
    common = dict(output_dir=str(out_dir), max_steps=spec.total_steps, per_device_train_batch_size=spec.batch_size,
                  report_to="none", save_strategy="no", logging_steps=10**6, seed=0, data_seed=0, **extra)
    if spec.max_length:  # rows stitched past TRL's default max_length (1024) must not be cut
        common["max_length"] = spec.max_length
    if not torch.cuda.is_available():
        common["use_cpu"] = True  # TrainingArguments refuses bf16 on a CPU-only machine without it
    if spec.area == "sft":
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common)
        trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=user_lora(),
                             train_dataset=train.as_dataset(train.sft_rows(rows)))
    else:
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common)
        trainer = DPOTrainer(model=model, ref_model=_user_model(base.path, spec.ref_quant, attn), args=args,
                             processing_class=tokenizer,
                             peft_config=user_lora(), train_dataset=train.as_dataset(train.dpo_rows(rows)))
    setup = {"quant": spec.ref_quant, "dtype": str(model.dtype).replace("torch.", ""), "autocast_bf16": bool(args.bf16),
             "attention": model.config._attn_implementation, "liger": bool(getattr(args, "use_liger_kernel", False)),
             "padding_free": bool(getattr(args, "padding_free", False)),
             "gradient_checkpointing": bool(args.gradient_checkpointing)}
    return trainer, setup
