"""Orchestration: pick the rows once, run every arm in its own process (kit and reference alternated),
then turn the step timings into rates, ratios, FLOPs, utilisation and pass/fail per target.

Every kit figure is a ratio against a reference measured in the same invocation, because the
machine may be shared: absolute numbers move with other people's load, ratios much less.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from stylealign import omp
from stylealign.config import option
from stylealign.errors import ConfigError
from stylealign.files import write_atomic, write_json
from stylealign.text import table

from . import arith
from .spec import ArmSpec

CPU_RECIPE = "smollm2-135m_qlora_cpu"
GPU_RECIPE_SMALL = "smollm2-135m_lora_gpu"
GPU_RECIPE_LARGE = "qwen2.5-7b_qlora_gpu"
AREAS = ("sft", "dpo", "gen", "main")
DEFAULT_AREAS = {"quick": ("sft", "dpo", "gen"), "full": AREAS}  # the main job takes ~10 minutes: full runs only
REF_LORA_R = 16  # the plain-TRL arm's LoRA rank (worker.LORA_R)


def _kit_set(items) -> dict:
    """Return {key: YAML value} from one KEY=VALUE string, a dict, or a list of either (argparse's
    append action converts each flag's string on its own, then the settings merge the list)."""
    import yaml

    if isinstance(items, dict):
        return items
    if isinstance(items, str):
        key, sep, value = items.partition("=")
        if not sep:
            raise ConfigError(f"--kit-set takes KEY=VALUE, got {items!r}")
        return {key.strip(): yaml.safe_load(value)}
    out: dict = {}
    for item in items:
        out.update(_kit_set(item))
    return out


def _areas(text) -> tuple:
    return tuple(a.strip() for a in text.split(",")) if isinstance(text, str) else tuple(text)


@dataclass
class Settings:
    """What one bench invocation measures; 0 / None means the mode's default, filled by `for_mode`."""

    quick: bool = option(False, "Few steps on short rows (about two minutes on 2 CPU cores).")
    model: str = option("smollm2-135m", "Base: embedded alias or local HF folder.")
    shape: str | None = option(None, "A randomly initialised Llama of this shape instead of --model "
                           "(llama-8b, llama-3b, llama-1b, smollm2-135m, tiny); rows are stitched to --seq-len tokens.")
    quant: str | None = option(None, "Kit's base weights (default: the recipe's).", choices=("nf4", "none"))
    recipe: str | None = option(None, "Recipe for the kit arms (default: the CPU recipe on CPU, a GPU recipe on GPU).")
    persona: str = option("sharp-candid", "Persona whose rows are trained on.")
    out: str | None = option(None, "Output folder (default runs/bench-<time>/).")
    threads: int = option(0, "torch threads in every arm (0: torch's default, all cores).")
    areas: tuple = option((), "Comma-separated areas to run: sft,dpo,gen,main (default: all in a full run; "
                          "sft,dpo,gen with --quick; main is the main job, `stylealign quickstart --no-arena`, "
                          "timed per phase).", flag="--only", parse=_areas)
    profile: bool = option(True, "Run one extra profiled step of each kit arm (--no-profile: skip it).")
    reps: int = option(0, "Alternated kit/reference runs per area (0: quick 1, full 2).")
    steps: int = option(0, "Timed steps per training run, after the warm-up (0: quick 2, full 3 SFT / 2 DPO).")
    sft_batch: int = option(0, "SFT rows per step (0: quick 4, full the recipe's).")
    dpo_batch: int = option(0, "DPO pairs per step (0: quick 2, full the recipe's).")
    sft_steps: int = option(0, "Timed SFT steps (filled from --steps by for_mode).", cli=False)
    dpo_steps: int = option(0, "Timed DPO steps (filled from --steps by for_mode).", cli=False)
    warmup: int = option(1, "Untimed steps at the start of each training run.")
    max_tokens: int = option(0, "Longest row used, in tokens (0: quick 160, full the recipe's max_length).")
    seq_len: int = option(0, "Stitch rows to about this many tokens (0: natural rows; with --shape 2048).")
    gen_pairs: int = option(0, "Prompts answered by baseline and adapter in the generation arm (0: 8, one "
                            "evaluation batch of 16 answers, quick and full).")
    gen_batch: int = option(16, "Rows per generation batch (the evaluation's default).")
    gen_quant: str | None = option(None, "Base weights for generation (default: as `stylealign eval`: unquantized on a "
                               "CPU, the recipe's on a GPU).", choices=("nf4", "none"))
    max_new_tokens: int = option(0, "Generation length cap (0: quick 16, full 48).")
    kit_set: dict = option({}, "Recipe override for the kit arms only (repeatable), e.g. sft.gradient_checkpointing=true.",
                       flag="--kit-set", action="append", metavar="KEY=VALUE", parse=_kit_set)
    ref: str = option("trl", "Reference arms: plain TRL / model.generate, or for training the kit as shipped "
                  "(to A/B --kit-set).", choices=("trl", "kit"))
    omp_policy: str = option("inherit", "OMP_WAIT_POLICY for every arm (inherit: what the `stylealign` CLI chose "
                         "from the machine's load at start, stylealign.omp: spin when idle, PASSIVE when busy).",
                         choices=("passive", "active", "inherit"))

    def __post_init__(self):
        self.areas, self.kit_set = _areas(self.areas), _kit_set(self.kit_set)
        unknown = set(self.areas) - set(AREAS)
        if unknown:
            raise ConfigError(f"unknown area(s) {sorted(unknown)}; choose from {', '.join(AREAS)}")
        if min(self.threads, self.reps, self.steps, self.warmup, self.seq_len, self.max_new_tokens, self.gen_pairs) < 0:
            raise ConfigError("threads, reps, steps, warmup, seq_len, max_new_tokens and gen_pairs cannot be negative")

    def for_mode(self, recipe) -> Settings:
        """Fill every 0 / None with the quick or full default; return self."""
        def pick(given, quick, full):
            return given or (quick if self.quick else full)

        self.areas = self.areas or DEFAULT_AREAS["quick" if self.quick else "full"]
        self.reps = pick(self.reps, 1, 2)
        self.sft_batch = pick(self.sft_batch, 4, recipe.sft.batch_size)
        self.dpo_batch = pick(self.dpo_batch, 2, recipe.dpo.batch_size)
        self.sft_steps, self.dpo_steps = pick(self.steps, 2, 3), pick(self.steps, 2, 2)
        self.max_tokens = pick(self.max_tokens, 160, recipe.max_length)
        self.seq_len = self.seq_len or (2048 if self.shape else 0)
        self.max_new_tokens = pick(self.max_new_tokens, 16, 48)
        self.gen_pairs = self.gen_pairs or 8
        return self


# ---------------------------------------------------------------- machine


def machine() -> dict:
    """Return CPU model, cores, memory, torch version and GPU (when one is visible)."""
    from importlib.metadata import PackageNotFoundError, version

    cpu, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu in ("", platform.machine(), platform.processor()):
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    names = set(flags.split(":", 1)[-1].split())
    out = {"cpu": cpu, "cores": os.cpu_count(), "memory_gb": mem_gb, "python": platform.python_version(),
           "bf16_matmul": bool(names & {"avx512_bf16", "amx_bf16"}),
           "matrix_extensions": [label for flag, label in MATRIX_FLAGS if flag in names],
           "torch_cpu_capability": _torch_capability(), "gpu": None}
    for name in ("torch", "transformers", "trl", "peft", "bitsandbytes"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    try:
        got = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
        if got.returncode == 0 and got.stdout.strip():
            out["gpu"] = got.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError):
        pass
    return out


MATRIX_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "AVX-512 VNNI"),
                ("avx512_bf16", "AVX-512 BF16"), ("amx_tile", "AMX"), ("amx_bf16", "AMX BF16"), ("amx_int8", "AMX INT8"))


