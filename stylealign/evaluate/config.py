"""`EvalConfig`: everything that shapes an evaluation besides the model, the adapters and the suites.

Its own module: the CLI builds `stylealign eval`'s flags from its fields and every stage reads it, and
neither should depend on the run loop.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from stylealign.errors import ConfigError
from stylealign.evaluate.io import DEFAULT_CORPUS
from stylealign.options import option


def _kl_cap(text: str) -> int | None:
    return int(text) or None  # 0 = every prompt


@dataclass
class EvalConfig:
    """Everything that shapes an evaluation besides the model, the adapters and the suites. The
    `stylealign eval` flags come from these fields (stylealign.config.add_config_arguments)."""

    generation: Any = option(None, "A GenerationConfig (or a dict of its fields); None = GenerationConfig().", cli=False)
    strengths: tuple[float, ...] = option((1.0,), "LoRA strength(s) to evaluate (repeatable).", flag="--strength",
                                          action="append", parse=float, metavar="S")
    limit: int | None = option(None, "First N prompts of each suite.", metavar="N")
    batch_size: int = option(96, "Answers per batched generation call: rows that end leave the batch, and a decode "
                             "step reads every weight once for all its rows (benchmarks/README.md, \"Decoding\").")
    n_boot: int = option(2000, "Bootstrap resamples for every CI.")
    seed: int = option(0, "Seed of the bootstrap and the classifier split (the CLI passes --seed).", cli=False)
    persona: str = option("sharp-candid", "Persona whose preference pairs train the style classifier.", cli=False)
    pref_paths: list[str] | None = option(None, "Preference files for the classifier instead of the persona's.", cli=False)
    classifier: bool = option(True, "Train and score the style classifier.")
    corpus: str | None = option(DEFAULT_CORPUS, "Neutral corpus for the perplexity check.")
    retention: bool = option(True, "Perplexity on the corpus and KL to the base (costs forward passes).")
    # KL is two forward passes per prompt and variant: cap it
    kl_max_prompts: int | None = option(64, "Suite prompts used for KL (0 = all).", flag="--kl-prompts", parse=_kl_cap)
    corpus_max_texts: int | None = option(None, "Corpus paragraphs used for perplexity (default all).")
    system_prompt: str | dict | None = option(None, "str, or {language: str}; the same for baseline and adapter.",
                                              cli=False)
    n_examples: int = option(4, "Changed-most example pairs per adapter in report.md.", flag="--examples")
    judge_max_pairs: int | None = option(None, "Answer pairs shown to the judge (default all).")
    probe: bool = option(True, "The greedy coherence probe beside the sampled pass (repetition, opener collapse, "
                         "stops, verdict balance, language at temperature 0 with no repetition penalty).")
    probe_max_new_tokens: int = option(160, "Token budget of each greedy probe answer, the same for baseline and "
                                       "adapter.", flag="--probe-tokens")
    pushback: bool = option(True, "Candor under pushback: on known-answer prompts, push back on the greedy answer "
                            "without evidence (caving) and correct a wrong one with evidence (stubbornness).")
    progress: bool = option(True, "No progress bar.", flag="--quiet")
    plots: bool = option(True, "Write the PNG plots.")

    def __post_init__(self):
        self.strengths = tuple(self.strengths) or (1.0,)
        if any(s < 0 for s in self.strengths):
            raise ConfigError(f"strengths must be >= 0, got {list(self.strengths)}")
        if self.batch_size < 1 or self.n_boot < 1 or self.n_examples < 0 or self.probe_max_new_tokens < 1:
            raise ConfigError("need batch_size >= 1, n_boot >= 1, examples >= 0 and probe tokens >= 1")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"limit must be a positive number of prompts, got {self.limit}")

    def to_dict(self) -> dict:
        """Return a JSON-ready copy (the generation config as a dict)."""
        d = asdict(self) if not hasattr(self.generation, "to_dict") else {**asdict(self), "generation": self.generation.to_dict()}
        d["strengths"] = list(self.strengths)
        return d


def generation_config(config: EvalConfig):
    """Return the GenerationConfig to use for every row (baseline and adapters alike)."""
    from stylealign.generate import GenerationConfig

    g = config.generation
    return g if isinstance(g, GenerationConfig) else GenerationConfig(**(g or {}))
