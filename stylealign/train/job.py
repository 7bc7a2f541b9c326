"""The training job: one object holds a run's persona, recipe, base, tokenizer, datasets, work folder and
process state; it runs the stages in order, selects the checkpoint to publish and publishes the run.

Work happens in `<run>.partial/`, which `--resume` continues: each stage lives in `stages/<name>/` and its
`DONE` marker is written last, so a stage without it trains again from its last complete checkpoint. A stage
whose scored candidates all break the selection rule has the adapters it kept early probed
(`select.early_every`); a run whose candidates all break it trains once more from the start at a lower learning
rate (`select.retry_lr`).
The finished run is renamed into place atomically, so a folder named like a run is always complete.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from stylealign import health, phases
from stylealign.adapters import check_finite
from stylealign.candidates import SCORES, early_callback, probe_callback, save_candidate, score_early
from stylealign.config import Recipe
from stylealign.errors import UserError
from stylealign.files import write_atomic, write_json
from stylealign.manifest import RunManifest, write_manifest
from stylealign.options import flatten
from stylealign.runlock import finish_interrupted_publish, publish, run_lock
from stylealign.selection import RunSelection, selection_flags
from stylealign.train import records, trainers
from stylealign.train.data import load_stage_data
from stylealign.train.records import DONE, drop_checkpoints

STAGES = ("sft", "dpo")
RETRY = "-retry"  # the suffix of the stages trained again at a lower learning rate ("sft-retry", "dpo-retry")
RECIPE = "recipe.json"  # in the work folder: the recipe the run started with
HARMLESS = {"threads", "report_to"}  # recipe fields a resumed run may change: how fast or where it logs, not what it learns


def run_paths(run_dir: str | Path) -> tuple[Path, Path]:
    """Return (final run folder, work folder). Only a finished run has the final name."""
    final = Path(run_dir)
    return final, final.with_name(final.name + ".partial")


def train_run(persona, recipe: Recipe, run_dir: str | Path, stages=STAGES, resume: bool = False,
              init_adapter: str | None = None, data_files: dict | None = None, overwrite: bool = False) -> Path:
    """Train `stages` of `persona` under `recipe` and return the published run folder."""
    return TrainingJob(persona, recipe, run_dir, stages, init_adapter, data_files).run(resume, overwrite)


class TrainingJob:
    """One training run, from validated data to the published folder."""

    def __init__(self, persona, recipe: Recipe, run_dir: str | Path, stages=STAGES, init_adapter: str | None = None,
                 data_files: dict | None = None):
        from stylealign import models

        _set_threads(recipe)
        self.persona, self.recipe, self.stages, self.init_adapter = persona, recipe, tuple(stages), init_adapter
        self.final, self.work = run_paths(run_dir)
        self.base = models.resolve_base(recipe.base)
        self.tokenizer = models.load_tokenizer(self.base)
        # every stage's data is validated before any model loads or any folder is made
        self.datasets = {s: load_stage_data(persona, s, recipe, self.tokenizer, (data_files or {}).get(s))
                         for s in self.stages}
        self.read = {s: dataclasses.replace(d) for s, d in self.datasets.items()}  # as validated, before negatives
        self.state = _dist_state()
        self.resume, self.started = False, time.time()
        self.summary: dict = {}  # stage name -> the trainer's summary
        self.ran: list[str] = []  # stage names in the order they trained (a retry included)
        self.selection: RunSelection | None = None

    def run(self, resume: bool = False, overwrite: bool = False) -> Path:
        """Claim the run folder, train what is not done yet, publish; return the run folder."""
        self.resume = resume
        with run_lock(self.final, self.state.is_main_process):  # one writer per run folder
            created = self.state.is_main_process and self.claim(resume, overwrite)
            self.state.wait_for_everyone()
            if not self.work.exists():  # --resume found its publish cut short and finished it: nothing left to do
                return self.final
            try:
                self.train()
            except Exception:
                if created:
                    _drop_if_unstarted(self.work)
                raise
        self.state.wait_for_everyone()
        return self.final

    def claim(self, resume: bool, overwrite: bool) -> bool:
        """Check the run may be written (a finished one only with --overwrite, replaced at publish time) and make
        its work folder; return whether it made it. A publish cut short is finished or rolled back first; when
        that finished the run being resumed, no work folder is made."""
        final, work = self.final, self.work
        for path in (final, work):
            if path.is_symlink() and not path.exists():
                raise UserError(f"--run {path}: a symbolic link to nothing (dangling, or a loop of links); remove "
                                "it or choose another --run")
        if finish_interrupted_publish(final, work) and resume:
            print(f"stylealign: {final}: finished its interrupted publish; nothing left to resume", file=sys.stderr)
            return False
        if final.exists() and not overwrite:
            raise UserError(f"{final} already exists (a finished run); pass --overwrite or another --run")
        if work.exists() and not resume:
            raise UserError(f"{work} holds an interrupted run; pass --resume to continue it, or delete it")
        created = not work.exists()
        work.mkdir(parents=True, exist_ok=True)
        self.same_recipe(work / RECIPE)
        return created

    def same_recipe(self, path: Path) -> None:
        """Record the recipe a run starts with; refuse to resume it under another one (other flags or --recipe
        would train the rest of the run differently and the manifest would not say so)."""
        now = json.loads(json.dumps(self.recipe.to_dict()))
        if not path.exists():
            write_json(path, now)
            return
        before = json.loads(path.read_text(encoding="utf-8"))
        old, new = flatten(before), flatten(now)
        changed = sorted(k for k in (set(old) | set(new)) - HARMLESS if old.get(k) != new.get(k))
        if changed:
            shown = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
            raise UserError(f"{self.work}: started with another recipe ({shown}{', ...' if len(changed) > 4 else ''}); "
                            f"resume with the same --recipe and flags (saved in {path})")

    def train(self) -> None:
        """Run the stages not finished yet; when no candidate meets the selection rule, run them once more
        from the start at a lower learning rate (`select.retry_lr`); publish."""
        model = self.run_stages(self.load_model(), self.recipe)
        if self.needs_retry():
            # loops and a collapsed opener long before a NaN: the rate was too high for this base
            print(f"[select] no candidate met the rule; training again from the start at "
                  f"{self.recipe.select.retry_lr:g}x the learning rates", flush=True)
            start = _unwrap(model)
            if self.init_adapter:
                start = _attach_trainable(start, self.init_adapter)
            self.run_stages(start, lower_lr(self.recipe, self.recipe.select.retry_lr), RETRY)
        if self.state.is_main_process:
            self.publish()

    def run_stages(self, model, recipe: Recipe, suffix: str = ""):
        for kind in self.stages:
            model = self.stage(kind + suffix, kind, recipe, model)
            self.ran.append(kind + suffix)
        return model

    def load_model(self):
        """Load the base once (with --init's adapter trainable) and score it on the selection probe."""
        from stylealign import models

        recipe = self.recipe
        with phases.phase("load base model"):
            model = models.load_model(self.base, quant=recipe.quant, dtype=recipe.dtype,
                                      attn=trainers.training_attention(recipe))
        trainers.check_targets(model, recipe)
        if self.init_adapter:
            model = _attach_trainable(model, self.init_adapter)
        if recipe.select.enabled:
            with phases.phase("probe: load copy, score base"):
                self.selection = RunSelection(self.persona, recipe, self.tokenizer, self.work, model)
        return model

    def needs_retry(self) -> bool:
        probing = self.selection is not None and bool(self.selection.rows)
        return probing and self.recipe.select.retry_lr > 0 and not self.selection.met(self.work, self.ran)

    def stage(self, name: str, kind: str, recipe: Recipe, model):
        """Train one stage (`kind` sft or dpo) into stages/<name>, or reload it when its DONE says it finished;
        its candidates are probed, its records written, DONE last. Return the model carrying its adapter."""
        stage_dir, probing = self.work / "stages" / name, self.selection is not None and bool(self.selection.rows)
        main = self.state.is_main_process
        if (stage_dir / DONE).exists():  # finished before an interruption: reload its adapter
            self.summary[name] = json.loads((stage_dir / "summary.json").read_text())
            if main:
                drop_checkpoints(stage_dir)
            return _attach_trainable(_unwrap(model), stage_dir / "adapter")
        data = self.datasets[kind]
        if self.selection is not None and kind == "dpo":
            # each DPO stage starts from the persona's pairs as read (a retry does not stack its negatives on the
            # first pass's); the manifest records the data of the last one
            data = self.datasets[kind] = dataclasses.replace(self.read[kind], train=list(self.read[kind].train),
                                                            files=list(self.read[kind].files))
            # the SFT stage of the same pass (a retry starts from its own, slower SFT), else any SFT stage
            suffix = name.removeprefix(kind)
            sft = [s for s in self.ran if s == "sft" + suffix] or [s for s in self.ran if s.startswith("sft")]
            with phases.phase("dpo: start point, on-policy negatives"):
                model = self.selection.before_dpo(model, data, self.work / "stages", sft,
                                                  f"on_policy{name.removeprefix(kind)}.jsonl")
        with phases.phase(name):
            make = trainers.sft_trainer if kind == "sft" else trainers.dpo_trainer
            trainer = make(model, self.tokenizer, data, recipe, stage_dir)
            if probing:
                trainer.add_callback(probe_callback(name, stage_dir, self.selection.prober))
                if recipe.select.early_every:
                    trainer.add_callback(early_callback(stage_dir, recipe.select.early_every))
            self.summary[name] = records.run_trainer(trainer, stage_dir, self.resume, main)
            self.summary[name]["learning_rate"] = getattr(recipe, kind).learning_rate
            model = _only_default(trainer.model)
            if probing and main:  # the stage's end is a candidate too
                save_candidate(model, self.selection.prober, stage_dir, name, trainer.state.global_step)
                if not self.selection.met(self.work, [name]):  # caught before the damage, if it came late
                    score_early(model, self.selection.prober, stage_dir, name)
            if main:
                write_json(stage_dir / "summary.json", self.summary[name])
                write_atomic(stage_dir / DONE, "ok")  # last: a stage with DONE has every record
                drop_checkpoints(stage_dir)
            del trainer  # its optimizer state and TRL's frozen copy go before the next stage
            phases.release_memory()
        return model

    def publish(self) -> None:
        """Choose the candidate, write adapter/, manifest and plot, check them, rename the run into place."""
        work = self.work
        with phases.phase("select, write manifest and plot, publish"):
            probing = self.selection is not None and bool(self.selection.rows)
            selection = self.selection.block(work, self.ran) if probing else {"status": "off"}
            health.check_selection(selection, work)  # never publish a candidate that mostly answers nothing
            chosen = selection.get("selected")
            source = work / chosen["path"] if chosen else work / "stages" / self.ran[-1] / "adapter"
            shutil.copytree(source, work / "adapter", dirs_exist_ok=True, ignore=shutil.ignore_patterns(SCORES))
            info = self.manifest()
            info.selection, info.red_flags = selection, selection_flags(selection)
            write_manifest(work, info)
            self.plot(selection)
            check_finite(work / "adapter")  # never publish a diverged adapter
            publish(work, self.final)  # atomic: a replaced run lives until now

    def plot(self, selection: dict) -> None:
        from stylealign import plots

        histories = {s: json.loads((self.work / "stages" / s / "log_history.json").read_text()) for s in self.ran}
        plots.training_plot(histories, self.work / "training.png", selection)

    def manifest(self) -> RunManifest:
        """Return the run's manifest: what was trained, from what, how, and what it measured."""
        from stylealign import models

        persona, recipe, base = self.persona, self.recipe, self.base
        return RunManifest(
            persona=persona.name,
            persona_path=str(persona.path),
            system_prompt=persona.system_prompt,
            system_prompt_zh=persona.system_prompt_zh,
            bake_system_prompt=persona.bake_system_prompt,
            base_model={"name": base.name, "path": base.path, "sha256": models.weights_hash(base),
                        "quant": recipe.quant, "dtype": str(models.parse_dtype(recipe.dtype)).replace("torch.", "")},
            init_adapter=self.init_adapter,
            data={s: {"files": d.files, "train_rows": len(d.train), "eval_rows": len(d.eval)}
                  for s, d in self.datasets.items()},
            recipe=recipe.to_dict(),
            stages=self.summary,
            versions=versions(),
            wall_s=round(time.time() - self.started, 1),
            peak_memory_mb=peak_memory_mb(),
            finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )


def lower_lr(recipe: Recipe, scale: float) -> Recipe:
    """Return the recipe with its SFT and DPO learning rates scaled (a run whose candidates broke the rule)."""
    return dataclasses.replace(recipe, sft=dataclasses.replace(recipe.sft, learning_rate=recipe.sft.learning_rate * scale),
                               dpo=dataclasses.replace(recipe.dpo, learning_rate=recipe.dpo.learning_rate * scale))


def _drop_if_unstarted(work: Path) -> None:
    """Remove a work folder this run made when it failed before anything --resume could use (a complete
    checkpoint or a finished stage): an empty one left by a config error would block the corrected rerun."""
    if not any(work.glob("stages/*/checkpoint-*")) and not any(work.glob(f"stages/*/{DONE}")):
        shutil.rmtree(work, ignore_errors=True)


def _dist_state():
    """Return accelerate's process state (one process unless run under `accelerate launch`)."""
    from accelerate import PartialState

    return PartialState()


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
