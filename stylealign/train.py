"""Training: LoRA SFT, then DPO from the SFT adapter, on one base model in memory.

Lifecycle of `train_run`: validate all data (nothing loads before the data is clean) -> load the
base once -> SFT -> DPO (the SFT adapter continues training; TRL keeps a frozen copy of it as the
DPO reference, so there is no second model) -> save adapter, manifest, logs, plot -> publish the
run folder by an atomic rename. Work happens in `<run>.partial/`, which `--resume` continues: a stage's `DONE`
is written last, after all its records, so a stage without it trains again from its last complete checkpoint
(torn ones are skipped); `health` stops a diverging stage and refuses to publish it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from stylealign import health, phases, select
from stylealign.adapters import check_finite
from stylealign.config import Recipe
from stylealign.errors import ConfigError, NotFound, RunFailed, UserError
from stylealign.files import write_atomic, write_json, write_jsonl
from stylealign.manifest import RunManifest, write_manifest
from stylealign.runlock import finish_interrupted_publish, publish, run_lock

STAGES = ("sft", "dpo")
DONE = "DONE"


@dataclass
class StageData:
    """A stage's validated rows and what the manifest records about them."""

    train: list[dict]
    eval: list[dict]
    files: list[dict] = field(default_factory=list)


# ---------------------------------------------------------------- data


def count_tokens_fn(tokenizer):
    """Return a function giving a row's token count under the chat template (for max_length checks)."""

    def n_template(turns, **kw) -> int:
        return len(tokenizer.apply_chat_template(turns, tokenize=True, return_dict=False, **kw))

    def count(row: dict) -> int:
        if "messages" in row:
            return n_template(row["messages"])
        prompt = n_template(row["prompt"], add_generation_prompt=True)
        return prompt + max(len(tokenizer(t["content"])["input_ids"]) for t in row["chosen"] + row["rejected"]) + 1

    return count


def file_record(path: Path, rows: int | None = None) -> dict:
    """Return {path, sha256, rows} for the manifest."""
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(path), "sha256": digest, **({"rows": rows} if rows is not None else {})}


def load_stage_data(persona, stage: str, recipe: Recipe, tokenizer, files=None) -> StageData:
    """Return the validated, split rows of one stage; raises DataError naming file, line and field."""
    from stylealign import data

    files = [Path(f) for f in (files or (persona.sft_files() if stage == "sft" else persona.preference_files()))]
    if not files:
        raise NotFound(f"persona {persona.name!r} declares no {stage} data files")
    loader = data.load_sft if stage == "sft" else data.load_preference
    rows = loader(files, count_tokens=count_tokens_fn(tokenizer), max_length=recipe.max_length)
    if recipe.language_list:
        rows = [r for r in rows if r.get("language") in recipe.language_list]
        if not rows:
            raise ConfigError(f"{stage}: no rows in languages {recipe.language_list} (recipe field 'languages') "
                             f"in {', '.join(map(str, files))}")
    if persona.bake_system_prompt:
        rows = data.with_system_prompt(rows, lambda r: persona.system_prompt_for(r.get("language")))
    train, held = data.split(rows, recipe.eval_fraction, recipe.seed)
    records = [file_record(f) for f in files]
    if stage == "sft" and recipe.sft.neutral_mix > 0:
        neutral, neutral_files = neutral_rows(persona, recipe, tokenizer, round(recipe.sft.neutral_mix * len(train)))
        train, records = train + neutral, records + neutral_files
    return StageData(train, held, records)


def neutral_rows(persona, recipe: Recipe, tokenizer, n: int) -> tuple[list[dict], list[dict]]:
    """Return `n` of the persona's neutral baseline conversations (recipe languages, seeded sample) and
    their file records: plain answers mixed into SFT keep the base model's fluency."""
    import random

    from stylealign import data

    files = persona.baseline_files()
    if not files:
        raise NotFound(f"sft.neutral_mix needs data.baseline files in persona {persona.name!r}")
    rows = data.load_sft(files, count_tokens=count_tokens_fn(tokenizer), max_length=recipe.max_length)
    if recipe.language_list:
        rows = [r for r in rows if r.get("language") in recipe.language_list]
    return random.Random(recipe.seed).sample(rows, min(n, len(rows))), [file_record(f) for f in files]