def _torch_capability() -> str | None:
    """Return the CPU kernel level torch dispatches to here (e.g. AVX512, AVX2), if it says."""
    try:
        import torch

        return torch.backends.cpu.get_cpu_capability()
    except (ImportError, AttributeError, RuntimeError):
        return None


def cpu_line(m: dict) -> str:
    """Return 'CPU model (extensions; torch kernels X)' for a report header."""
    ext = ", ".join(m.get("matrix_extensions") or []) or "no AVX-512/AMX"
    amx = "AMX" if any(e.startswith("AMX") for e in m.get("matrix_extensions") or []) else "no AMX"
    bf16 = "AVX-512 BF16" if "AVX-512 BF16" in (m.get("matrix_extensions") or []) else "no AVX-512 BF16"
    cap = f"; torch CPU kernels {m['torch_cpu_capability']}" if m.get("torch_cpu_capability") else ""
    return f"{m['cpu']} ({bf16}, {amx}; flags: {ext}{cap})"


def load() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


# ---------------------------------------------------------------- the model


def shape_model(shape: str, root: Path | None = None) -> Path:
    """Return a local HF folder with a randomly initialised Llama of `shape` and the embedded tokenizer
    (built once under the cache). For memory and speed only: its answers are noise."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from stylealign.models import home, resolve_base

    if shape not in arith.SHAPES:
        raise ConfigError(f"unknown shape {shape!r}; known: {sorted(arith.SHAPES)}")
    folder = (root or home() / "bench-shapes") / shape
    if (folder / "config.json").exists():
        return folder
    tok = AutoTokenizer.from_pretrained(resolve_base("smollm2-135m").path)
    config = LlamaConfig(**arith.SHAPES[shape], max_position_embeddings=8192, bos_token_id=tok.bos_token_id,
                         eos_token_id=tok.eos_token_id, pad_token_id=None)
    dtype = torch.bfloat16 if shape != "tiny" else torch.float32
    device = "cuda" if torch.cuda.is_available() else "cpu"
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(previous)
    tmp = folder.with_name(folder.name + f".tmp-{os.getpid()}")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    del model
    os.replace(tmp, folder)
    return folder


def on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


# ---------------------------------------------------------------- running arms


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
    from stylealign.commands.main import PHASES

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


def main_summary(results: list[dict]) -> dict | None:
    """Return the main job's totals and its top-level phases (nested ones kept for the table)."""
    results = _ok(results)
    if not results:
        return None
    res = results[0]
    return {"wall_s": res["wall_s"], "peak_rss_mb": res["peak_rss_mb"], "phases": res["phases"],
            "shipped_recipe": res.get("shipped_recipe"), "load_average_end": res.get("load_average_end"),
            "cpu_s": round(sum(p["cpu_s"] for p in res["phases"] if p["depth"] == 0), 1)}


