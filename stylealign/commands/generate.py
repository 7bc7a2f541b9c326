"""`stylealign chat`: talk to a base model, an adapter, or both side by side, in the terminal."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("chat", help="Chat in the terminal with an adapter (and, with --compare, the baseline).")
    p.add_argument("--adapter", default=None, metavar="RUN", help="Run folder (or adapter folder) to chat with.")
    p.add_argument("--compare", action="store_true", help="Also print the baseline's answer to the same turn.")
    p.add_argument("--base", default=None, help="Base model (default: the run's, else smollm2-135m).")
    p.add_argument("--quant", default=None, choices=("nf4", "none"), help="Base weights (default: as trained on a GPU; unquantized on a CPU, where it decodes faster).")
    p.add_argument("--system", default=None, help="A system prompt for every turn.")
    p.add_argument("--prompt", action="append", default=None,
                   help="Answer these prompts and exit instead of reading stdin (repeatable).")
    p.add_argument("--strength", type=float, default=1.0, help="LoRA strength (0 = baseline, 1 = as trained).")
    add_generation_arguments(p)
    p.set_defaults(func=run)


def add_generation_arguments(p) -> None:
    """Add the explicit sampling flags shared by chat, eval and arena."""
    from stylealign.generate import GenerationConfig

    d = GenerationConfig()
    g = p.add_argument_group("generation (identical for baseline and adapter)")
    g.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    g.add_argument("--temperature", type=float, default=d.temperature)
    g.add_argument("--top-p", type=float, default=d.top_p)
    g.add_argument("--repetition-penalty", type=float, default=d.repetition_penalty)
    g.add_argument("--greedy", action="store_true", help="Greedy decoding (loops on open questions with small models).")
    g.add_argument("--seed", type=int, default=d.seed)


def generation_config(args):
    from stylealign.generate import GenerationConfig

    return GenerationConfig(max_new_tokens=args.max_new_tokens, do_sample=not args.greedy, temperature=args.temperature,
                            top_p=args.top_p, repetition_penalty=args.repetition_penalty, seed=args.seed)


def run(args) -> int:
    from stylealign.generate import Generator, generator_for_runs

    if args.adapter:
        gen = generator_for_runs([args.adapter], base=args.base, quant=args.quant)
    else:
        gen = Generator(base=args.base or "smollm2-135m", quant=args.quant or "none")
    name = gen.adapter_names[0] if gen.adapter_names else None
    rows = [("baseline", None)] if (args.compare or name is None) else []
    rows += [(name, name)] if name else []
    cfg = generation_config(args)
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
