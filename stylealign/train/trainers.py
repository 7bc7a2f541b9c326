"""The TRL trainers a stage runs: SFT (prompt/completion rows, loss on assistant turns only) and DPO (TRL's frozen
"ref" adapter as the reference, so one base model in memory), with the kit's CPU paths (LM head on label
positions, bf16 LoRA under autocast, the verdict-agnostic loss) and the attention kernel a recipe asks for."""

from __future__ import annotations

from pathlib import Path

from stylealign.config import Recipe
from stylealign.errors import ConfigError
from stylealign.train.data import StageData, as_dataset, dpo_rows, length_grouped, sft_rows


def lora_config(recipe: Recipe):
    from peft import LoraConfig

    targets = recipe.lora.target_modules
    return LoraConfig(
        r=recipe.lora.r, lora_alpha=recipe.lora.alpha, lora_dropout=recipe.lora.dropout, task_type="CAUSAL_LM",
        target_modules=targets if targets == "all-linear" else [t.strip() for t in targets.split(",")],
    )


def check_targets(model, recipe: Recipe) -> None:
    """Refuse `lora.target_modules` naming a module this base lacks, in one line listing its linear layers,
    rather than PEFT's error from inside the trainer."""
    import torch

    targets = recipe.lora.target_modules
    if targets == "all-linear":
        return
    linear = sorted({name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)})
    missing = [t.strip() for t in targets.split(",") if t.strip() not in linear]
    if missing:
        raise ConfigError(f"lora.target_modules {targets!r}: {', '.join(missing)} not in this base; its linear "
                          f"layers: {', '.join(linear)} (or all-linear)")


def _common_args(stage_cfg, recipe: Recipe, out: Path, has_eval: bool) -> dict:
    """Return the TrainingArguments fields both stages share."""
    import torch

    on_gpu = torch.cuda.is_available()
    from stylealign.models import parse_dtype

    half = parse_dtype(recipe.dtype)
    cpu_autocast = cpu_lora_autocast(recipe)
    return dict(
        output_dir=str(out), num_train_epochs=stage_cfg.epochs, max_steps=stage_cfg.max_steps,
        learning_rate=stage_cfg.learning_rate, per_device_train_batch_size=stage_cfg.batch_size,
        per_device_eval_batch_size=stage_cfg.batch_size, gradient_accumulation_steps=stage_cfg.grad_accum,
        warmup_steps=stage_cfg.warmup_ratio, lr_scheduler_type="cosine", weight_decay=stage_cfg.weight_decay,
        logging_steps=stage_cfg.logging_steps, save_steps=stage_cfg.save_steps, save_total_limit=2,
        save_strategy="steps", eval_strategy="epoch" if has_eval else "no", report_to=recipe.report_to_list, seed=recipe.seed,
        data_seed=recipe.seed, max_length=recipe.max_length,
        # transformers 5 name (TRL's configs default the deprecated `gradient_checkpointing` alias to True)
        activation_checkpointing=stage_cfg.gradient_checkpointing,
        # On a CPU the base weights already carry the compute dtype; autocast is there for the LoRA
        # matmuls only (cpu_lora_autocast), so that no fp32 copy of their inputs is kept for backward.
        bf16=(on_gpu or cpu_autocast) and half == torch.bfloat16, fp16=on_gpu and half == torch.float16,
        use_liger_kernel=recipe.liger,
        dataloader_num_workers=0, remove_unused_columns=True, disable_tqdm=False,
        logging_nan_inf_filter=False,  # log a NaN loss as NaN: NonFiniteGuard stops the stage on it
        use_cpu=not on_gpu,
        # length_grouped() already ordered the rows; a random sampler would undo it.
        train_sampling_strategy="sequential" if stage_cfg.group_by_length else "random",
    )


def _train_rows(rows: list[dict], stage_cfg, recipe: Recipe, padded: bool = True) -> list[dict]:
    grouped = stage_cfg.group_by_length and padded
    return length_grouped(rows, stage_cfg.length_group or stage_cfg.batch_size, recipe.seed) if grouped else rows