def run_bench(settings: Settings, echo=print) -> dict:
    """Measure everything `settings` asks for; write report.json and report.md; return the report."""
    started = time.time()
    setup = prepare(settings)
    run = Runner(setup.out, settings, echo)
    echo(f"stylealign bench ({'quick' if settings.quick else 'full'}) on {setup.model_path} -> {setup.out}")
    report = new_report(settings, setup)
    report["peak"].append(run("peak-start", ArmSpec(area="peak", trials=3 if settings.quick else 5)))
    train_arms(settings, setup, run, report["arms"])
    if "gen" in settings.areas:
        report["arms"]["gen"] = [gen_arm(settings, setup, run)]
    if "main" in settings.areas:
        report["arms"]["main"] = [main_arm(settings, setup, echo)]
    if not settings.quick:  # a second measurement brackets the arms; quick mode saves the seconds
        report["peak"].append(run("peak-end", ArmSpec(area="peak")))
    report["load_after"] = load()
    report["wall_seconds"] = round(time.time() - started, 1)
    summarise(report, setup.dims, setup.recipe.lora.r, on_gpu())
    write_report(report, setup.out)
    return report


# ---------------------------------------------------------------- summary


def _ok(results: list[dict]) -> list[dict]:
    return [r for r in results or [] if "error" not in r]


