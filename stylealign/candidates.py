"""A training run's candidates on disk: each under `stages/<stage>/candidates/step-N/`, its adapter (PEFT,
safetensors) and, once probed, its greedy probe scores (`probe.json`). Checkpoints are saved and probed at once
(probe_callback, and each stage's end); before a stage's first checkpoint the adapter is kept every
`select.early_every` steps unscored (early_callback) and probed only when the stage's scored candidates all break
the selection rule (score_early). The rule itself, and the prober, live in stylealign.selection."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from stylealign import phases
from stylealign.files import write_json

SCORES = "probe.json"


def save_candidate(model, prober, stage_dir: Path, stage: str, step: int) -> dict:
    """Save the trainable adapter as a candidate under stage_dir/candidates/step-N, score it, return its record."""
    folder = Path(stage_dir) / "candidates" / f"step-{step}"
    if (folder / SCORES).exists():  # scored before an interruption
        return json.loads((folder / SCORES).read_text())
    with phases.phase(f"probe {stage} step {step}"):
        _save_adapter(model, folder)
        return _score(model, prober, folder, {"stage": stage, "step": step})


def _save_adapter(model, folder: Path) -> None:
    """Save the trainable adapter into `folder` whole: written beside it, then renamed over any older copy (a
    resumed stage passes the same step again), so a candidate folder never holds a half-written adapter."""
    part = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(part, ignore_errors=True)
    model.save_pretrained(part, selected_adapters=["default"], safe_serialization=True)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(part, folder)


def _score(model, prober, folder: Path, record: dict) -> dict:
    """Score the adapter saved in `folder` on the probe, write its record there, announce it, return it."""
    record = {**record, "path": str(folder), "scores": prober.score(model, folder)}
    write_json(folder / SCORES, record)
    s = record["scores"]
    print(f"[select] {record['stage']} step {record['step']}{' (early)' if record.get('early') else ''}: "
          f"verdict-first {_pct(s['verdict_first'])}, repetitive {_pct(s['repetitive'])}, "
          f"top opener {_pct(s['top_opener'])}, yes-share {_pct(s['yes_share'])}", flush=True)
    return record


def early_callback(stage_dir: Path, every: int):
    """Return a TrainerCallback that keeps the trainable adapter every `every` steps before the stage's first
    checkpoint, unscored (`select.early_every`): score_early probes them only when the stage needs them."""
    from transformers import TrainerCallback

    class EarlyCandidates(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            step, first = state.global_step, args.save_steps if args.max_steps <= 0 else min(args.save_steps, args.max_steps)
            if state.is_world_process_zero and model is not None and step % every == 0 and step < first:
                _save_adapter(model, Path(stage_dir) / "candidates" / f"step-{step}")

    return EarlyCandidates()


def score_early(model, prober, stage_dir: Path, stage: str) -> list[dict]:
    """Probe the stage's early candidates not scored yet (early_callback) and return their records. On a GPU the
    prober decodes with the training model, so each candidate's weights are swapped in and the model's put back."""
    kept = sorted((int(f.name.removeprefix("step-")), f) for f in Path(stage_dir).glob("candidates/step-*")
                  if f.name.removeprefix("step-").isdigit() and not (f / SCORES).exists()
                  and (f / "adapter_model.safetensors").exists())
    if not kept:
        return []
    print(f"[select] {stage}: no scored candidate met the rule; probing its early candidates "
          f"(step {', '.join(str(step) for step, _ in kept)})", flush=True)
    keep = _adapter_weights(model) if prober.on_gpu else None
    out = []
    try:
        for step, folder in kept:
            with phases.phase(f"probe {stage} step {step} (early)"):
                if keep is not None:
                    load_into(model, {"path": folder})
                out.append(_score(model, prober, folder, {"stage": stage, "step": step, "early": True}))
    finally:
        if keep is not None:
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(model, keep, adapter_name="default")
    return out


def _adapter_weights(model) -> dict:
    from peft import get_peft_model_state_dict

    return {k: v.detach().clone() for k, v in get_peft_model_state_dict(model, adapter_name="default").items()}


def stage_candidates(stage_dir: Path) -> list[dict]:
    """Return the scored candidates of one stage, by step."""
    found = [json.loads(p.read_text()) for p in Path(stage_dir).glob(f"candidates/step-*/{SCORES}")]
    return sorted(found, key=lambda c: c["step"])


def run_candidates(work: Path, stages) -> list[dict]:
    """Return the scored candidates of a run's stages, stage by stage, by step."""
    return [c for s in stages for c in stage_candidates(Path(work) / "stages" / s)]


def probe_callback(stage: str, stage_dir: Path, prober):
    """Return a TrainerCallback that saves and scores a candidate at every checkpoint save."""
    from transformers import TrainerCallback

    class ProbeCallback(TrainerCallback):
        def on_save(self, args, state, control, model=None, **kwargs):
            if state.is_world_process_zero and model is not None:
                save_candidate(model, prober, stage_dir, stage, state.global_step)

    return ProbeCallback()


def _pct(x) -> str:
    return "–" if x is None else f"{x:.0%}"


def load_into(model, candidate: dict, adapter_name: str = "default") -> None:
    """Load a candidate's adapter weights into `model`'s adapter `adapter_name` (the trainable one by default)."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(Path(candidate["path"]) / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights, adapter_name=adapter_name)
    unexpected = getattr(result, "unexpected_keys", None)
    if unexpected:
        raise ValueError(f"{candidate['path']}: adapter weights do not fit the model ({unexpected[:3]} ...)")
