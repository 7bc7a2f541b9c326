"""The health gate: a stage that diverged is never published, NaN or not.

A NaN/inf loss, gradient or weight is the loud way to diverge. The quiet way stays finite: with
`--sft.learning-rate 1e9` the LoRA weights reach ~1e9, the logits saturate, the model's guess becomes uniform
(the loss sits at ln(vocabulary size)), the gradient is exactly zero from then on and every probe answer is
empty. `guard()` watches a stage for each of these signs and stops it at the first one, before that step is
checkpointed, so the last checkpoint kept is a good one; `run_trainer` then raises RunFailed with the reason
(`Guard.message`). `probe_problem` is the same gate for the probe answers of the candidate about to be
published. Each check is a plain function of numbers, so tests feed them synthetic values.
"""

from __future__ import annotations

import math
from pathlib import Path

# A stage is stopped when the gradient norm is exactly 0 for this many optimizer steps in a row: one zero step
# can be a batch whose labels are all masked; three in a row is a model that no longer learns anything.
ZERO_GRAD_STEPS = 3

# The adapter's weights may grow to at most this many times their norm at the stage's start. Adam moves each
# weight by about the learning rate per step at most, and a LoRA A matrix starts at an RMS of 1/sqrt(3 * fan_in)
# (0.024 for SmolLM2's 576-wide layers; B starts at 0), so growing 1000-fold at the recipes' learning rates
# (<= 1e-3) takes tens of thousands of steps in one direction: healthy training stays far below it (under 10x
# in the shipped recipes), while a diverging one overshoots it by orders of magnitude within a step or two
# (lr 1e9: ~1e10x).
WEIGHT_GROWTH = 1000.0

# The uniform level, ln(vocab): a float32 softmax of saturated logits lands a few 1e-6 nats below it.
UNIFORM_TOLERANCE = 0.01
# The loss check applies to a base that knew something: a first logged loss at least this far below ln(vocab).
# A randomly initialised model (the test models) starts at ln(vocab) and has no knowledge to lose.
KNEW_MARGIN = 1.0

# The probe answers of the candidate about to be published may be empty for at most this share ("mostly").
EMPTY_SHARE = 0.5


# ---------------------------------------------------------------- the checks, on plain numbers


def non_finite_problem(name: str, value: float | None) -> str | None:
    if value is not None and not math.isfinite(value):
        return f"non-finite {name} ({value})"
    return None


def loss_problem(loss: float | None, first_loss: float | None, vocab_size: int | None) -> str | None:
    """The (cross-entropy) loss is back at the uniform guess although the stage started well below it."""
    if loss is None or first_loss is None or not vocab_size:
        return None
    level = math.log(vocab_size)
    if first_loss < level - KNEW_MARGIN and loss >= level - UNIFORM_TOLERANCE:
        return (f"loss {loss:.4f} at the level of a uniform guess, ln({vocab_size}) = {level:.4f} "
                f"(the stage began at {first_loss:.3g}): the model predicts nothing")
    return None


def grad_problem(zero_steps: int) -> str | None:
    """The gradient norm has been exactly 0 for ZERO_GRAD_STEPS optimizer steps in a row."""
    if zero_steps >= ZERO_GRAD_STEPS:
        return f"gradient norm 0 for {zero_steps} steps in a row: the model stopped learning"
    return None


def weight_problem(norm: float, initial: float) -> str | None:
    """The adapter's weight norm grew past WEIGHT_GROWTH times its norm at the stage's start."""
    if initial > 0 and norm > WEIGHT_GROWTH * initial:
        return (f"adapter weights exploded to {norm / initial:.3g} times their norm at the stage's start "
                f"({initial:.3g} -> {norm:.3g}; a healthy stage stays far below {WEIGHT_GROWTH:g}x)")
    return None


def probe_problem(scores: dict, base: dict | None = None) -> str | None:
    """Most of the candidate's probe answers are empty (and more of them than the base model's)."""
    empty, base_empty = scores.get("empty"), (base or {}).get("empty") or 0.0
    if empty is not None and empty > EMPTY_SHARE and empty > base_empty:
        return f"{empty:.0%} of its greedy probe answers are empty (the base model's: {base_empty:.0%})"
    return None