def train_summary(results: list[dict], dims: arith.Dims, r: int, mode: str, gpu: bool) -> dict | None:
    """Pool the timed steps of every rep of one arm into medians."""
    results = _ok(results)
    steps = [s for res in results for s in res["steps"]]
    if not steps:
        return None
    secs = [s["seconds"] for s in steps]
    lengths = [n for res in results for n in res["lengths"]]
    context = arith.mean_context(lengths)
    fpt = arith.flops_per_token(dims, mode, r, context)
    mem_key = "cuda_peak_mb" if gpu else "peak_rss_mb"
    out = {
        "tokens_per_s": arith.rate([s["tokens"] for s in steps], secs),
        "pairs_per_s": arith.rate([s["sequences"] / 2 for s in steps], secs) if mode == "dpo" else None,
        "step_seconds": arith.median(secs),
        "tokens_per_step": arith.median([s["tokens"] for s in steps]),
        "padding_share": 1 - sum(s["tokens"] for s in steps) / max(1, sum(s["slots"] for s in steps)),
        "timed_steps": len(steps),
        "peak_memory_mb": max(res["memory"].get(mem_key) or 0 for res in results),
        "train_window_peak_rss_mb": max(res["memory"].get("window_peak_rss_mb") or 0 for res in results),
        "memory_kind": "cuda max allocated" if gpu else "process peak RSS",
        "model_copies": results[-1].get("model_copies"),
        "setup": results[-1].get("setup"),
        "threads": results[-1].get("threads"),
        "mean_context": round(context, 1),
        "flops_per_token": fpt,
        "profile": next((res.get("profile") for res in results if res.get("profile")), None),
        "profile_top": next((res.get("profile_top") for res in results if res.get("profile_top")), None),
    }
    out["gflops_per_s"] = out["tokens_per_s"] * fpt / 1e9 if out["tokens_per_s"] else None
    return out


def gen_summary(results: list[dict], dims: arith.Dims) -> dict | None:
    results = _ok(results)
    if not results:
        return None
    res = results[0]
    per = lambda runs, key: arith.median([x[key] / x["seconds"] for x in runs])  # noqa: E731
    pane = lambda runs: {  # noqa: E731
        "ttft_s": arith.median([x["ttft"] for x in runs]),
        "seconds": arith.median([x["seconds"] for x in runs]),
        "steps": arith.median([x["steps"] for x in runs]),
        "seconds_per_step": arith.median([x["seconds"] / max(1, x["steps"]) for x in runs]),
        "tokens_per_s_per_pane": arith.median([sum(x["tokens"]) / len(x["tokens"]) / x["seconds"] for x in runs
                                               if x["tokens"]]),
    }
    prompt = arith.median(res["prompt_lengths"]) or 0
    fpt = arith.flops_per_token(dims, "forward", 16, prompt + res["max_new_tokens"] / 2)
    out = {"batched": {"answers_per_s": per(res["batched"], "answers"), "tokens_per_s": per(res["batched"], "tokens")},
           "one_by_one": {"answers_per_s": per(res["one_by_one"], "answers"),
                          "tokens_per_s": per(res["one_by_one"], "tokens")},
           "pane1": pane(res["pane1"]), "pane2": pane(res["pane2"]),
           "answers": res["batched"][0]["answers"], "max_new_tokens": res["max_new_tokens"],
           "batch_size": res["batch_size"], "quant": res["quant"], "dtype": res["dtype"], "threads": res["threads"],
           "flops_per_token": fpt, "profile": res.get("profile"), "profile_top": res.get("profile_top"),
           "tokens_generated": {"batched": [x["tokens"] for x in res["batched"]],
                                "one_by_one": [x["tokens"] for x in res["one_by_one"]]}}
    p1, p2 = out["pane1"], out["pane2"]
    # Per decode step, so a pane that stopped early does not flatter either side; equal to the plain
    # time ratio when both ran the same number of steps (the bench's zero-init adapter ensures that).
    out["two_pane_time_ratio"] = arith.ratio(p2["seconds_per_step"], p1["seconds_per_step"])
    out["two_pane_wall_ratio"] = arith.ratio(p2["seconds"], p1["seconds"])
    return out


def peak_summary(peaks: list[dict]) -> dict:
    trials: dict[str, list[float]] = {}
    for p in _ok(peaks):
        for k, vals in p["gflops"].items():
            trials.setdefault(k, []).extend(vals)
    return {k: {"median_gflops": arith.median(v), "max_gflops": max(v), "trials": len(v)} for k, v in trials.items()}


