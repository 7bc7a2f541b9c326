"""Orchestration: pick the rows once, run every arm in its own process (kit and reference alternated),
then hand the results to bench.summary and bench.report.

Every kit figure is a ratio against a reference measured in the same invocation, because the
machine may be shared: absolute numbers move with other people's load, ratios much less.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from stylealign import omp
from stylealign.files import write_atomic

from . import arith
from .host import load, machine, on_gpu
from .report import write_report
from .scale import scale_arms
from .settings import CPU_RECIPE, GPU_RECIPE_LARGE, GPU_RECIPE_SMALL, Settings
from .shapes import shape_model
from .spec import ArmSpec
from .summary import summarise

HARNESS_ROOT = Path(__file__).resolve().parents[1]  # benchmarks/: put on the workers' path


class Runner:
    """Runs arms as subprocesses, logging each to <out>/logs/ and collecting their JSON results."""

    def __init__(self, out: Path, settings: Settings, echo=print):
        self.out, self.settings, self.echo = out, settings, echo
        (out / "logs").mkdir(parents=True, exist_ok=True)
        (out / "work").mkdir(exist_ok=True)

    def env(self) -> dict:
        """Return the workers' environment: quiet libraries, thread count and OpenMP wait policy."""
        path = os.pathsep.join(p for p in (str(HARNESS_ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "PYTHONPATH": path, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
               "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
        if self.settings.threads:
            env["OMP_NUM_THREADS"] = str(self.settings.threads)
        if self.settings.omp_policy != "inherit":
            env["OMP_WAIT_POLICY"] = self.settings.omp_policy.upper()
        return env

    def __call__(self, name: str, spec: ArmSpec) -> dict:
        spec.threads, spec.work = self.settings.threads, str(self.out / "work" / name)
        spec.result = str(self.out / "work" / f"{name}.json")
        Path(spec.work).mkdir(parents=True, exist_ok=True)
        spec_path = spec.save(self.out / "work" / f"{name}.spec.json")
        started = time.perf_counter()
        self.echo(f"  {name} ...", end="", flush=True)
        with open(self.out / "logs" / f"{name}.log", "w") as log:
            code = subprocess.call([sys.executable, "-m", "bench.worker", str(spec_path)],
                                   stdout=log, stderr=subprocess.STDOUT, env=self.env(), cwd=os.getcwd())
        wall = time.perf_counter() - started
        if code != 0 or not Path(spec.result).exists():
            tail = (self.out / "logs" / f"{name}.log").read_text(errors="replace").strip().splitlines()[-8:]
            self.echo(f" FAILED ({wall:.0f}s; see logs/{name}.log)")
            return {"error": f"exit {code}", "log_tail": tail, "wall_seconds": round(wall, 1)}
        self.echo(f" {wall:.0f}s")
        result = json.loads(Path(spec.result).read_text())
        result["wall_seconds"] = round(wall, 1)
        return result


@dataclass
class Setup:
    """What every arm shares: the base folder, the recipe, the rows file and the model's shape."""

    model_path: str
    recipe_name: str
    recipe: object
    out: Path
    rows: dict
    rows_path: Path
    dims: arith.Dims
    max_length: int | None


def prepare(settings: Settings) -> Setup:
    """Resolve the model and recipe, fill the mode's defaults, pick the rows once; return the Setup."""
    from stylealign import models
    from stylealign.config import load_recipe
    from stylealign.personas import load_persona

    from .rows import select

    gpu = on_gpu()
    model_path = str(shape_model(settings.shape)) if settings.shape else models.resolve_base(settings.model).path
    recipe_name = settings.recipe or (CPU_RECIPE if not gpu else
                                      GPU_RECIPE_SMALL if settings.model == "smollm2-135m" and not settings.shape
                                      else GPU_RECIPE_LARGE)
    recipe = load_recipe(recipe_name)
    settings.for_mode(recipe)
    out = Path(settings.out or f"runs/bench-{time.strftime('%Y%m%d-%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    settings.out = str(out)
    extra = 1 if settings.profile else 0  # rows enough for every arm, the profiled step included
    rows = select(load_persona(settings.persona), models.load_tokenizer(models.resolve_base(model_path)),
                  sft_rows=(settings.sft_steps + settings.warmup + extra) * settings.sft_batch,
                  pref_rows=(settings.dpo_steps + settings.warmup + extra) * settings.dpo_batch,
                  prompts=settings.gen_pairs, max_tokens=settings.max_tokens, seq_len=settings.seq_len or None)
    rows_path = out / "work" / "rows.json"
    write_atomic(rows_path, json.dumps(rows, ensure_ascii=False))
    dims = arith.Dims.from_config(json.loads((Path(model_path) / "config.json").read_text()))
    max_length = max(recipe.max_length, settings.seq_len + 256) if settings.seq_len else None
    return Setup(model_path, recipe_name, recipe, out, rows, rows_path, dims, max_length)


def _env(settings: Settings) -> dict:
    threads = str(settings.threads) if settings.threads else os.environ.get("OMP_NUM_THREADS")
    policy = settings.omp_policy.upper() if settings.omp_policy != "inherit" else os.environ.get("OMP_WAIT_POLICY")
    spin = os.environ.get("GOMP_SPINCOUNT") if settings.omp_policy == "inherit" else None
    return {k: v for k, v in {"OMP_NUM_THREADS": threads, "OMP_WAIT_POLICY": policy, "GOMP_SPINCOUNT": spin,
                              "omp_choice": os.environ.get(omp.CHOSEN)}.items() if v}


def new_report(settings: Settings, setup: Setup) -> dict:
    """Return the report's header: date, mode, machine, environment, settings, model and data."""
    return {"schema_version": 1, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
            "mode": "quick" if settings.quick else "full", "machine": machine(), "load_before": load(),
            "env": _env(settings), "settings": asdict(settings), "recipe": setup.recipe_name,
            "model": {"name": settings.shape and f"random {settings.shape}" or settings.model, "path": setup.model_path,
                      "dims": setup.dims.to_dict(), "linear_params": arith.linear_params(setup.dims)},
            "data": {"skipped_rows": setup.rows["skipped"], "sft_rows": len(setup.rows["sft"]),
                     "preference_rows": len(setup.rows["preference"]), "prompts": len(setup.rows["prompts"])},
            "arms": {}, "peak": []}


def train_arms(settings: Settings, setup: Setup, run: Runner, arms: dict) -> None:
    """Run the SFT and DPO arms, kit and reference alternated per repetition, into `arms`."""
    for area in ("sft", "dpo"):
        if area not in settings.areas:
            continue
        steps, batch = (settings.sft_steps, settings.sft_batch) if area == "sft" else (settings.dpo_steps, settings.dpo_batch)
        for rep in range(settings.reps):
            for arm in ("kit", "ref"):
                last = rep == settings.reps - 1 and arm == "kit"  # profile the kit: the reference is TRL's business
                profiled = settings.profile and last
                spec = ArmSpec(area=area, arm=arm, rep=rep, model=setup.model_path, recipe=setup.recipe_name,
                               quant=settings.quant, batch_size=batch, warmup=settings.warmup,
                               total_steps=steps + settings.warmup + (1 if profiled else 0),
                               max_length=setup.max_length, rows=str(setup.rows_path), ref=settings.ref,
                               kit_set=settings.kit_set,
                               profile=str(setup.out / f"profile-{area}-{arm}.txt") if profiled else None)
                arms.setdefault(f"{area}-{arm}", []).append(run(f"{area}-{arm}-{rep}", spec))


def gen_arm(settings: Settings, setup: Setup, run: Runner) -> dict:
    """Run the generation arm (batched vs one by one, arena panes) and return its result."""
    from stylealign.generate import generation_quant

    quant = settings.gen_quant or generation_quant([settings.quant or setup.recipe.quant])
    return run("gen", ArmSpec(area="gen", model=setup.model_path, quant=quant, rows=str(setup.rows_path),
                              reps=settings.reps, batch_size=settings.gen_batch, max_new_tokens=settings.max_new_tokens,
                              profile=str(setup.out / "profile-gen.txt") if settings.profile else None))


def main_recipe(settings: Settings, setup: Setup) -> tuple[str, bool]:
    """Return (recipe for the main job, whether it is the shipped one as is): the bench's recipe, on --model
    when that is not the recipe's base, and in quick mode cut to a few steps (then it is not the real job)."""
    import yaml

    recipe = setup.recipe.to_dict()
    shipped = not settings.quick and settings.model == recipe["base"] and not settings.shape
    if not settings.quick and shipped:
        return setup.recipe_name, True
    recipe["base"] = setup.model_path
    if settings.quick:
        recipe["sft"].update(max_steps=4, save_steps=2)
        recipe["dpo"].update(max_steps=2, save_steps=2, on_policy_negatives=4)
        recipe["select"].update(max_new_tokens=8)
    path = setup.out / "work" / "main-recipe.yaml"
    write_atomic(path, yaml.safe_dump(recipe, sort_keys=False))
    return str(path), False


def main_arm(settings: Settings, setup: Setup, echo=print) -> dict:
    """Run the main job (`stylealign quickstart --no-arena`, training from scratch) in its own process and
    return its per-phase wall time, CPU time and peak RSS (the job's <run>/main_job.json)."""
    from stylealign.commands.quickstart import PHASES

    recipe, shipped = main_recipe(settings, setup)
    run_dir = setup.out / "work" / "main-run"
    cmd = [sys.executable, "-m", "stylealign", "quickstart", "--no-arena", "--retrain", "--recipe", recipe,
           "--persona", settings.persona, "--run", str(run_dir)]
    if settings.quick:
        cmd += ["--limit", "2"]
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "TRANSFORMERS_VERBOSITY": "error",
           "HF_DATASETS_DISABLE_PROGRESS_BARS": "1", "TQDM_DISABLE": "1", "PYTHONWARNINGS": "ignore"}
    if settings.threads:
        env["OMP_NUM_THREADS"] = str(settings.threads)
    started = time.perf_counter()
    echo("  main job ...", end="", flush=True)
    with open(setup.out / "logs" / "main.log", "w") as log:
        code = subprocess.call(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=os.getcwd())
    wall = time.perf_counter() - started
    phases_file = run_dir / PHASES
    if code != 0 or not phases_file.exists():
        tail = (setup.out / "logs" / "main.log").read_text(errors="replace").strip().splitlines()[-8:]
        echo(f" FAILED ({wall:.0f}s; see logs/main.log)")
        return {"error": f"exit {code}", "log_tail": tail, "wall_seconds": round(wall, 1)}
    echo(f" {wall:.0f}s")
    result = json.loads(phases_file.read_text())
    return {**result, "wall_seconds": round(wall, 1), "recipe": recipe, "shipped_recipe": shipped,
            "quick": settings.quick}


def run_bench(settings: Settings, echo=print) -> dict:
    """Measure everything `settings` asks for; write report.json and report.md; return the report."""
    started = time.time()
    setup = prepare(settings)
    run = Runner(setup.out, settings, echo)
    echo(f"stylealign bench ({'quick' if settings.quick else 'full'}) on {setup.model_path} -> {setup.out}")
    report = new_report(settings, setup)
    peak = bool({"sft", "dpo", "gen"} & set(settings.areas))  # the matmul peak serves their utilisation
    if peak:
        report["peak"].append(run("peak-start", ArmSpec(area="peak", trials=3 if settings.quick else 5)))
    train_arms(settings, setup, run, report["arms"])
    if "gen" in settings.areas:
        report["arms"]["gen"] = [gen_arm(settings, setup, run)]
    if "main" in settings.areas:
        report["arms"]["main"] = [main_arm(settings, setup, echo)]
    if "scale" in settings.areas:
        report["arms"]["scale"] = scale_arms(settings, setup, run, echo)
    if peak and not settings.quick:  # a second measurement brackets the arms; quick mode saves the seconds
        report["peak"].append(run("peak-end", ArmSpec(area="peak")))
    report["load_after"] = load()
    report["wall_seconds"] = round(time.time() - started, 1)
    summarise(report, setup.dims, setup.recipe.lora.r, on_gpu())
    write_report(report, setup.out)
    return report
