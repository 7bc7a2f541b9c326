"""Training under faults: a diverging stage publishes nothing, --overwrite keeps the old run until the new one is
complete, one writer per run folder (stale locks taken over), and a training run prints no deprecation warnings."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import warnings

import pytest
from helpers import fails_with
from safetensors.torch import load_file

from stylealign.config import load_recipe
from stylealign.errors import RunFailed, UserError
from stylealign.personas import load_persona
from stylealign.runlock import lock_path, publish, replaced_path
from stylealign.train import train_run


def _train(small_persona, overrides, run, **kw):
    return train_run(load_persona(small_persona), load_recipe(None, overrides), run, stages=("sft",), **kw)


def test_non_finite_loss_stops_the_stage_and_publishes_nothing(small_persona, tiny_recipe_overrides, tmp_path, capsys):
    overrides = {**tiny_recipe_overrides, "sft.learning_rate": 1e30, "sft.max_steps": 8, "sft.save_steps": 1}
    with pytest.raises(RunFailed, match=r"sft: non-finite .* at step (\d+); training stopped, nothing was published") as e:
        _train(small_persona, overrides, tmp_path / "run")
    assert "Lower the learning rate (--sft.learning-rate, now 1e+30)" in str(e.value)
    step = int(str(e.value).split(" at step ")[1].split(";")[0])
    assert step < 8, "stopped at once, not at the end of the stage"
    assert not (tmp_path / "run").exists(), "nothing published"
    stage = tmp_path / "run.partial" / "stages" / "sft"
    assert not (stage / "adapter").exists()
    kept = sorted(int(p.name.split("-")[1]) for p in stage.glob("checkpoint-*"))
    assert all(k < step for k in kept), "no checkpoint of the diverged step"
    for k in kept:  # the kept checkpoints are good
        weights = load_file(stage / f"checkpoint-{k}" / "adapter_model.safetensors")
        assert all(t.isfinite().all() for t in weights.values())
    # Through the CLI: exit 1, one line naming the step and the fix.
    argv = ["train", "sft", "--persona", str(small_persona), "--run", str(tmp_path / "cli")] + \
        [f"--{k}={v}" for k, v in overrides.items()]
    fails_with(capsys, argv, "stylealign: error: sft: non-finite", "at step", "Lower the learning rate", code=1)


def test_adapter_with_nan_is_never_published(small_persona, tiny_recipe_overrides, tmp_path, monkeypatch):
    from stylealign.train import records as train_mod

    real = train_mod.run_trainer

    def poisoned(trainer, stage_dir, *a, **kw):  # a NaN that no loss or gradient showed (e.g. a bad write)
        from safetensors.torch import save_file

        summary = real(trainer, stage_dir, *a, **kw)
        weights = stage_dir / "adapter" / "adapter_model.safetensors"
        tensors = load_file(weights)
        name = next(k for k in tensors if "lora_B" in k)
        tensors[name] = tensors[name].fill_(float("nan"))
        save_file(tensors, weights)
        return summary

    overrides = {**tiny_recipe_overrides, "sft.max_steps": 1}
    monkeypatch.setattr(train_mod, "run_trainer", poisoned)
    with pytest.raises(RunFailed, match="NaN/inf"):
        _train(small_persona, overrides, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_overwrite_keeps_the_finished_run_until_the_new_one_is_complete(small_persona, tiny_recipe_overrides, tmp_path,
                                                                         monkeypatch):
    from transformers import TrainerCallback

    from stylealign.train import trainers as train_mod

    run = _train(small_persona, tiny_recipe_overrides, tmp_path / "run")
    first = json.loads((run / "manifest.json").read_text())["finished"]
    (run / "marker").write_text("old run")

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            assert (run / "marker").exists(), "the old run is still there while the new one trains"
            raise KeyboardInterrupt

    real = train_mod.sft_trainer
    monkeypatch.setattr(train_mod, "sft_trainer", lambda *a, **kw: _with(real(*a, **kw), Crash()))
    with pytest.raises(KeyboardInterrupt):
        _train(small_persona, tiny_recipe_overrides, tmp_path / "run", overwrite=True)
    assert (run / "marker").read_text() == "old run", "a crash during --overwrite loses nothing"
    monkeypatch.setattr(train_mod, "sft_trainer", real)
    _train(small_persona, tiny_recipe_overrides, tmp_path / "run", overwrite=True, resume=True)
    assert not (run / "marker").exists() and (run / "adapter" / "adapter_model.safetensors").exists()
    assert json.loads((run / "manifest.json").read_text())["finished"] >= first
    assert not (tmp_path / "run.partial").exists() and not replaced_path(run).exists()


def _with(trainer, callback):
    trainer.add_callback(callback)
    return trainer


def test_publish_swap_cut_short_is_restored(tmp_path, small_persona, tiny_recipe_overrides):
    final, work = tmp_path / "run", tmp_path / "run.partial"
    final.mkdir()
    (final / "a").write_text("old")
    work.mkdir()
    (work / "a").write_text("new")
    publish(work, final)
    assert (final / "a").read_text() == "new" and not work.exists()
    # A swap killed between its two renames (no renameat2): the finished run waits in run.replaced ...
    os.replace(final, replaced_path(final))
    # ... and the next trainer on this run puts it back before anything else.
    with pytest.raises(UserError, match="already exists"):
        _train(small_persona, tiny_recipe_overrides, final)
    assert (final / "a").read_text() == "new" and not replaced_path(final).exists()


def test_second_trainer_is_refused_and_a_stale_lock_taken_over(small_persona, tiny_recipe_overrides, tmp_path):
    run = tmp_path / "run"
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock_path(run).write_text(json.dumps({"pid": owner.pid, "host": socket.gethostname(), "started": "now"}))
        for resume in (False, True):
            with pytest.raises(UserError, match=rf"another trainer is writing this run \(pid {owner.pid} on"):
                _train(small_persona, tiny_recipe_overrides, run, resume=resume)
        assert not run.exists() and not (tmp_path / "run.partial").exists()
    finally:
        owner.kill()
        owner.wait()
    # The owner died without cleaning up (as after kill -9): its lock is stale and taken over.
    assert lock_path(run).exists()
    _train(small_persona, tiny_recipe_overrides, run)
    assert run.exists() and not lock_path(run).exists()


def test_training_prints_no_deprecation_warnings(small_persona, tiny_recipe_overrides, tmp_path):
    from stylealign.quiet import quiet

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        quiet()
        _train(small_persona, {**tiny_recipe_overrides, "sft.max_steps": 1}, tmp_path / "run")
    noisy = [f"{w.category.__name__}: {w.message}" for w in seen
             if issubclass(w.category, (DeprecationWarning, FutureWarning)) or "deprecat" in str(w.message).lower()]
    assert noisy == []


def test_the_bitsandbytes_kernel_notice_is_filtered_and_other_records_are_not(caplog):
    """quiet() drops bitsandbytes' offline "Failed to load CPU gemm_4bit_forward" notice (logged on AVX-512 BF16
    CPUs when it imports) and nothing else from that logger."""
    import logging

    from stylealign.quiet import quiet

    quiet()
    quiet()  # idempotent: one filter, not two
    logger = logging.getLogger("bitsandbytes.backends.cpu.ops")
    assert len(logger.filters) == 1
    with caplog.at_level(logging.WARNING, logger=logger.name):
        logger.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please ...", "no module")
        logger.warning("a different bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["a different bitsandbytes warning"]


def test_the_cli_prints_no_bitsandbytes_notice_when_it_loads_4bit_kernels():
    """A real import of bitsandbytes' CPU backend after quiet() (on this machine's CPU flags) leaves stderr clean."""
    code = ("from stylealign.quiet import quiet; quiet(); import logging; logging.basicConfig(); "
            "import bitsandbytes.backends.cpu.ops")
    err = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stderr
    assert "gemm_4bit_forward" not in err and "kernels-community" not in err