def summarise(report: dict, dims: arith.Dims, r: int, gpu: bool) -> None:
    arms = report["arms"]
    report["peak_summary"] = peak = peak_summary(report["peak"])
    bf16 = (peak.get("bf16") or {}).get("median_gflops")
    fp32 = (peak.get("fp32") or {}).get("median_gflops")
    s: dict = {}
    for area, mode in (("sft", "train"), ("dpo", "dpo")):
        kit = train_summary(arms.get(f"{area}-kit"), dims, r, mode, gpu)
        ref = train_summary(arms.get(f"{area}-ref"), dims, REF_LORA_R, mode, gpu)
        for part in (kit, ref):
            if part:
                part["util_bf16"] = arith.utilisation(part["tokens_per_s"], part["flops_per_token"], bf16 and bf16 * 1e9)
                part["util_fp32"] = arith.utilisation(part["tokens_per_s"], part["flops_per_token"], fp32 and fp32 * 1e9)
        s[area] = {"kit": kit, "ref": ref,
                   "speed_ratio": arith.ratio(kit and kit["tokens_per_s"], ref and ref["tokens_per_s"]),
                   "memory_ratio": arith.ratio(kit and kit["peak_memory_mb"], ref and ref["peak_memory_mb"])}
        if area == "dpo":
            s[area]["pairs_ratio"] = arith.ratio(kit and kit["pairs_per_s"], ref and ref["pairs_per_s"])
    gen = gen_summary(arms.get("gen"), dims)
    if gen:
        gen["speed_ratio"] = arith.ratio(gen["batched"]["answers_per_s"], gen["one_by_one"]["answers_per_s"])
        gen["util_bf16"] = arith.utilisation(gen["batched"]["tokens_per_s"], gen["flops_per_token"], bf16 and bf16 * 1e9)
    s["gen"] = gen
    s["main"] = main_summary(arms.get("main"))
    report["summary"] = s
    values = {
        "sft_speed": s["sft"]["speed_ratio"], "sft_memory": s["sft"]["memory_ratio"],
        "dpo_speed": s["dpo"]["speed_ratio"],
        "dpo_copies": (s["dpo"]["kit"] or {}).get("model_copies"),
        "eval_speed": gen and gen["speed_ratio"], "arena_two_panes": gen and gen["two_pane_time_ratio"],
        "utilisation": (s["sft"]["kit"] or {}).get("util_bf16"),
    }
    if s["main"] and s["main"]["shipped_recipe"]:  # the job's targets hold for the real job only
        values.update(main_wall=s["main"]["wall_s"], main_memory=s["main"]["peak_rss_mb"])
    if report["settings"].get("ref") == "kit":  # an A/B of --kit-set: the targets compare against plain TRL
        values = {}
    report["targets"] = arith.evaluate_targets(values)
    profiles = {"sft_speed": "sft", "sft_memory": "sft", "dpo_speed": "dpo", "eval_speed": "gen",
                "arena_two_panes": "gen"}
    for t in report["targets"]:
        area = profiles.get(t["key"])
        if t["pass"] is False and area:
            part = s[area] if area == "gen" else s[area]["kit"]
            t["profile"] = part and part.get("profile")


# ---------------------------------------------------------------- report


def _n(x, digits=1, suffix="") -> str:
    if x is None:
        return "—"
    if isinstance(x, float) and abs(x) >= 100:
        return f"{x:,.0f}{suffix}"
    return f"{x:.{digits}f}{suffix}"


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def _verdict(t: dict | None) -> str:
    if not t or t["pass"] is None:
        return "reported" if t and t["op"] == "report" else "—"
    return "PASS" if t["pass"] else "FAIL"


HEAD = ["area", "metric", "kit", "reference", "kit / ref", "target", "result"]


def markdown(report: dict) -> str:
    """Return the report as Markdown: header (date, machine), one table, targets and setups."""
    s = report["summary"]
    targets = {t["key"]: t for t in report["targets"]}
    rows = [row for area in ("sft", "dpo") for row in _train_rows(area, s[area], targets)]
    rows += _gen_rows(s["gen"], targets) if s["gen"] else []
    lines = _header(report) + ["", table(HEAD, rows), ""]
    if s.get("main"):
        lines += _main_lines(s["main"], targets) + [""]
    lines.append("Targets: " + "; ".join(f"{t['label']}: {_verdict(t)}" + (f" (profile: {t['profile']})" if t.get("profile") else "")
                                         for t in report["targets"]) + ".")
    if report.get("mode") == "quick":
        lines.append("Quick mode: short rows, small batches and few steps, where per-step overhead weighs more than "
                     "at the recipe's sizes; judge the targets on a full run.")
    lines.append("Setups: " + "; ".join(_setups(s)) + ".")
    return "\n".join(lines) + "\n"