def sft_trainer(model, tokenizer, data: StageData, recipe: Recipe, out: Path):
    """Return a TRL SFTTrainer that adds a LoRA adapter to `model` and trains it on completions."""
    from trl import SFTConfig, SFTTrainer

    common = _common_args(recipe.sft, recipe, out, bool(data.eval))
    if recipe.sft.padding_free:
        common["max_length"] = None  # validation already rejected rows over max_length; TRL insists
    if recipe.sft.padding_free:
        common["train_sampling_strategy"] = "random"  # no padding to save
    args = trl_config(SFTConfig, {**common, "padding_free": recipe.sft.padding_free, "completion_only_loss": True},
                      recipe.sft, "sft")
    train = _train_rows(sft_rows(data.train), recipe.sft, recipe, padded=not recipe.sft.padding_free)
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=lora_config(recipe),
                         train_dataset=as_dataset(train), eval_dataset=as_dataset(sft_rows(data.eval)))
    verdict = None
    s = recipe.sft
    if s.verdict_split != "data" or s.verdict_weight != 1.0 or s.fact_weight not in (None, 1.0):
        verdict = verdict_agnostic(trainer, tokenizer, s.verdict_split, s.verdict_weight, s.fact_weight)
    return _fast_head(trainer, recipe, verdict)


def verdict_agnostic(trainer, tokenizer, split: str, weight: float = 1.0, fact_weight: float | None = None):
    """Make the SFT trainer's batches mark each answer's opening Yes/No token as "a verdict" (lmhead.verdict_labels)
    and return the VerdictSets its LM head scores them with (config: sft.verdict_split)."""
    from stylealign import lmhead
    from stylealign.candor import verdict_token_ids

    yes, no = verdict_token_ids(tokenizer)
    collate = trainer.data_collator
    trainer._set_signature_columns_if_needed()
    trainer._signature_columns = [*trainer._signature_columns, "fact"]  # kept through to the collator

    def collate_verdicts(features):
        facts = [bool(f.pop("fact", False)) for f in features]
        batch = collate(features)
        batch["labels"] = lmhead.verdict_labels(batch["labels"], yes, no, facts)
        return batch

    trainer.data_collator = collate_verdicts
    return lmhead.VerdictSets(yes, no, split, weight, fact_weight)


def dpo_trainer(model, tokenizer, data: StageData, recipe: Recipe, out: Path):
    """Return a TRL DPOTrainer. Given a PeftModel (the SFT adapter, trainable), TRL adds a frozen copy
    named "ref" as the reference, so one base model serves policy and reference; given a plain model,
    a fresh LoRA is trained against the base with adapters disabled."""
    from peft import PeftModel
    from trl import DPOTrainer

    d = recipe.dpo
    args = dpo_config(recipe, out, bool(data.eval))
    peft_config = None if isinstance(model, PeftModel) else lora_config(recipe)
    trainer = DPOTrainer(model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
                         train_dataset=as_dataset(_train_rows(dpo_rows(data.train), d, recipe)),
                         eval_dataset=as_dataset(dpo_rows(data.eval)))
    return _fast_head(trainer, recipe)


def dpo_config(recipe: Recipe, out: Path, has_eval: bool = False):
    """Return TRL's DPOConfig for the recipe: beta, the (possibly combined) losses and their weights."""
    from trl import DPOConfig

    d = recipe.dpo
    return trl_config(DPOConfig, {**_common_args(d, recipe, out, has_eval), "beta": d.beta, "loss_type": d.loss_type_list,
                                  "loss_weights": d.loss_weight_list, "precompute_ref_log_probs": d.precompute_ref_log_probs},
                      d, "dpo")


def trl_config(cls, args: dict, stage_cfg, section: str):
    """Return TRL's config from the kit's arguments with the recipe's other TRL fields (`stage_cfg.trl`) over
    them; TRL validates them, and a value it refuses is named as the recipe field it came from."""
    try:
        return cls(**{**args, **stage_cfg.trl})
    except (TypeError, ValueError) as e:
        if not stage_cfg.trl:
            raise
        fields = ", ".join(f"{section}.{k}={v!r}" for k, v in stage_cfg.trl.items())
        raise ConfigError(f"{fields}: TRL's {cls.__name__} refuses it ({' '.join(str(e).split())[:300]})") from None


def cpu_lora_autocast(recipe: Recipe) -> bool:
    """True when training runs on a CPU in bf16 with `lora_compute: auto`: bf16 autocast, and the LoRA layers
    take their bf16 input as it is (PEFT would copy it to fp32 for the fp32 adapter weights in every module,
    and autograd would keep each copy for backward)."""
    import torch

    from stylealign.models import parse_dtype

    return (not torch.cuda.is_available() and recipe.lora_compute == "auto"
            and parse_dtype(recipe.dtype) == torch.bfloat16)


