"""`stylealign chat`: talk to a base model, an adapter, or both side by side, in the terminal."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

from stylealign.errors import ConfigError
from stylealign.generate import GenerationConfig
from stylealign.options import add_config_arguments, config_from_args, option

_D = GenerationConfig()
SAMPLING_GROUP = "generation (identical for baseline and adapter)"
QUANT_HELP = "Base weights (default: as trained on a GPU; unquantized on a CPU, where it decodes faster)."


@dataclass
class SamplingOptions:
    """The explicit sampling flags shared by chat, eval and arena (identical for baseline and adapter)."""

    max_new_tokens: int = option(_D.max_new_tokens, "Token budget of each answer.")
    temperature: float = option(_D.temperature, "Sampling temperature.")
    top_p: float = option(_D.top_p, "Nucleus sampling: sample from the most likely tokens that make up this probability.")
    repetition_penalty: float = option(_D.repetition_penalty, "Divide the odds of tokens already in the text by this.")
    greedy: bool = option(False, "Greedy decoding (loops on open questions with small models).", flag="--greedy")
    seed: int = option(_D.seed, "Seed of the sampling (each row its own generator).")

    def __post_init__(self):
        self.generation_config()  # GenerationConfig validates the values

    def generation_config(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=not self.greedy, temperature=self.temperature,
                                top_p=self.top_p, repetition_penalty=self.repetition_penalty, seed=self.seed)


@dataclass
class ChatOptions:
    """`stylealign chat`: what to talk to, and how."""

    adapter: str | None = option(None, "Run folder (or adapter folder) to chat with.", metavar="RUN")
    compare: bool = option(False, "Also print the baseline's answer to the same turn.", flag="--compare")
    base: str | None = option(None, "Base model (default: the run's, else smollm2-135m).")
    quant: str | None = option(None, QUANT_HELP, choices=("nf4", "none"))
    system: str | None = option(None, "A system prompt for every turn.")
    prompt: list = option([], "Answer these prompts and exit instead of reading stdin (repeatable).", action="append")
    strength: float = option(1.0, "LoRA strength (0 = baseline, 1 = as trained).")
    sampling: SamplingOptions = option(SamplingOptions(), "Sampling.", group=SAMPLING_GROUP)

    def __post_init__(self):
        if not math.isfinite(self.strength):
            raise ConfigError(f"--strength must be a finite number, got {self.strength}")


def register(sub) -> None:
    p = sub.add_parser("chat", help="Chat in the terminal with an adapter (and, with --compare, the baseline).")
    add_config_arguments(p, ChatOptions)
    p.set_defaults(func=run)


def run(args) -> int:
    from stylealign.generate import Generator, generator_for_runs

    args = config_from_args(args, ChatOptions)
    cfg = args.sampling.generation_config()
    if args.adapter:
        gen = generator_for_runs([args.adapter], base=args.base, quant=args.quant)
    else:
        gen = Generator(base=args.base or "smollm2-135m", quant=args.quant or "none")
    name = gen.adapter_names[0] if gen.adapter_names else None
    rows = [("baseline", None)] if (args.compare or name is None) else []
    rows += [(name, name)] if name else []
    print(f"# {', '.join(label for label, _ in rows)} | {cfg.to_dict()}", file=sys.stderr)
    history: dict[str, list[dict]] = {label: [] for label, _ in rows}
    prompts = iter(args.prompt) if args.prompt else _stdin_prompts()
    for prompt in prompts:
        convs = []
        for label, _ in rows:
            history[label].append({"role": "user", "content": prompt})
            convs.append(([{"role": "system", "content": args.system}] if args.system else []) + history[label])
        answers = gen.generate(convs, [a for _, a in rows], cfg, strengths={name: args.strength} if name else None)
        for (label, _), answer in zip(rows, answers):
            history[label].append({"role": "assistant", "content": answer})
            print(f"[{label}] {answer}\n")
    return 0


def _stdin_prompts():
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            return
        if line in ("/exit", "/quit"):
            return
        if line:
            yield line