def _header(report: dict) -> list[str]:
    """Return the lines above the table: date, machine, model, reference, matmul peak."""
    m, s, model, peak = report["machine"], report["summary"], report["model"], report["peak_summary"]
    threads = next((x.get("threads") for x in (s["sft"]["kit"], s["dpo"]["kit"], s["gen"]) if x), None)
    kit_set = report["settings"].get("kit_set") or {}
    reference = ("Reference: the kit as shipped (training A/B of --kit-set "
                 + ", ".join(f"{k}={v}" for k, v in kit_set.items()) + "; targets not evaluated)."
                 if report["settings"].get("ref") == "kit" else
                 "Reference: plain TRL (fp32 from_pretrained, SFTConfig/DPOConfig defaults, LoRA r16 all-linear, DPO "
                 "with a separate reference copy) and one-by-one `model.generate`.")
    return [
        f"### stylealign bench ({report['mode']}) — {report['date']}",
        "",
        f"Machine: {cpu_line(m)}, {m['cores']} cores, {m['memory_gb']} GiB"
        + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
        + f"; torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}, peft {m['peft']}; "
        f"torch threads {threads}" + "".join(f", {k}={v}" for k, v in (report.get("env") or {}).items())
        + f"; load average {report['load_before']} → {report['load_after']}.",
        f"Model: {model['name']} ({model['dims']['layers']} layers, hidden {model['dims']['hidden']}, "
        f"{model['linear_params'] / 1e6:.1f}M linear weights); recipe `{report['recipe']}`; "
        f"bench wall time {report['wall_seconds']:.0f} s.",
        reference,
        f"Matmul peak now (median of {(peak.get('bf16') or {}).get('trials', 0)} trials): "
        f"fp32 {_n((peak.get('fp32') or {}).get('median_gflops'))} GFLOP/s, "
        f"bf16 {_n((peak.get('bf16') or {}).get('median_gflops'))} GFLOP/s.",
    ]


def _train_rows(area: str, part: dict, targets: dict) -> list[list]:
    """Return the table rows of one training area: speed, (DPO) pairs and copies, memory, step time, FLOP/s."""
    if not part["kit"] and not part["ref"]:
        return []
    kit, ref, label = part["kit"] or {}, part["ref"] or {}, area.upper()
    speed, mem_t = targets[f"{area}_speed"], targets.get("sft_memory") if area == "sft" else None
    rows = [[label, "non-padding tokens/s", _n(kit.get("tokens_per_s")), _n(ref.get("tokens_per_s")),
             _n(part["speed_ratio"], 2, "×"), f"≥ {speed['threshold']}×", _verdict(speed)]]
    if area == "dpo":
        rows.append([label, "pairs/s", _n(kit.get("pairs_per_s"), 3), _n(ref.get("pairs_per_s"), 3),
                     _n(part.get("pairs_ratio"), 2, "×"), "", ""])
        rows.append([label, "model copies in memory", kit.get("model_copies", "—"), ref.get("model_copies", "—"),
                     "", "= 1", _verdict(targets["dpo_copies"])])
    rows.append([label, f"peak memory, MiB ({kit.get('memory_kind') or ref.get('memory_kind')})",
                 _n(kit.get("peak_memory_mb")), _n(ref.get("peak_memory_mb")), _n(part["memory_ratio"], 2, "×"),
                 "≤ 0.8×" if mem_t else "", _verdict(mem_t) if mem_t else ""])
    rows.append([label, "step time, s (tokens/step)", f"{_n(kit.get('step_seconds'), 2)} ({_n(kit.get('tokens_per_step'), 0)})",
                 f"{_n(ref.get('step_seconds'), 2)} ({_n(ref.get('tokens_per_step'), 0)})", "", "", ""])
    rows.append([label, "model GFLOP/s (of fp32 / bf16 peak)",
                 f"{_n(kit.get('gflops_per_s'))} ({_pct(kit.get('util_fp32'))} / {_pct(kit.get('util_bf16'))})",
                 f"{_n(ref.get('gflops_per_s'))} ({_pct(ref.get('util_fp32'))} / {_pct(ref.get('util_bf16'))})",
                 "", "reported" if area == "sft" else "", ""])
    return rows