def _no_input_casts(model) -> int:
    """Switch off PEFT's cast of each LoRA layer's input to the adapter's dtype (autocast does the matmul in
    bf16 instead); return the number of layers changed."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    for m in layers:
        m.cast_input_dtype_enabled = False
    return len(layers)


def _fast_head(trainer, recipe: Recipe, verdict=None):
    """Give the trainer stylealign's label-position LM head where it applies (a CPU; see lmhead.py), and on a
    bf16 CPU the LoRA layers their bf16 inputs (cpu_lora_autocast)."""
    from stylealign import lmhead

    trainer.stylealign_lora_compute = "fp32"
    if cpu_lora_autocast(recipe) and _no_input_casts(trainer.model):
        trainer.stylealign_lora_compute = "bf16 autocast"
    trainer.stylealign_lm_head = "trl"
    trainer.stylealign_compile = compile_blocks(trainer.model) if recipe.compile == "on" else "off"
    from trl import DPOTrainer

    # Not with compiled layers: the shared prompt's KV cache makes each layer index its own cache layer, one graph per
    # layer (30 for SmolLM2, past dynamo's recompile limit of 8, so most layers ran eager and the step got slower).
    shared = (isinstance(trainer, DPOTrainer) and recipe.dpo.shared_prompt and not recipe.dpo.gradient_checkpointing
              and recipe.compile != "on")
    if recipe.lm_head == "auto" and lmhead.label_positions_head(trainer.model, lmhead.head_outputs(trainer),
                                                                shared_prompt=shared, verdict=verdict):
        trainer.stylealign_lm_head = "label-positions" + (", shared prompt" if shared else "")
    elif verdict is not None:
        raise ConfigError(f"sft.verdict_split {verdict.split!r} needs the label-position LM head (lm_head: auto, "
                          "training on a CPU); use sft.verdict_split: data here")
    return trainer


def decoder_blocks(model) -> list:
    """Return the model's decoder layers: the modules of the classes transformers keeps whole (`_no_split_modules`)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    kinds = set(getattr(base, "_no_split_modules", None) or ())
    return [m for m in base.modules() if type(m).__name__ in kinds]


def compile_blocks(model) -> str:
    """Compile each decoder layer of `model` in place with torch.compile (inductor; the recipe's `compile: on`) and
    return how, for the manifest. Dynamic shapes from the first call: the layers share one graph for every batch
    length and size (but 1), so length-grouped batches recompile nothing. The layer is the unit because it traces
    without a graph break, LoRA layers and autocast included, with a bf16 or an NF4 base; the model around it
    (masks, the label-position LM head's data-dependent indexing) breaks the graph and stays eager. Inductor's
    compiled kernels are cached on disk under the kit's home, so a later run of the same shapes skips most of the
    compile."""
    import os

    from stylealign.models import home

    blocks = decoder_blocks(model)
    if not blocks:
        raise ConfigError("compile: on: no decoder layers found in this base (no _no_split_modules); use compile: off")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = inductor_cache(os.environ.get("TORCHINDUCTOR_CACHE_DIR"), home())
    for block in blocks:
        block.compile(dynamic=True)
    return f"inductor, {len(blocks)} decoder layers, dynamic shapes"


def inductor_cache(current: str | None, kit_home) -> str:
    """Return inductor's cache folder: the user's TORCHINDUCTOR_CACHE_DIR, else the kit's home. Torch writes its own
    default (a folder under /tmp) into the variable the first time anything asks for it, often before a stage
    compiles, so that value counts as unset: a /tmp cache does not outlive a reboot, and the compile is paid again."""
    import os

    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
        torch_default = os.path.abspath(default_cache_dir())
    except ImportError:  # a torch that moved it: keep whatever is set
        torch_default = None
    if current and os.path.abspath(current) != torch_default:
        return current
    return str(Path(kit_home) / "inductor")


def training_attention(recipe: Recipe) -> str | None:
    """Return the attention kernel to train with: the recipe's, or for "auto" on a CPU eager attention with its
    length² probabilities recomputed in backward (stylealign.attention: for the short padded rows of persona data
    eager's backward measured faster than SDPA's, and recomputing them frees SDPA's memory), and the model's
    default on a GPU."""
    import torch

    from stylealign import attention

    if recipe.attn_implementation == attention.NAME:
        return attention.register()
    if recipe.attn_implementation != "auto":
        return recipe.attn_implementation
    return None if torch.cuda.is_available() else attention.register()
