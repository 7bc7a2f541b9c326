"""A stage's records in its folder: checkpoints (torn ones skipped on resume), the trained adapter, the log
history and the summary. The `DONE` marker is written last by the job, so a stage with it has every record."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from stylealign import health, phases
from stylealign.adapters import check_finite
from stylealign.errors import RunFailed
from stylealign.files import append_durable, write_atomic

DONE = "DONE"


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


PROGRESS = "progress.jsonl"  # in the stage folder: one line per Trainer log (step, max_steps, elapsed, metrics)


def progress_callback(stage_dir: Path):
    """Return a TrainerCallback that appends each of Trainer's logs to the stage's progress.jsonl as it happens
    (what a live view reads: loss by step, and the ETA from the elapsed time); a resumed stage appends again."""
    from transformers import TrainerCallback

    start = time.time()

    class Progress(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if state.is_world_process_zero and logs:
                line = {"step": state.global_step, "max_steps": state.max_steps,
                        "elapsed_s": round(time.time() - start, 2), **logs}
                append_durable(stage_dir / PROGRESS, json.dumps(line) + "\n")

    return Progress()


def run_trainer(trainer, stage_dir: Path, resume: bool, main_process: bool = True) -> dict:
    """Train (resuming from the last complete checkpoint when asked), save the adapter and the log history,
    return the stage summary. The stage's DONE marker is the caller's to write, after its last record."""
    start = time.time()
    guard = health.guard(stage_dir.name)
    trainer.add_callback(guard)
    trainer.add_callback(no_final_checkpoint())
    if main_process:
        trainer.add_callback(progress_callback(stage_dir))
    import torch

    if not torch.cuda.is_available():
        trainer.add_callback(phases.trim_callback())  # RSS stays at what a step needs, not what all steps left
    checkpoint = latest_checkpoint(stage_dir) if resume else None
    if checkpoint:
        print(f"stylealign: {stage_dir.name}: resuming from {Path(checkpoint).name}", file=sys.stderr, flush=True)
    result = trainer.train(resume_from_checkpoint=checkpoint)
    if guard.tripped:
        raise RunFailed(guard.message(latest_checkpoint(stage_dir)))
    summary = {"wall_s": round(time.time() - start, 1), "steps": trainer.state.global_step,
               "lm_head": getattr(trainer, "stylealign_lm_head", "trl"),
               "lora_compute": getattr(trainer, "stylealign_lora_compute", "fp32"),
               "compile": getattr(trainer, "stylealign_compile", "off"),
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