def sft_rows(rows: list[dict]) -> list[dict]:
    """Return prompt/completion rows: one per assistant turn, so loss falls on every assistant turn
    and never on the user's words, with any chat template (no generation markers needed)."""
    out = []
    for row in rows:
        msgs = [{"role": t["role"], "content": t["content"]} for t in row["messages"]]
        for i, turn in enumerate(msgs):
            if turn["role"] == "assistant":
                out.append({"prompt": msgs[:i], "completion": [turn]})
    return out


def dpo_rows(rows: list[dict]) -> list[dict]:
    """Return preference rows reduced to TRL's conversational columns."""
    keep = lambda turns: [{"role": t["role"], "content": t["content"]} for t in turns]  # noqa: E731
    return [{k: keep(r[k]) for k in ("prompt", "chosen", "rejected")} for r in rows]


def length_grouped(rows: list[dict], batch_size: int, seed: int, window: int = 16) -> list[dict]:
    """Return `rows` reordered so that consecutive runs of `batch_size` rows have similar lengths: shuffle,
    sort within windows of `window` batches, then shuffle the batches. Fed to the trainer in order."""
    import random

    rng = random.Random(seed)
    rows = list(rows)
    rng.shuffle(rows)
    size = lambda r: len(json.dumps(r, ensure_ascii=False))  # noqa: E731  (a proxy for tokens)
    batches = []
    for i in range(0, len(rows), batch_size * window):
        chunk = sorted(rows[i:i + batch_size * window], key=size, reverse=True)
        batches += [chunk[j:j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return [r for b in batches for r in b]


def as_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_list(rows) if rows else None


# ---------------------------------------------------------------- trainers


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
    args = SFTConfig(**common, padding_free=recipe.sft.padding_free, completion_only_loss=True)
    train = _train_rows(sft_rows(data.train), recipe.sft, recipe, padded=not recipe.sft.padding_free)
    trainer = SFTTrainer(model=model, args=args, processing_class=tokenizer, peft_config=lora_config(recipe),
                         train_dataset=as_dataset(train), eval_dataset=as_dataset(sft_rows(data.eval)))
    verdict = None
    if recipe.sft.verdict_split != "data" or recipe.sft.verdict_weight != 1.0:
        verdict = verdict_agnostic(trainer, tokenizer, recipe.sft.verdict_split, recipe.sft.verdict_weight)
    return _fast_head(trainer, recipe, verdict)


def verdict_agnostic(trainer, tokenizer, split: str, weight: float = 1.0):
    """Make the SFT trainer's batches mark each answer's opening Yes/No token as "a verdict" (lmhead.verdict_labels)
    and return the VerdictSets its LM head scores them with (config: sft.verdict_split)."""
    from stylealign import lmhead
    from stylealign.candor import verdict_token_ids

    yes, no = verdict_token_ids(tokenizer)
    collate = trainer.data_collator

    def collate_verdicts(features):
        batch = collate(features)
        batch["labels"] = lmhead.verdict_labels(batch["labels"], yes, no)
        return batch

    trainer.data_collator = collate_verdicts
    return lmhead.VerdictSets(yes, no, split, weight)


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
    return DPOConfig(**_common_args(d, recipe, out, has_eval), beta=d.beta, loss_type=d.loss_type_list,
                     loss_weights=d.loss_weight_list, precompute_ref_log_probs=d.precompute_ref_log_probs)


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
    from trl import DPOTrainer

    shared = (isinstance(trainer, DPOTrainer) and recipe.dpo.shared_prompt and not recipe.dpo.gradient_checkpointing)
    if recipe.lm_head == "auto" and lmhead.label_positions_head(trainer.model, lmhead.head_outputs(trainer),
                                                                shared_prompt=shared, verdict=verdict):
        trainer.stylealign_lm_head = "label-positions" + (", shared prompt" if shared else "")
    elif verdict is not None:
        raise ConfigError(f"sft.verdict_split {verdict.split!r} needs the label-position LM head (lm_head: auto, "
                          "training on a CPU); use sft.verdict_split: data here")
    return trainer


# What transformers' Trainer._save_checkpoint writes: the adapter (save_model), optimizer.pt, scheduler.pt,
# rng_state.pth, and trainer_state.json last. A kill part-way leaves a folder that lacks some of them (or holds a
# torn trainer_state.json); Trainer would resume from it and fail, or resume with a fresh optimizer.
CHECKPOINT_FILES = ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt", "trainer_state.json")


def checkpoint_complete(folder: Path) -> bool:
    """Return True if `folder` holds every file of a checkpoint and a trainer_state.json that parses."""
    if not all((folder / name).is_file() and (folder / name).stat().st_size > 0 for name in CHECKPOINT_FILES):
        return False
    try:
        json.loads((folder / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def latest_checkpoint(folder: Path) -> str | None:
    """Return the newest complete checkpoint-N folder under `folder`, if any (for --resume). Incomplete ones
    (a kill while one was written) are removed, and the user is told in one line on stderr."""
    points = sorted((p for p in folder.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                    key=lambda p: int(p.name.split("-")[-1]))
    torn = [p for p in points if not checkpoint_complete(p)]
    good = [p for p in points if p not in torn]
    if torn:
        then = f"resuming from {good[-1].name}" if good else "starting the stage over"
        print(f"stylealign: {folder.name}: {', '.join(p.name for p in torn)} incomplete (cut short while being "
              f"written), skipped and removed; {then}", file=sys.stderr, flush=True)
        for p in torn:
            shutil.rmtree(p, ignore_errors=True)
    return str(good[-1]) if good else None


def drop_checkpoints(stage_dir: Path) -> None:
    """Remove a finished stage's checkpoints: its adapter supersedes them (also after a kill mid-removal)."""
    for ckpt in stage_dir.glob("checkpoint-*"):
        shutil.rmtree(ckpt, ignore_errors=True)


def no_final_checkpoint():
    """Return a TrainerCallback that skips Trainer's checkpoint at the stage's last step: resumed from it, Trainer
    trains one step too many (it runs a step before it checks max_steps), and the stage's adapter, saved right
    after, is the record of that step. A kill before the adapter is saved retrains from the checkpoint before."""
    from transformers import TrainerCallback

    class NoFinalCheckpoint(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step >= state.max_steps:
                control.should_save = False

    return NoFinalCheckpoint()


def run_trainer(trainer, stage_dir: Path, resume: bool, main_process: bool = True) -> dict:
    """Train (resuming from the last complete checkpoint when asked), save the adapter and the log history,
    return the stage summary. The stage's DONE marker is the caller's to write, after its last record."""
    start = time.time()
    guard = health.guard(stage_dir.name)
    trainer.add_callback(guard)
    trainer.add_callback(no_final_checkpoint())
    import torch

    if not torch.cuda.is_available():
        trainer.add_callback(phases.trim_callback())  # RSS stays at what a step needs, not what all steps left
    result = trainer.train(resume_from_checkpoint=latest_checkpoint(stage_dir) if resume else None)
    if guard.tripped:
        raise RunFailed(guard.message(latest_checkpoint(stage_dir)))
    summary = {"wall_s": round(time.time() - start, 1), "steps": trainer.state.global_step,
               "lm_head": getattr(trainer, "stylealign_lm_head", "trl"),
               "lora_compute": getattr(trainer, "stylealign_lora_compute", "fp32"),
               "attn_implementation": trainer.model.config._attn_implementation,
               "train_loss": result.training_loss, "final": final_metrics(trainer.state.log_history)}
    if not main_process:  # one writer: the other ranks hold the same weights
        return summary
    model = trainer.accelerator.unwrap_model(trainer.model)
    # Save only the trained adapter: TRL's frozen "ref" copy is an implementation detail.
    model.save_pretrained(stage_dir / "adapter", selected_adapters=["default"], safe_serialization=True)
    check_finite(stage_dir / "adapter")
    write_atomic(stage_dir / "log_history.json", json.dumps(trainer.state.log_history, indent=1))
    return summary


def final_metrics(history: list[dict]) -> dict:
    """Return the last logged value of each metric (loss, eval_loss, rewards/margins, ...)."""
    out: dict = {}
    for entry in history:
        for key, value in entry.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                out[key] = value
    return out


# ---------------------------------------------------------------- the run


def run_paths(run_dir: str | Path) -> tuple[Path, Path]:
    """Return (final run folder, work folder). Only a finished run has the final name."""
    final = Path(run_dir)
    return final, final.with_name(final.name + ".partial")


def train_run(persona, recipe: Recipe, run_dir: str | Path, stages=STAGES, resume: bool = False,
              init_adapter: str | None = None, data_files: dict | None = None, overwrite: bool = False) -> Path:
    """Train `stages` of `persona` under `recipe` and return the published run folder."""
    from stylealign import models

    _set_threads(recipe)
    base = models.resolve_base(recipe.base)
    tokenizer = models.load_tokenizer(base)
    datasets = {s: load_stage_data(persona, s, recipe, tokenizer, (data_files or {}).get(s)) for s in stages}
    state = _dist_state()
    final, work = run_paths(run_dir)
    with run_lock(final, state.is_main_process):  # one writer per run folder
        created = state.is_main_process and _claim(run_dir, resume, overwrite)  # only once the data is clean
        state.wait_for_everyone()
        if not work.exists():  # --resume found its publish cut short and finished it: nothing left to do
            return final
        try:
            _train_stages(persona, recipe, run_dir, stages, base, tokenizer, datasets, state, init_adapter, resume)
        except Exception:
            if created:
                _drop_if_unstarted(work)
            raise
    state.wait_for_everyone()
    return final


def _train_stages(persona, recipe, run_dir, stages, base, tokenizer, datasets, state, init_adapter, resume) -> None:
    """Run each stage not already finished in the work folder, then publish the run (main process)."""
    from stylealign import models

    final, work = run_paths(run_dir)
    started, summary = time.time(), {}
    with phases.phase("load base model"):
        model = models.load_model(base, quant=recipe.quant, dtype=recipe.dtype, attn=training_attention(recipe))
    check_targets(model, recipe)
    if init_adapter:
        model = _attach_trainable(model, init_adapter)
    with phases.phase("probe: load copy, score base"):
        probe = _Probe(persona, recipe, tokenizer, work, model) if recipe.select.enabled else None
    # one stage (or its retry) into work/stages/<name>: resumed, probed, recorded with DONE last
    def run_stage(name: str, kind: str, stage_recipe: Recipe, model):
        stage_dir = work / "stages" / name
        if (stage_dir / DONE).exists():  # finished before an interruption: reload its adapter
            summary[name] = json.loads((stage_dir / "summary.json").read_text())
            if state.is_main_process:
                drop_checkpoints(stage_dir)
            return _attach_trainable(_unwrap(model), stage_dir / "adapter")
        if probe and kind == "dpo":
            with phases.phase("dpo: start point, on-policy negatives"):
                model = probe.before_dpo(model, datasets["dpo"], work / "stages")
        with phases.phase(name):
            make = sft_trainer if kind == "sft" else dpo_trainer
            trainer = make(model, tokenizer, datasets[kind], stage_recipe, stage_dir)
            if probe and probe.rows:
                trainer.add_callback(select.probe_callback(name, stage_dir, probe.prober))
            summary[name] = run_trainer(trainer, stage_dir, resume, state.is_main_process)
            summary[name]["learning_rate"] = getattr(stage_recipe, kind).learning_rate
            model = _only_default(trainer.model)
            if probe and probe.rows and state.is_main_process:  # the stage's end is a candidate too
                select.save_candidate(model, probe.prober, stage_dir, name, trainer.state.global_step)
            if state.is_main_process:
                write_json(stage_dir / "summary.json", summary[name])
                write_atomic(stage_dir / DONE, "ok")  # last: a stage with DONE has every record
                drop_checkpoints(stage_dir)
            del trainer  # its optimizer state and TRL's frozen copy go before the next stage
            phases.release_memory()
        return model

    ran = []
    for stage in stages:
        model = run_stage(stage, stage, recipe, model)
        ran.append(stage)
        if probe and stage == "sft" and probe.rows and recipe.select.sft_retry_lr and not probe.met(work, ran):
            slower = lower_lr(recipe, recipe.select.sft_retry_lr)
            print(f"[select] no SFT candidate met the rule; SFT again from the start at learning rate "
                  f"{slower.sft.learning_rate:.3g} (select.sft_retry_lr {recipe.select.sft_retry_lr:g})", flush=True)
            model = run_stage(RETRY, "sft", slower, _unwrap(model))
            ran.append(RETRY)
    if state.is_main_process:
        with phases.phase("select, write manifest and plot, publish"):
            selection = probe.selection(work, ran) if probe and probe.rows else {"status": "off"}
            health.check_selection(selection, work)  # never publish a candidate that mostly answers nothing
            _finish(work, persona, recipe, base, datasets, summary, started, ran, init_adapter, selection)
            check_finite(work / "adapter")  # never publish a diverged adapter
            publish(work, final)  # atomic: a folder named like a run is always complete; a replaced one lives until now


RETRY = "sft-retry"


def lower_lr(recipe: Recipe, scale: float) -> Recipe:
    """Return the recipe with its SFT learning rate scaled (the retry of a stage that broke the rule)."""
    return dataclasses.replace(recipe, sft=dataclasses.replace(recipe.sft, learning_rate=recipe.sft.learning_rate * scale))


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


def _dist_state():
    """Return accelerate's process state (one process unless run under `accelerate launch`)."""
    from accelerate import PartialState

    return PartialState()


def _claim(run_dir, resume: bool, overwrite: bool) -> bool:
    """Check the run may be written (a finished one only with --overwrite, replaced at publish time) and make
    its work folder; return whether it made it. A publish cut short is finished or rolled back first; when
    that finished the run being resumed, no work folder is made."""
    final, work = run_paths(run_dir)
    for path in (final, work):
        if path.is_symlink() and not path.exists():
            raise UserError(f"--run {path}: a symbolic link to nothing (dangling, or a loop of links); remove it "
                            "or choose another --run")
    if finish_interrupted_publish(final, work) and resume:
        print(f"stylealign: {final}: finished its interrupted publish; nothing left to resume", file=sys.stderr)
        return False
    if final.exists() and not overwrite:
        raise UserError(f"{final} already exists (a finished run); pass --overwrite or another --run")
    if work.exists() and not resume:
        raise UserError(f"{work} holds an interrupted run; pass --resume to continue it, or delete it")
    created = not work.exists()
    work.mkdir(parents=True, exist_ok=True)
    return created


def _drop_if_unstarted(work: Path) -> None:
    """Remove a work folder this call made when the run failed before anything --resume could use (a complete
    checkpoint or a finished stage): an empty one left by a config error would block the corrected rerun."""
    if not any(work.glob("stages/*/checkpoint-*")) and not any(work.glob(f"stages/*/{DONE}")):
        shutil.rmtree(work, ignore_errors=True)


def _set_threads(recipe: Recipe) -> None:
    import torch

    torch.manual_seed(recipe.seed)
    if recipe.threads > 0:
        torch.set_num_threads(recipe.threads)


def _attach_trainable(model, adapter: str | Path):
    """Return `model` wrapped with `adapter` loaded trainable under the name "default"."""
    from peft import PeftModel

    from stylealign.adapters import check_for_base
    from stylealign.generate import adapter_dir

    folder = adapter_dir(adapter)
    check_for_base(folder, model, getattr(model.config, "_name_or_path", None) or "this base")
    return PeftModel.from_pretrained(model, folder, adapter_name="default", is_trainable=True)


def _unwrap(model):
    from peft import PeftModel

    return model.unload() if isinstance(model, PeftModel) else model


def _only_default(model):
    """Return the model with any extra adapters (TRL's "ref") removed, leaving "default" trainable."""
    for name in list(getattr(model, "peft_config", {})):
        if name != "default":
            model.delete_adapter(name)
    return model


def _finish(work: Path, persona, recipe, base, datasets, summary, started, stages, init_adapter,
            selection: dict) -> None:
    """Copy the selected candidate's adapter (else the last stage's) to adapter/, write manifest.json and
    the training plot."""
    from stylealign import plots

    chosen = selection.get("selected")
    source = work / chosen["path"] if chosen else work / "stages" / stages[-1] / "adapter"
    shutil.copytree(source, work / "adapter", dirs_exist_ok=True, ignore=shutil.ignore_patterns(select.SCORES))
    info = manifest(persona, recipe, base, datasets, summary, started, init_adapter)
    info.selection = selection
    info.red_flags = selection_flags(selection)
    write_manifest(work, info)
    histories = {s: json.loads((work / "stages" / s / "log_history.json").read_text()) for s in stages}
    plots.training_plot(histories, work / "training.png", selection)


def selection_flags(selection: dict) -> list[dict]:
    """Return the run's red flags from its selection block: the published candidate breaks the rule."""
    if selection.get("status") != "ok" or selection.get("rule_met"):
        return []
    chosen = selection["selected"]
    from stylealign.config import SelectSettings, from_dict

    rule = from_dict(SelectSettings, selection["rule"], "select")
    missed = {k: round(v, 3) for k, v in select.violations(chosen["scores"], selection["baseline"], rule).items() if v > 0}
    what = ", ".join(f"{k} by {v:g}" for k, v in missed.items()) or "the rule"
    return [{"code": "selection_rule_not_met",
             "message": f"no checkpoint met the selection rule; published {chosen['stage']} step {chosen['step']}, "
                        f"which misses {what} (greedy probe)"}]


def manifest(persona, recipe, base, datasets, summary, started, init_adapter) -> RunManifest:
    """Return the run's manifest: what was trained, from what, how, and what it measured."""
    from stylealign import models

    return RunManifest(
        persona=persona.name,
        persona_path=str(persona.path),
        system_prompt=persona.system_prompt,
        system_prompt_zh=persona.system_prompt_zh,
        bake_system_prompt=persona.bake_system_prompt,
        base_model={"name": base.name, "path": base.path, "sha256": models.weights_hash(base),
                    "quant": recipe.quant, "dtype": str(models.parse_dtype(recipe.dtype)).replace("torch.", "")},
        init_adapter=init_adapter,
        data={s: {"files": d.files, "train_rows": len(d.train), "eval_rows": len(d.eval)} for s, d in datasets.items()},
        recipe=recipe.to_dict(),
        stages=summary,
        versions=versions(),
        wall_s=round(time.time() - started, 1),
        peak_memory_mb=peak_memory_mb(),
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )


def versions() -> dict:
    """Return the versions of the libraries a run depends on."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("stylealign", "torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def peak_memory_mb() -> dict:
    """Return peak process RSS (and peak CUDA allocation when on a GPU), in MiB."""
    import resource

    import torch

    out = {"rss": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["cuda_allocated"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def on_policy_mix(persona_pairs: list[dict], n_on_policy: int, share: float, seed: int) -> list[dict]:
    """Return the persona pairs that go with `n_on_policy` on-policy pairs so that those make up `share`
    of the DPO rows (a seeded sample); all of them when share is 0 or there are no on-policy pairs."""
    import random

    if share <= 0 or n_on_policy == 0:
        return persona_pairs
    keep = min(len(persona_pairs), round(n_on_policy * (1 - share) / share))
    return random.Random(seed).sample(persona_pairs, keep)


class _Probe:
    """Checkpoint selection for one run: the base model's probe scores, then per-stage candidates."""

    def __init__(self, persona, recipe: Recipe, tokenizer, work: Path, model):
        self.recipe, self.persona = recipe, persona
        self.rows = select.probe_rows(persona, recipe)
        self.prober = select.Prober(recipe, tokenizer, self.rows) if self.rows else None
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

    def before_dpo(self, model, dpo_data: StageData, stages_dir: Path):
        """Start DPO from the best SFT candidate (recipe select.dpo_from) and add on-policy negatives."""
        sft = select.stage_candidates(stages_dir / "sft") + select.stage_candidates(stages_dir / RETRY)
        start = sft[-1] if sft else None
        if self.rows and sft and self.recipe.select.dpo_from == "best":
            start = sft[select.choose(sft, self.base, self.recipe.select, self.persona)[0]]
            if start is not sft[-1]:
                print(f"[select] DPO starts from SFT step {start['step']} (best under the rule)", flush=True)
                select.load_into(model, start)
        d = self.recipe.dpo
        if d.on_policy_negatives > 0 and start is not None:
            pairs = self._negatives(model, start, dpo_data, stages_dir / "on_policy.jsonl", d.on_policy_negatives)
            dpo_data.train = pairs + on_policy_mix(dpo_data.train, len(pairs), d.on_policy_share, self.recipe.seed)
        return model

    def _negatives(self, model, start: dict, dpo_data: StageData, path: Path, n: int) -> list[dict]:
        if not path.exists():
            pairs = select.on_policy_pairs(self.prober, model, start["path"], dpo_data.train, n, self.recipe.seed)
            write_jsonl(path, pairs)
            print(f"[select] {len(pairs)} on-policy negatives from {min(n, len(dpo_data.train))} SFT answers", flush=True)
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        dpo_data.files.append(file_record(path, len(rows)))
        return rows

    def met(self, work: Path, stages) -> bool:
        """Whether a candidate of these stages meets the selection rule."""
        cands = [c for s in stages for c in select.stage_candidates(work / "stages" / s)]
        return bool(cands) and select.choose(cands, self.base, self.recipe.select, self.persona)[1]

    def selection(self, work: Path, stages) -> dict:
        """Return the manifest's selection block: rule, base scores, every candidate, the selected one."""
        cands = [c for s in stages for c in select.stage_candidates(work / "stages" / s)]
        if not cands:
            return {"status": "no candidates"}
        best, met = select.choose(cands, self.base, self.recipe.select, self.persona)
        for c in cands:
            c["violations"] = select.violations(c["scores"], self.base, self.recipe.select)
            c["path"] = os.path.relpath(c["path"], work)  # the run folder is renamed when published
        return {"status": "ok", "rule": dataclasses.asdict(self.recipe.select),
                "metric": select.resolve_metric(self.recipe.select, self.persona), "baseline": self.base, "candidates": cands,
                "selected": cands[best], "rule_met": met}