def check_selection(selection: dict, work: Path) -> None:
    """Raise RunFailed when the candidate selection is about to publish fails `probe_problem`. (Empty answers
    also break the selection rule, select.violations; this refuses to publish one that is mostly empty.)"""
    from stylealign.errors import RunFailed

    chosen = selection.get("selected") if selection.get("status") == "ok" else None
    problem = chosen and probe_problem(chosen["scores"], selection.get("baseline"))
    if problem:
        raise RunFailed(f"{chosen['stage']} step {chosen['step']}: {problem}; nothing was published, every stage's "
                        f"adapter and probe scores stay in {work}. Lower the learning rate and train again "
                        f"(another --run, or delete {work})")


# ---------------------------------------------------------------- the callback


def guard(stage: str):
    """Return a TrainerCallback that stops `stage` at its first sign of divergence (module docstring)."""
    from transformers import TrainerCallback

    class _Guard(Guard, TrainerCallback):
        pass

    return _Guard(stage)


def _norm(tensors) -> float:
    import torch

    norms = [torch.linalg.vector_norm(t.detach().float()) for t in tensors]
    return float(torch.linalg.vector_norm(torch.stack(norms))) if norms else 0.0


class Guard:
    """The guard's logic; `guard()` mixes it into a TrainerCallback (transformers loads lazily). The loss check
    is for SFT only: DPO's loss is no cross-entropy over the vocabulary."""

    def __init__(self, stage: str):
        self.stage = stage
        self.tripped: tuple[int, str] | None = None  # (step, what)
        self.lr: float | None = None
        self.vocab_size: int | None = None
        self.initial_norm = 0.0
        self.zero_steps = 0

    def on_train_begin(self, args, state, control, model=None, **kw):
        # On --resume the start is the checkpoint's weights: healthy, since no tripped step is ever saved.
        self.initial_norm = _norm(_trainable(model))
        embeddings = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        self.vocab_size = embeddings.weight.shape[0] if embeddings is not None else None

    def on_pre_optimizer_step(self, args, state, control, model=None, **kw):
        norm = _norm(p.grad for p in _trainable(model) if p.grad is not None)
        self.zero_steps = self.zero_steps + 1 if norm == 0 else 0
        step = state.global_step + 1
        self._check(step, non_finite_problem("gradient norm (so the loss)", norm), args, control)
        self._check(step, grad_problem(self.zero_steps), args, control)

    def on_step_end(self, args, state, control, model=None, **kw):
        if not self.tripped:
            norm = _norm(_trainable(model))
            problem = non_finite_problem("adapter weights", norm) or weight_problem(norm, self.initial_norm)
            self._check(state.global_step, problem, args, control)
        if self.tripped:
            control.should_save = control.should_evaluate = False  # never checkpoint the diverged weights
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kw):
        logs = logs or {}
        for key in ("loss", "grad_norm"):
            value = logs.get(key)
            self._check(state.global_step, non_finite_problem(key, value) if isinstance(value, float) else None,
                        args, control)
        if self.stage == "sft" and isinstance(logs.get("loss"), (int, float)):
            first = next((e["loss"] for e in state.log_history if "loss" in e), None)  # resumed runs keep theirs
            self._check(state.global_step, loss_problem(logs["loss"], first, self.vocab_size), args, control)

    def _check(self, step: int, problem: str | None, args, control) -> None:
        if problem and not self.tripped:
            self.tripped, self.lr = (step, problem), args.learning_rate
        if self.tripped:
            control.should_save = False
            control.should_training_stop = True

    def message(self, checkpoint: str | None) -> str:
        step, what = self.tripped
        kept = f"the last good checkpoint is kept in {checkpoint}" if checkpoint else "no checkpoint was reached yet"
        return (f"{self.stage}: {what} at step {step}; training stopped, nothing was published, {kept}. "
                f"Lower the learning rate (--{self.stage}.learning-rate, now {self.lr:g}) and train again")


def _trainable(model) -> list:
    return [p for p in model.parameters() if p.requires_grad]
