"""Crash-safe run records: a kill at any file boundary of a run leaves a work folder that `--resume` finishes into
the run an uninterrupted trainer publishes; torn checkpoints are skipped; a publish cut short, `--overwrite`
included, is finished or rolled back; a config error leaves no work folder behind.

A kill is simulated without a process per boundary: one uninterrupted run is recorded, and before each file it
writes, renames or removes under the run (Python's audit events, plus torch.save, safetensors and the renameat2
exchange, which write outside Python's file objects) a copy of the run's folders is taken: what a kill -9 at that
moment leaves on disk. Copies that `--resume` cannot tell apart (the same files, checkpoints complete or torn,
temp files ignored) are resumed once."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stylealign import runlock
from stylealign.config import load_recipe
from stylealign.personas import load_persona
from stylealign.runlock import PUBLISHING, finish_interrupted_publish, publish, replaced_path
from stylealign.train import checkpoint_complete, latest_checkpoint, train_run

_RECORDER = []  # the active recorder: sys.addaudithook cannot be removed, so the hook only looks here
_WRITES = {"open", "os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree"}
TEMP = re.compile(r"^\..*\.tmp$|\.tmp\.")  # files.write_atomic's temp files, plots' training.tmp.png


def _hook(event, args):
    if _RECORDER and event in _WRITES:
        _RECORDER[0].event(event, args)


class Recorder:
    """Keeps a copy of `root` before each write under it, one per state `--resume` can tell apart."""

    def __init__(self, root: Path, out: Path):
        self.root, self.out, self.busy = root, out, False
        self.snapshots: dict[tuple, Path] = {}

    def event(self, event: str, args: tuple) -> None:
        path = args[0] if args else None
        if event == "open":  # (path, mode, flags): builtins.open gives a mode, os.open flags
            mode, flags = args[1], args[2]
            writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT
            if not (any(c in mode for c in "wax+") if isinstance(mode, str) else int(flags or 0) & writing):
                return
        # shutil.rmtree removes each entry by its name relative to a folder's descriptor, not by a path
        rmtree_entry = event in ("os.remove", "os.rmdir") and len(args) > 1 and args[1] not in (None, -1)
        if rmtree_entry or (isinstance(path, (str, Path)) and str(path).startswith(str(self.root))):
            self.boundary()

    def boundary(self) -> None:
        if self.busy:
            return
        self.busy = True
        try:
            key = signature(self.root)
            if key not in self.snapshots:
                dest = self.out / f"s{len(self.snapshots):02d}"
                if self.root.exists():  # the killed owner's lock is stale: taken over (tests/test_train_faults.py)
                    shutil.copytree(self.root, dest, ignore=shutil.ignore_patterns("*.lock"))
                dest.mkdir(parents=True, exist_ok=True)
                self.snapshots[key] = dest
        finally:
            self.busy = False


def signature(root: Path) -> tuple:
    """What `--resume` reads of the folders under `root`: the files there, each checkpoint as complete or
    torn, each adapter folder as present; temp files, READMEs and the lock ignored."""
    out = set()
    for p in root.rglob("*") if root.exists() else ():
        rel = p.relative_to(root).parts
        if rel[0].endswith(".lock") or TEMP.search(p.name) or p.name == "README.md":
            continue
        for i, part in enumerate(rel):
            if part.startswith("checkpoint-"):
                whole = root.joinpath(*rel[:i + 1])
                out.add(f"{'/'.join(rel[:i + 1])} {'complete' if checkpoint_complete(whole) else 'torn'}")
                break
            if part == "adapter":
                out.add("/".join(rel[:i + 1]) + "/")
                break
        else:
            if p.is_file():
                out.add("/".join(rel))
    return tuple(sorted(out))


@pytest.fixture
def recording(monkeypatch):
    """Return a function that starts recording writes under a root (torch.save, safetensors and the renameat2
    exchange announce themselves: they write outside Python's file objects)."""
    import peft.peft_model

    if _hook not in getattr(sys, "_stylealign_hooks", []):
        sys.addaudithook(_hook)
        sys._stylealign_hooks = [_hook]

    def before(real):
        def call(*a, **kw):
            if _RECORDER:
                _RECORDER[0].boundary()
            return real(*a, **kw)
        return call

    monkeypatch.setattr(torch, "save", before(torch.save))
    monkeypatch.setattr(peft.peft_model, "safe_save_file", before(peft.peft_model.safe_save_file))
    monkeypatch.setattr(runlock, "_exchange", before(runlock._exchange))

    def start(root: Path, out: Path) -> Recorder:
        _RECORDER[:] = [Recorder(root, out)]
        return _RECORDER[0]

    yield start
    _RECORDER.clear()


# Per process, not per run: HF's train_loss and throughput cover the steps this process ran, and TRL's num_tokens
# counts from this process's start (its counter is not in the checkpoint).
VOLATILE = {"wall_s", "finished", "peak_memory_mb", "train_loss", "train_runtime", "train_samples_per_second",
            "train_steps_per_second", "num_tokens"}


def _stable(obj):
    if isinstance(obj, dict):
        return {k: _stable(v) for k, v in obj.items() if k not in VOLATILE}
    return obj


def test_a_kill_at_any_file_boundary_resumes_to_the_uninterrupted_run(small_persona, tiny_recipe_overrides, tmp_path,
                                                                     recording, capfd):
    overrides = {**tiny_recipe_overrides, "sft.max_steps": 2, "sft.save_steps": 1, "sft.batch_size": 2}
    persona, recipe = load_persona(small_persona), load_recipe(None, overrides)
    root = tmp_path / "straight"
    recorder = recording(root, tmp_path / "kills")
    straight = train_run(persona, recipe, root / "run", stages=("sft",))
    _RECORDER.clear()
    assert len(recorder.snapshots) >= 12, sorted(recorder.snapshots)
    weights = load_file(straight / "adapter" / "adapter_model.safetensors")
    manifest = _stable(json.loads((straight / "manifest.json").read_text()))
    losses = [e["loss"] for e in json.loads((straight / "stages/sft/log_history.json").read_text()) if "loss" in e]
    states = set()
    for key, snap in recorder.snapshots.items():
        run = snap / "run"
        if not (snap / "run.partial").exists() and run.exists():
            states.add("published")  # killed after the rename: nothing to resume
        else:
            states.add(next((k.split()[-1] for k in key if k.startswith("run.partial/stages/sft/checkpoint-")), "-"))
            train_run(persona, recipe, run, stages=("sft",), resume=True)
        assert sorted(p.name for p in snap.iterdir()) == ["run"], (key, "no work folder, temp or marker left")
        assert not list(run.rglob("checkpoint-*")) and not list(run.rglob("*.tmp*")), key
        # A resumed run repeats the uninterrupted run's steps on the same batches (data position, RNG, optimizer
        # and schedule come back from the checkpoint): fp32 on a CPU, measured equal; 1e-5 relative for kernels.
        resumed = load_file(run / "adapter" / "adapter_model.safetensors")
        assert resumed.keys() == weights.keys(), key
        for name, tensor in weights.items():
            assert torch.allclose(resumed[name], tensor, rtol=1e-5, atol=1e-8), (key, name)
        assert _stable(json.loads((run / "manifest.json").read_text())) == manifest, key
        assert _stable(json.loads((run / "stages/sft/summary.json").read_text())) == manifest["stages"]["sft"], key
        resumed_losses = [e["loss"] for e in json.loads((run / "stages/sft/log_history.json").read_text())
                          if "loss" in e]
        assert resumed_losses == pytest.approx(losses, rel=1e-5), key
        assert (run / "stages/sft/DONE").read_text() == "ok" and (run / "training.png").stat().st_size > 0
    assert {"torn", "complete", "published", "-"} <= states, "killed inside a checkpoint, between them and after"
    assert "incomplete (cut short while being written), skipped and removed" in capfd.readouterr().err


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    ckpt = folder / f"checkpoint-{step}"
    ckpt.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "optimizer.pt", "scheduler.pt"):
        (ckpt / name).write_bytes(b"x")
    (ckpt / "trainer_state.json").write_text('{"global_step": %d}' % step if complete else '{"global_st')
    return ckpt