def _gen_rows(g: dict, targets: dict) -> list[list]:
    """Return the table rows of the generation arm: evaluation throughput and the arena's two panes."""
    p1, p2 = g["pane1"], g["pane2"]
    return [
        ["Evaluation", f"answers/s ({g['answers']} answers, ≤ {g['max_new_tokens']} new tokens)",
         _n(g["batched"]["answers_per_s"], 3), _n(g["one_by_one"]["answers_per_s"], 3), _n(g["speed_ratio"], 2, "×"),
         "≥ 4×", _verdict(targets["eval_speed"])],
        ["Evaluation", "generated tokens/s", _n(g["batched"]["tokens_per_s"]), _n(g["one_by_one"]["tokens_per_s"]),
         "", "", ""],
        ["Arena", "time to first token, s (2 panes vs 1)", _n(p2["ttft_s"], 3), _n(p1["ttft_s"], 3),
         _n(arith.ratio(p2["ttft_s"], p1["ttft_s"]), 2, "×"), "", ""],
        ["Arena", "tokens/s per pane (2 panes vs 1)", _n(p2["tokens_per_s_per_pane"]), _n(p1["tokens_per_s_per_pane"]),
         "", "", ""],
        ["Arena", "time per decode step, s (2 panes vs 1)", _n(p2["seconds_per_step"], 3), _n(p1["seconds_per_step"], 3),
         _n(g["two_pane_time_ratio"], 2, "×"), "≤ 1.6×", _verdict(targets["arena_two_panes"])],
    ]


def _main_lines(m: dict, targets: dict) -> list[str]:
    """Return the main job's per-phase table and its two targets."""
    rows = [["  " * p["depth"] + p["name"], _n(p["wall_s"]), _n(p["cpu_s"]), _n(p["peak_rss_mb"], 0),
             _n(p["rss_end_mb"], 0)] for p in m["phases"]]
    rows.append(["**main job**", _n(m["wall_s"]), _n(m["cpu_s"]), _n(m["peak_rss_mb"], 0), ""])
    what = ("the shipped recipe" if m["shipped_recipe"] else
            "a cut-down recipe (quick mode or another model): not the real job, targets not evaluated")
    verdict = lambda key: _verdict(targets.get(key))  # noqa: E731
    return [f"Main job (`stylealign quickstart --no-arena`, trained from scratch, {what}; load average at its end "
            f"{m.get('load_average_end')}):", "",
            table(["phase", "wall s", "CPU s (all threads)", "peak RSS, MiB", "RSS at end, MiB"], rows), "",
            f"Main job targets: wall ≤ 600 s: {verdict('main_wall')} ({m['wall_s']:.0f} s); peak RSS ≤ 3,072 MiB: "
            f"{verdict('main_memory')} ({m['peak_rss_mb']:,.0f} MiB)."]


def _setups(s: dict) -> list[str]:
    """Return one phrase per arm: its weights, dtype and the fast paths it ran with."""
    setups = []
    for area in ("sft", "dpo"):
        for arm in ("kit", "ref"):
            st = (s[area][arm] or {}).get("setup")
            if st:
                setups.append(f"{area} {arm}: {st.get('quant')}/{st.get('dtype')}"
                              + (", bf16 autocast" if st.get("autocast_bf16") else "")
                              + (", padding-free" if st.get("padding_free") else "")
                              + (", gradient checkpointing" if st.get("gradient_checkpointing") else "")
                              + "".join(f", {v}" for v in st.get("fast_paths") or []))
    if s["gen"]:
        setups.append(f"generation: {s['gen']['quant']}/{s['gen']['dtype']}, batch {s['gen']['batch_size']}")
    return setups


def write_report(report: dict, out: Path) -> None:
    write_json(out / "report.json", report)
    write_atomic(out / "report.md", markdown(report))
