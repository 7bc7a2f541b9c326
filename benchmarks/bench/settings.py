"""What one bench invocation measures: `Settings` (its fields are the `stylealign bench` flags, through
stylealign.config.add_config_arguments), the recipes the kit arms run, and the quick / full defaults.

Kept apart from the orchestration so the CLI can build its flags without the harness's running parts.
"""

from __future__ import annotations

from dataclasses import dataclass

from stylealign.errors import ConfigError
from stylealign.evaluate.config import EvalConfig
from stylealign.options import option

from .arith import SHAPES

CPU_RECIPE = "smollm2-135m_qlora_cpu"
GPU_RECIPE_SMALL = "smollm2-135m_lora_gpu"
GPU_RECIPE_LARGE = "qwen2.5-7b_qlora_gpu"
AREAS = ("sft", "dpo", "gen", "main", "scale")
# The main job takes ~10 minutes: full runs only. The scale area (three sizes up to 1B) takes ~15 more: opt-in.
DEFAULT_AREAS = {"quick": ("sft", "dpo", "gen"), "full": ("sft", "dpo", "gen", "main")}
SCALE = {"quick": (("tiny", "tiny-2x"), (128, 256)),  # (shapes, smallest first; seq lens) of the scale area
         "full": (("smollm2-135m", "smollm2-360m", "smol-1b"), (256, 1024))}


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


def _ints(text) -> tuple:
    return tuple(int(n) for n in _areas(text))


@dataclass
class Settings:
    """What one bench invocation measures; 0 / None means the mode's default, filled by `for_mode`."""

    quick: bool = option(False, "Few steps on short rows (about two minutes on 2 CPU cores).")
    model: str = option("smollm2-135m", "Base: embedded alias or local HF folder.")
    shape: str | None = option(None, "A randomly initialised Llama of this shape instead of --model "
                           f"({', '.join(SHAPES)}); rows are stitched to --seq-len tokens.")
    quant: str | None = option(None, "Kit's base weights (default: the recipe's).", choices=("nf4", "none"))
    recipe: str | None = option(None, "Recipe for the kit arms (default: the CPU recipe on CPU, a GPU recipe on GPU).")
    persona: str = option("sharp-candid", "Persona whose rows are trained on.")
    out: str | None = option(None, "Output folder (default runs/bench-<time>/).")
    threads: int = option(0, "torch threads in every arm (0: torch's default, all cores).")
    areas: tuple = option((), "Comma-separated areas to run: sft,dpo,gen,main,scale (default: sft,dpo,gen,main in a "
                          "full run, sft,dpo,gen with --quick; main is the main job, `stylealign quickstart "
                          "--no-arena`, timed per phase; scale is SFT kit vs plain TRL on random Llamas of "
                          "135M, 360M and 1B parameters at 256 and 1024 tokens, ~15 min on 2 cores, opt-in; "
                          "with --quick on tiny shapes).", flag="--only", parse=_areas)
    profile: bool = option(True, "Run one extra profiled step of each kit arm (--no-profile: skip it).")
    reps: int = option(0, "Alternated kit/reference runs per area (0: quick 1, full 2).")
    steps: int = option(0, "Timed steps per training run, after the warm-up (0: quick 2, full 3 SFT / 2 DPO).")
    sft_batch: int = option(0, "SFT rows per step (0: quick 4, full the recipe's).")
    dpo_batch: int = option(0, "DPO pairs per step (0: quick 2, full the recipe's).")
    sft_steps: int = option(0, "Timed SFT steps (filled from --steps by for_mode).", cli=False)
    dpo_steps: int = option(0, "Timed DPO steps (filled from --steps by for_mode).", cli=False)
    warmup: int = option(1, "Untimed steps at the start of each training run.")
    scale_shapes: tuple = option((), "Shapes of the scale area, run smallest first (default: quick tiny,tiny-2x; full "
                                 "smollm2-135m,smollm2-360m,smol-1b).", parse=_areas)
    scale_seq_lens: tuple = option((), "Row lengths of the scale area, in tokens (default: quick 128,256; full "
                                   "256,1024).", parse=_ints)
    scale_batch: int = option(1, "Rows per step in the scale area.")
    scale_steps: int = option(0, "Timed steps of the scale area (filled from --steps, default 2).", cli=False)
    max_tokens: int = option(0, "Longest row used, in tokens (0: quick 160, full the recipe's max_length).")
    seq_len: int = option(0, "Stitch rows to about this many tokens (0: natural rows; with --shape 2048).")
    gen_pairs: int = option(0, "Prompts answered by baseline and adapter in the generation arm (0: quick 8, full "
                            "48: one evaluation batch of 96 answers).")
    gen_batch: int = option(0, "Rows per generation batch (0: the evaluation's default).")
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
        self.scale_shapes, self.scale_seq_lens = _areas(self.scale_shapes), _ints(self.scale_seq_lens)
        unknown = set(self.areas) - set(AREAS)
        if unknown:
            raise ConfigError(f"unknown area(s) {sorted(unknown)}; choose from {', '.join(AREAS)}")
        if set(self.scale_shapes) - set(SHAPES):
            raise ConfigError(f"unknown shape(s) {sorted(set(self.scale_shapes) - set(SHAPES))}; "
                              f"choose from {', '.join(SHAPES)}")
        if min(self.scale_seq_lens, default=128) < 128 or self.scale_batch < 1:
            raise ConfigError("scale seq lens must be at least 128 tokens and the scale batch at least 1")
        if min(self.threads, self.reps, self.steps, self.warmup, self.seq_len, self.max_new_tokens, self.gen_pairs,
               self.gen_batch) < 0:
            raise ConfigError("threads, reps, steps, warmup, seq_len, max_new_tokens, gen_pairs and gen_batch cannot be negative")

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
        self.gen_pairs = pick(self.gen_pairs, 8, 48)
        self.gen_batch = self.gen_batch or EvalConfig.__dataclass_fields__["batch_size"].default
        shapes, seq_lens = SCALE["quick" if self.quick else "full"]
        self.scale_shapes, self.scale_seq_lens = self.scale_shapes or shapes, self.scale_seq_lens or seq_lens
        self.scale_steps = self.steps or 2
        return self
