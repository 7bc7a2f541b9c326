"""The health gate: a stage that diverges without a NaN (loss at the uniform level, a zero gradient, exploding
adapter weights, mostly empty probe answers) stops, publishes nothing and says what tripped."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from helpers import fails_with
from safetensors.torch import load_file

from stylealign import health
from stylealign.errors import RunFailed

LN_V = math.log(49152)  # the test models' (and SmolLM2's) vocabulary


def test_the_checks_on_synthetic_numbers():
    # The loss back at a uniform guess after a start well below it; float32 lands a hair under ln(V).
    assert "uniform guess, ln(49152) = 10.8027" in health.loss_problem(LN_V - 2e-6, 2.1, 49152)
    assert health.loss_problem(12.0, 2.1, 49152)
    assert health.loss_problem(LN_V - 0.5, 2.1, 49152) is None, "high, but still learning something"
    assert health.loss_problem(LN_V + 0.02, LN_V + 0.02, 49152) is None, "a random model starts there"
    assert health.loss_problem(None, 2.1, 49152) is None and health.loss_problem(11.0, 2.1, None) is None
    # Zero gradient norm: a streak of ZERO_GRAD_STEPS trips, one step less does not.
    assert health.grad_problem(health.ZERO_GRAD_STEPS - 1) is None
    assert "gradient norm 0 for 3 steps in a row" in health.grad_problem(3)
    # Adapter weights against their start: lr 1e9 reached ~1e10x; healthy runs stay under 10x.
    assert "1e+10 times their norm" in health.weight_problem(4.35e10, 4.35)
    assert health.weight_problem(4.35 * 999, 4.35) is None and health.weight_problem(5.0, 0.0) is None
    assert health.non_finite_problem("loss", float("nan")) == "non-finite loss (nan)"
    assert health.non_finite_problem("loss", 3.0) is None
    # Probe answers: mostly empty trips, unless the base model answers as emptily.
    assert "90% of its greedy probe answers are empty" in health.probe_problem({"empty": 0.9}, {"empty": 0.0})
    assert health.probe_problem({"empty": 0.5}, {"empty": 0.0}) is None, "half is not most"
    assert health.probe_problem({"empty": 0.9}, {"empty": 0.95}) is None
    assert health.probe_problem({"empty": None}) is None


def test_check_selection_refuses_a_mostly_empty_candidate(tmp_path):
    chosen = {"stage": "dpo", "step": 8, "scores": {"empty": 1.0}}
    with pytest.raises(RunFailed, match=r"dpo step 8: 100% of its greedy probe answers are empty .* nothing was "
                                        r"published, every stage's adapter and probe scores stay in"):
        health.check_selection({"status": "ok", "selected": chosen, "baseline": {"empty": 0.0}}, tmp_path)
    health.check_selection({"status": "ok", "selected": {**chosen, "scores": {"empty": 0.1}}, "baseline": {}}, tmp_path)
    health.check_selection({"status": "off"}, tmp_path)


class _Model(torch.nn.Module):
    """A stand-in for the trained model: two trainable "adapter" weights, a frozen one and an output head."""

    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Parameter(torch.full((4,), 0.5)), torch.nn.Parameter(torch.zeros(4))
        self.frozen = torch.nn.Parameter(torch.ones(4) * 1e6, requires_grad=False)
        self.head = torch.nn.Linear(2, 49152, bias=False)
        self.head.weight.requires_grad = False

    def get_output_embeddings(self):
        return self.head


def _drive(stage="sft"):
    """Return (guard, model, step): `step(grads=..., scale=..., loss=...)` runs one optimizer step's callbacks."""
    model, guard = _Model(), health.Guard(stage)
    args, state = SimpleNamespace(learning_rate=1e-4), SimpleNamespace(global_step=0, log_history=[])
    control = SimpleNamespace(should_save=True, should_evaluate=True, should_training_stop=False)
    guard.on_train_begin(args, state, control, model=model)

    def step(grad=0.1, scale=1.0, loss=None):
        for p in (model.a, model.b):
            p.grad = torch.full_like(p, grad)
        control.should_save = True
        guard.on_pre_optimizer_step(args, state, control, model=model)
        with torch.no_grad():
            model.a.mul_(scale)
        state.global_step += 1
        guard.on_step_end(args, state, control, model=model)
        if loss is not None:
            state.log_history.append({"loss": loss, "step": state.global_step})
            guard.on_log(args, state, control, logs={"loss": loss})
        return control

    return guard, step


def test_the_guard_stops_the_stage_at_the_first_sign_and_never_saves_it():
    guard, step = _drive()
    assert guard.vocab_size == 49152 and guard.initial_norm == pytest.approx(1.0), "trainable weights only"
    step(loss=2.0)
    step(grad=0.0)
    control = step(grad=0.0, scale=2.0, loss=3.0)
    assert not guard.tripped and control.should_save and not control.should_training_stop
    control = step(grad=0.0)
    assert guard.tripped == (4, health.grad_problem(3)) and not control.should_save and control.should_training_stop
    message = guard.message(None)
    assert message.startswith("sft: gradient norm 0 for 3 steps in a row: the model stopped learning at step 4; "
                              "training stopped, nothing was published, no checkpoint was reached yet. "
                              "Lower the learning rate (--sft.learning-rate, now 0.0001)")

    guard, step = _drive("dpo")
    step()
    step(scale=2000.0)
    assert guard.tripped[0] == 2 and "2e+03 times their norm" in guard.tripped[1]
    assert "kept in run.partial/stages/dpo/checkpoint-1" in guard.message("run.partial/stages/dpo/checkpoint-1")

    guard, step = _drive()
    step(loss=2.0)
    step(loss=LN_V)
    assert guard.tripped[0] == 2 and "uniform guess" in guard.tripped[1]
    guard, step = _drive("dpo")  # DPO's loss is no cross-entropy over the vocabulary: not checked
    step(loss=2.0)
    step(loss=LN_V)
    assert not guard.tripped

    guard, step = _drive()
    step(scale=float("inf"))
    assert guard.tripped == (1, "non-finite adapter weights (inf)")


def test_an_absurd_learning_rate_fails_the_run_and_publishes_nothing(small_persona, tiny_recipe_overrides, tmp_path,
                                                                    capsys):
    """lr 1e9 on the tiny model stays finite (no NaN: the non-finite guard alone would publish it, as before this
    gate): the adapter weights jump ~1e10-fold at the first real step, then the gradient is 0 for good."""
    overrides = {**tiny_recipe_overrides, "sft.learning_rate": 1e9, "sft.max_steps": 6, "sft.save_steps": 1}
    argv = ["train", "sft", "--persona", str(small_persona), "--run", str(tmp_path / "run")] + \
        [f"--{k}={v}" for k, v in overrides.items()]
    line = fails_with(capsys, argv, "stylealign: error: sft: adapter weights exploded to", "at step 2;",
                      "nothing was published", "checkpoint-1", "--sft.learning-rate, now 1e+09", code=1)
    assert len(line.splitlines()) == 1
    assert not (tmp_path / "run").exists(), "nothing published"
    stage = tmp_path / "run.partial" / "stages" / "sft"
    assert not (stage / "adapter").exists() and not (stage / "DONE").exists()
    assert sorted(p.name for p in stage.glob("checkpoint-*")) == ["checkpoint-1"], "the tripped step was not saved"
    kept = load_file(stage / "checkpoint-1" / "adapter_model.safetensors")
    assert max(float(t.abs().max()) for t in kept.values()) < 10, "the kept checkpoint is a good one"