def test_a_torn_checkpoint_falls_back_to_the_previous_one(tmp_path, capsys):
    stage = tmp_path / "sft"
    _checkpoint(stage, 2)
    _checkpoint(stage, 4, complete=False)  # killed while trainer_state.json was written
    (stage / "checkpoint-6").mkdir()  # killed right after the folder was made
    assert latest_checkpoint(stage) == str(stage / "checkpoint-2")
    assert capsys.readouterr().err == ("stylealign: sft: checkpoint-4, checkpoint-6 incomplete (cut short while being "
                                       "written), skipped and removed; resuming from checkpoint-2\n")
    assert sorted(p.name for p in stage.iterdir()) == ["checkpoint-2"]
    (stage / "checkpoint-2" / "optimizer.pt").unlink()
    assert latest_checkpoint(stage) is None
    assert capsys.readouterr().err.endswith("checkpoint-2 incomplete (cut short while being written), skipped and "
                                            "removed; starting the stage over\n")
    assert latest_checkpoint(stage) is None and capsys.readouterr().err == "", "nothing to say about no checkpoint"


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two renames"])
def test_a_publish_over_a_finished_run_cut_short_anywhere_is_finished_or_rolled_back(tmp_path, recording,
                                                                                    monkeypatch, exchange):
    """Each state `publish` passes through, replacing a finished run: the next trainer on the run ends with the
    new run or the old one, whole, and publishing again (what --resume does with a work folder left) the new."""
    if not exchange:
        monkeypatch.setattr(runlock, "_exchange", lambda a, b: False)
    root = tmp_path / "live"
    final, work = root / "run", root / "run.partial"
    for folder, text in ((final, "old"), (work, "new")):
        (folder / "adapter").mkdir(parents=True)
        for name in ("manifest.json", "adapter/adapter_model.safetensors", "training.png"):
            (folder / name).write_text(text)
    recorder = recording(root, tmp_path / "kills")
    publish(work, final)
    _RECORDER.clear()
    assert len(recorder.snapshots) >= 4
    seen = set()
    for key, snap in recorder.snapshots.items():
        final, work = snap / "run", snap / "run.partial"
        seen.add(tuple((f / "manifest.json").read_text() if f.exists() else None for f in (final, work)))
        finished = finish_interrupted_publish(final, work)
        assert final.is_dir() and not replaced_path(final).exists() and not (final / PUBLISHING).exists(), key
        state = {p.relative_to(final).as_posix(): p.read_text() for p in final.rglob("*") if p.is_file()}
        assert set(state.values()) in ({"old"}, {"new"}) and len(state) == 3, (key, state)
        assert finished == (state["manifest.json"] == "new" and not work.exists()), key
        if work.exists():
            assert state["manifest.json"] == "old", "a work folder is left only when the old run is still there"
            publish(work, final)
        assert (final / "manifest.json").read_text() == "new" and sorted(p.name for p in snap.iterdir()) == ["run"]
    # Killed between the exchange and moving the old run aside / between the two renames.
    assert (("new", "old") if exchange else (None, "new")) in seen


def test_a_config_error_leaves_no_work_folder(small_persona, tiny_recipe_overrides, tmp_path):
    """A value only the trainer rejects (no such LoRA target in the model) fails after the work folder is made:
    the folder goes again, so the corrected rerun needs no --resume."""
    persona, runs = load_persona(small_persona), tmp_path / "runs"
    with pytest.raises(ValueError, match="nope"):
        train_run(persona, load_recipe(None, {**tiny_recipe_overrides, "lora.target_modules": "nope"}),
                  runs / "run", stages=("sft",))
    assert sorted(p.name for p in runs.iterdir()) == [], "no run.partial (nor lock) to block the corrected rerun"
