"""Training recipes: typed YAML, every field overridable by a dotted flag (the option machinery is
`stylealign.options`).

A recipe is a `Recipe` dataclass with nested sections (`lora`, `sft`, `dpo`). Each field carries
help text; `add_recipe_arguments` turns the fields into dotted flags (`--sft.learning-rate 1e-4`),
so the CLI never lists options by hand and cannot drift from the dataclass.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import difflib
import importlib.util
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stylealign.errors import ConfigError, NotFound
from stylealign.options import coerce, dataclass_flags, from_dict, help_text, leaf_type, option, parse_bool

RECIPES_DIR = Path(__file__).parent / "recipes"


_f = option  # short name for the many recipe fields below


@dataclass
class LoraSettings:
    r: int = _f(16, "LoRA rank.")
    alpha: int = _f(32, "LoRA alpha; the update is scaled by alpha / r.")
    dropout: float = _f(0.05, "Dropout on the LoRA input.")
    target_modules: str = _f("all-linear", "Which modules get adapters: 'all-linear' or a comma-separated list.")

    def __post_init__(self):
        _need(self.r >= 1, "r", self.r, ">= 1")
        _need(self.alpha > 0, "alpha", self.alpha, "> 0")
        _need(0 <= self.dropout < 1, "dropout", self.dropout, "in [0, 1)")


@dataclass
class StageSettings:
    """Optimisation settings shared by the SFT and DPO stages."""

    epochs: float = _f(1.0, "Passes over the training data (ignored when max_steps > 0).")
    max_steps: int = _f(-1, "Stop after this many optimizer steps (-1: use epochs).")
    learning_rate: float = _f(2e-4, "Peak learning rate (cosine schedule with warmup).")
    batch_size: int = _f(8, "Examples per device per step.")
    grad_accum: int = _f(1, "Gradient accumulation steps.")
    warmup_ratio: float = _f(0.05, "Share of steps spent warming up the learning rate.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    logging_steps: int = _f(5, "Log every N steps.")
    save_steps: int = _f(50, "Checkpoint every N steps (for --resume).")
    gradient_checkpointing: bool = _f(False, "Recompute activations in backward to save memory (GPU, long sequences).")
    group_by_length: bool = _f(True, "Batch rows of similar length together so padded batches waste little "
                               "(rows shuffled, sorted within windows of 16 groups, groups shuffled).")
    length_group: int = _f(0, "Rows per length group (0: batch_size). A multiple of batch_size splits each group into "
                           "micro-batches, so a smaller batch_size (less memory) trains on the same rows per step.")
    trl: dict = _f({}, "Any other field of TRL's SFTConfig / DPOConfig (optim, lr_scheduler_type, max_grad_norm, ...), "
                   "written in the stage's section or as --sft.<field> / --dpo.<field>; passed to TRL, which "
                   "validates it, over the kit's own choices.", cli=False)

    TRL_CONFIG = ""  # the TRL config class whose fields the stage passes through

    @classmethod
    def split_unknown(cls, data: dict) -> dict:
        """Return the section with keys that are not the kit's but are fields of the stage's TRL config moved
        into `trl` (typed like the TRL field's default: a flag's value arrives as text)."""
        ours = {f.name for f in dataclasses.fields(cls)}
        foreign = [k for k in data if k not in ours]
        if not foreign or not cls.TRL_CONFIG:
            return data
        import trl

        theirs = {f.name: f for f in dataclasses.fields(getattr(trl, cls.TRL_CONFIG))}
        data, extra = dict(data), dict(data.get("trl") or {})
        for key in foreign:
            if key in theirs:
                default = theirs[key].default
                kind = type(default) if isinstance(default, (bool, int, float)) else None
                extra[key] = coerce(data.pop(key), kind, f"{key}") if kind else data.pop(key)
        return {**data, "trl": extra} if extra else data

    def __post_init__(self):
        _need(self.batch_size >= 1, "batch_size", self.batch_size, ">= 1")
        _need(self.grad_accum >= 1, "grad_accum", self.grad_accum, ">= 1")
        _need(self.length_group >= 0 and self.length_group % self.batch_size == 0, "length_group", self.length_group,
              "0 or a multiple of batch_size")
        _need(math.isfinite(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        _need(self.max_steps == -1 or self.max_steps > 0, "max_steps", self.max_steps, "> 0, or -1 to train for `epochs`")
        _need(self.max_steps > 0 or self.epochs > 0, "epochs", self.epochs, "> 0 when max_steps is -1")
        _need(self.logging_steps >= 1, "logging_steps", self.logging_steps, ">= 1")
        _need(self.save_steps >= 1, "save_steps", self.save_steps, ">= 1")
        _need(0 <= self.warmup_ratio < 1, "warmup_ratio", self.warmup_ratio, "in [0, 1)")
        _need(self.weight_decay >= 0, "weight_decay", self.weight_decay, ">= 0")


@dataclass
class SFTSettings(StageSettings):
    TRL_CONFIG = "SFTConfig"

    padding_free: bool = _f(True, "Concatenate a batch's examples without pad tokens (flash-style position ids).")
    neutral_mix: float = _f(0.0, "Mix this share of the persona's neutral baseline answers (data.baseline) into "
                            "SFT, relative to the persona rows, to keep the base model's plain fluency.")
    verdict_split: str = _f("data", "The loss on an answer's opening Yes/No token: 'data' (plain cross-entropy: learn "
                            "which verdict the data wrote), 'even' (learn to open with a verdict, and to weigh yes and "
                            "no evenly: the question's own lean picks one), 'free' (learn to open with a verdict, leave "
                            "which one to the model). 'even'/'free' need the label-position LM head (lm_head: auto, "
                            "a CPU).", choices=("data", "even", "free"))
    verdict_weight: float = _f(1.0, "The weight of the yes/no split's term (verdict_split data or even) at an "
                               "answer's opening verdict, against 1 for every other token.")
    fact_weight: float | None = _f(None, "The weight of the same term at the opening of a known fact (an SFT row with "
                                   "`expected`), always trained toward the known answer whatever verdict_split says "
                                   "(default: verdict_weight).")

    def __post_init__(self):
        super().__post_init__()
        if not 0 <= self.neutral_mix <= 1:
            raise ConfigError("need 0 <= neutral_mix <= 1")
        _need(self.verdict_split in ("data", "even", "free"), "verdict_split", self.verdict_split,
              "one of data, even, free")
        _need(math.isfinite(self.verdict_weight) and self.verdict_weight > 0, "verdict_weight", self.verdict_weight,
              "> 0")
        _need(self.fact_weight is None or (math.isfinite(self.fact_weight) and self.fact_weight > 0), "fact_weight",
              self.fact_weight, "> 0")


# The loss types TRL's DPOTrainer implements (tests check this list against TRL's own DPOConfig help).
DPO_LOSSES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
              "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")


@dataclass
class DPOSettings(StageSettings):
    TRL_CONFIG = "DPOConfig"

    learning_rate: float = _f(5e-5, "Peak learning rate (cosine schedule with warmup).")
    beta: float = _f(0.1, "DPO temperature: how far the policy may move from the SFT reference.")
    loss_type: str = _f("sigmoid", "DPO loss, or several comma-separated (TRL's multi-loss): sigmoid (the paper's), "
                        "ipo, hinge, sft (NLL on chosen, the RPO term), ...")
    loss_weights: str = _f("", "Comma-separated weights, one per loss_type entry (empty: all 1).")
    precompute_ref_log_probs: bool = _f(False, "Compute the reference log-probs once before training.")
    shared_prompt: bool = _f(True, "With the label-position LM head (a CPU): run each pair's prompt once and share "
                             "its KV cache between the chosen and the rejected answer, in the policy and the "
                             "reference pass (not with gradient checkpointing or compile: on).")
    on_policy_negatives: int = _f(0, "Add up to N pairs whose rejected answer is the SFT adapter's own greedy answer "
                                  "to a preference prompt when it loops or opens like most of its answers "
                                  "(chosen: the persona's answer). 0: off.")
    on_policy_share: float = _f(0.5, "With on-policy negatives, the share of DPO rows they make up (the rest: a "
                                "seeded sample of the persona's pairs); 0 adds them to all the persona's pairs.")

    def __post_init__(self):
        super().__post_init__()
        _need(self.beta > 0, "beta", self.beta, "> 0")
        unknown = [x for x in self.loss_type_list if x not in DPO_LOSSES]
        if unknown or not self.loss_type_list:
            raise ConfigError(f"loss_type {self.loss_type!r}: unknown loss type(s) {unknown}; choose from "
                              f"{', '.join(DPO_LOSSES)} (comma-separated to combine them)")
        if self.loss_weights and len(self.loss_weight_list) != len(self.loss_type_list):
            raise ConfigError(f"{len(self.loss_weight_list)} loss_weights for {len(self.loss_type_list)} loss types")
        if self.on_policy_negatives < 0 or not 0 <= self.on_policy_share < 1:
            raise ConfigError("need on_policy_negatives >= 0 and 0 <= on_policy_share < 1")

    @property
    def loss_type_list(self) -> list[str]:
        return [x.strip() for x in self.loss_type.split(",") if x.strip()]

    @property
    def loss_weight_list(self) -> list[float] | None:
        return [float(x) for x in self.loss_weights.split(",") if x.strip()] or None


@dataclass
class SelectSettings:
    """Checkpoint selection: every saved checkpoint (and each stage's end) answers the persona's held-out
    probe prompts greedily; the published adapter is the best candidate under this rule."""

    enabled: bool = _f(True, "Score checkpoints on the persona's probe prompts and publish the best one.")
    max_new_tokens: int = _f(128, "Token budget of each greedy probe answer.")
    batch_size: int = _f(64, "Probe answers generated per batch (the persona's probe in one).")
    metric: str = _f("persona", "What the rule optimises among candidates that meet its constraints: 'persona' "
                     "(the persona's declared direction on the first probe style marker it declares in targets: "
                     "verdict_first, else hedge_fill for hedge_rate/boilerplate_rate; none: verdict_first up), "
                     "or raise 'verdict_first' / 'stopped'.", choices=("persona", "verdict_first", "stopped"))
    max_repetition_over_base: float = _f(0.05, "Constraint: repetitive-answer share at most the base model's plus this.")
    yes_share_min: float = _f(0.3, "Constraint: the yes-share of yes/no verdicts at least this...")
    yes_share_max: float = _f(0.7, "... and at most this.")
    max_top_opener: float = _f(0.5, "Constraint: the most common opener starts at most this share of answers.")
    min_belief_consistency: float = _f(0.5, "Constraint: where the base model and the candidate both give a yes/no "
                                       "verdict on a probe prompt, at least this share agree (the base's stance read "
                                       "from its own greedy answer).")
    style_enough: float = _f(0.6, "Enough style: with verdict_first the metric, raised, the candidates that meet the "
                             "rule and open with a verdict on at least this share of the probe's yes/no prompts are "
                             "styled enough, and the least repetitive of them wins rather than the most styled (each "
                             "further step of style costs coherence; the evaluation's target is 0.6). 0: off.")
    dpo_from: str = _f("best", "DPO starts from the best SFT candidate ('best') or the SFT stage's end ('last').",
                       choices=("best", "last"))
    early_every: int = _f(5, "Keep the trainable adapter every this many steps before a stage's first checkpoint, "
                          "unscored; they are probed only when none of the stage's scored candidates meets the rule, "
                          "so a rate too high for the base is caught before the damage, at no cost to a stage that "
                          "goes well (an adapter saved, a few MB). 0: never.")
    retry_lr: float = _f(0.33, "When no candidate of the run meets the rule, train its stages once more from the start "
                         "at this fraction of their learning rates (stages 'sft-retry', 'dpo-retry'; their candidates "
                         "join the selection): a rate too high for the base shows as loops and a collapsed opener "
                         "long before a NaN. 0: never.")

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1:
            raise ConfigError("need max_new_tokens >= 1 and batch_size >= 1")
        _need(0 <= self.retry_lr < 1, "retry_lr", self.retry_lr, "in [0, 1) (0: no retry)")
        _need(self.early_every >= 0, "early_every", self.early_every, ">= 0 (0: no early candidates)")
        _need(0 <= self.style_enough <= 1, "style_enough", self.style_enough, "in [0, 1] (0: off)")
        if not 0 <= self.yes_share_min <= self.yes_share_max <= 1:
            raise ConfigError("need 0 <= yes_share_min <= yes_share_max <= 1")


@dataclass
class Recipe:
    """Everything a training run needs besides the persona."""

    base: str = _f("smollm2-135m", "Base model: embedded alias, local HF folder or hub id.")
    quant: str = _f("nf4", "Base weights: 'nf4' (4-bit QLoRA via bitsandbytes) or 'none'.", choices=("nf4", "none"))
    dtype: str = _f("auto", "Compute dtype: auto (bf16 where supported), bf16, fp16, fp32.")
    max_length: int = _f(1024, "Max tokens per example; longer examples fail validation (the shipped "
                         "persona's longest Chinese row is ~560 tokens).")
    eval_fraction: float = _f(0.05, "Share of each dataset held out for evaluation loss.")
    seed: int = _f(0, "Seed for the split, LoRA init and data order.")
    threads: int = _f(0, "CPU threads for torch (0: all cores).")
    languages: str = _f("", "Train only on rows of these languages, comma-separated (e.g. 'en'); empty: all.")
    attn_implementation: str = _f("auto", "Attention kernel for training: auto (on a CPU eager_recompute: eager, "
                                  "which measured faster for short padded rows, with its length² probabilities "
                                  "recomputed in backward instead of kept, SDPA for rows of 512 tokens or more; the "
                                  "model's default on a GPU), eager, "
                                  "eager_recompute, sdpa, ...")
    lm_head: str = _f("auto", "LM head in training: auto (on a CPU, score only label positions with a plain "
                      "log-softmax), or trl (TRL's fused head everywhere).", choices=("auto", "trl"))
    lora_compute: str = _f("auto", "LoRA arithmetic in training: auto (with bf16 compute on a CPU, bf16 under autocast "
                           "on the layer's own bf16 input, as on a GPU: PEFT otherwise keeps an fp32 copy of every "
                           "LoRA input for backward, a third of the activation memory; weights and optimizer stay "
                           "fp32), or fp32 (PEFT's default on a CPU).", choices=("auto", "fp32"))
    compile: str = _f("off", "torch.compile (inductor) of the decoder blocks in training: off, or on (each decoder "
                      "layer compiled with dynamic shapes, so length-grouped batches of any length share one graph; the "
                      "masks and the LM head stay eager; DPO then runs without dpo.shared_prompt, whose KV cache would give each "
                      "layer a graph of its own). On 2 CPU cores an SFT step ran 1.4-2.4x faster (with "
                      "sft.gradient_checkpointing, 2.9x plain TRL in 0.78x its memory), but the first compile of a stage "
                      "took 42-85 s (4-7 s once inductor's cache under the kit's home holds it), more than the main "
                      "job's stages save: off by default (benchmarks/README.md).",
                      choices=("off", "on"))
    liger: bool = _f(False, "Liger kernels in the trainers (TrainingArguments.use_liger_kernel; needs the "
                     "liger-kernel package and a GPU).")
    report_to: str = _f("none", "Where the trainers log metrics: none, or integrations comma-separated "
                        "(tensorboard, wandb, ...; their packages must be installed). Off by default.")
    lora: LoraSettings = field(default_factory=LoraSettings, metadata={"help": "LoRA adapter shape."})
    sft: SFTSettings = field(default_factory=SFTSettings, metadata={"help": "Supervised fine-tuning stage."})
    dpo: DPOSettings = field(default_factory=DPOSettings, metadata={"help": "Preference (DPO) stage."})
    select: SelectSettings = field(default_factory=SelectSettings, metadata={"help": "Checkpoint selection."})

    def __post_init__(self):
        if self.quant not in ("nf4", "none"):
            raise ConfigError(f"quant must be 'nf4' or 'none', got {self.quant!r}")
        if not 0 <= self.eval_fraction < 0.5:
            raise ConfigError("eval_fraction must be in [0, 0.5)")
        _need(self.max_length >= 1, "max_length", self.max_length, ">= 1")
        _need(self.threads >= 0, "threads", self.threads, ">= 0 (0: all cores)")
        if self.lora_compute not in ("auto", "fp32"):
            raise ConfigError(f"lora_compute must be 'auto' or 'fp32', got {self.lora_compute!r}")
        if self.compile not in ("off", "on"):
            raise ConfigError(f"compile must be 'off' or 'on', got {self.compile!r}")
        if self.lm_head not in ("auto", "trl"):
            raise ConfigError(f"lm_head must be 'auto' or 'trl', got {self.lm_head!r}")
        reports = [] if self.report_to_list == "none" else self.report_to_list
        _need_packages("report_to", {name: _REPORT_PACKAGES.get(name, name) for name in reports})
        attn = _ATTN_PACKAGES.get(self.attn_implementation)
        _need_packages("attn_implementation", {self.attn_implementation: attn} if attn else {})

    @property
    def report_to_list(self) -> list[str] | str:
        """Return report_to as TrainingArguments takes it ("none", or a list of integrations)."""
        names = [x.strip() for x in self.report_to.split(",") if x.strip() and x.strip() != "none"]
        return names or "none"

    @property
    def language_list(self) -> list[str]:
        return [x.strip() for x in self.languages.split(",") if x.strip()]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# The packages behind transformers' reporting integrations and attention kernels, checked when the recipe
# is read: without them the trainer fails minutes later, deep inside a traceback.
_REPORT_PACKAGES = {"tensorboard": "tensorboard", "azure_ml": "azureml", "comet_ml": "comet_ml", "neptune": "neptune",
                    "kubeflow": "kubeflow"}
_ATTN_PACKAGES = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface",
                  "flex_attention": "torch"}


def _need_packages(name: str, packages: dict[str, str]) -> None:
    """Raise a ConfigError for the first value of field `name` whose package is not installed."""
    for value, package in packages.items():
        if importlib.util.find_spec(package) is None:
            raise ConfigError(f"{name} {value!r} needs the {package} package, which is not installed; "
                              f"pip install {package.replace('_', '-')}, or choose another {name}")


def _need(ok: bool, name: str, value, need: str) -> None:
    """Raise a ValueError naming the field, the rule and the value unless `ok` (from_dict adds where)."""
    if not ok:
        raise ConfigError(f"{name} must be {need}, got {value!r}")


def recipe_path(name_or_path: str) -> Path:
    """Return a shipped recipe by name (without .yaml) or a YAML path."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.exists():
        return path
    shipped = RECIPES_DIR / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    names = sorted(p.stem for p in RECIPES_DIR.glob("*.yaml"))
    close = difflib.get_close_matches(str(name_or_path), names, n=1)
    guess = f"; did you mean {close[0]!r}?" if close else ""
    raise NotFound(f"recipe {name_or_path!r}: no such file, and no shipped recipe of that name{guess} "
                            f"(shipped: {', '.join(names)})")


def load_recipe(name_or_path: str | None = None, overrides: dict | None = None) -> Recipe:
    """Return the recipe from YAML (or defaults), with dotted-key overrides applied."""
    data: dict = {}
    where = "recipe"
    if name_or_path:
        path = recipe_path(name_or_path)
        where = str(path)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a recipe is a YAML mapping")
    if not overrides:
        return from_dict(Recipe, data, where)
    from_dict(Recipe, copy.deepcopy(data), where)  # the file alone first, so its own errors name the file
    for dotted, value in overrides.items():
        node = data
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    flags = " ".join(f"{flag_name(k)} {v}" for k, v in overrides.items())
    return from_dict(Recipe, data, f"{flags} (over {where})" if name_or_path else flags)


def add_recipe_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --recipe plus one --<dotted.field> flag per recipe field (default: keep the recipe's value).

    Flags are spelled like every other flag of the CLI (`--sft.max-steps`, `--max-length`); the recipe's own
    field names (`--sft.max_steps`, as TRL and the YAML spell them) are accepted too, without a help line."""
    parser.add_argument("--recipe", default=None, help="Shipped recipe name or YAML path (default: built-in defaults).")
    group = parser.add_argument_group("recipe overrides (any field of the recipe, or --sft.<field> / --dpo.<field> "
                                      "for any field of TRL's SFTConfig / DPOConfig)")
    for name, kind, f in dataclass_flags(Recipe):
        kind = leaf_type(kind)
        options = dict(type=parse_bool if kind is bool else kind, default=None, dest=f"recipe:{name}",
                       choices=f.metadata.get("choices"), metavar=name.split(".")[-1].upper())
        shown = f"{f.metadata.get('help', '')} (default {f.default!r})" if f.default is not dataclasses.MISSING \
            else f.metadata.get("help")
        group.add_argument(flag_name(name), help=help_text(shown), **options)
        if flag_name(name) != f"--{name}":
            group.add_argument(f"--{name}", help=argparse.SUPPRESS, **options)


def flag_name(field: str) -> str:
    """Return the flag of a (dotted) field: `sft.max_steps` -> `--sft.max-steps`."""
    return "--" + field.replace("_", "-")


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """Return the recipe named by --recipe with every given --<field> flag applied."""
    overrides = {k.split(":", 1)[1]: v for k, v in vars(args).items() if k.startswith("recipe:") and v is not None}
    return load_recipe(args.recipe, overrides)
