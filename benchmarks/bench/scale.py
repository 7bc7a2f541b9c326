"""The scale area: the kit-vs-plain-TRL SFT comparison on randomly initialised Llamas of growing size
(bench.shapes, the embedded tokenizer) at a few row lengths, so a user sees what a bigger base costs on this
machine before trying one.

One process per (shape, seq len, arm), as for every arm, so each peak RSS is that arm's own; shapes are built
in a process of their own too (the bench's process never starts torch's threads). Shapes run smallest first;
after the smallest, the rest is estimated from it and printed.
"""

from __future__ import annotations

import json
from pathlib import Path

from stylealign.files import write_atomic

from . import arith
from .shapes import is_built, shape_folder
from .spec import ArmSpec

ARMS = ("kit", "ref")


def by_size(shapes) -> list[str]:
    """Return the shapes smallest first (by parameter count)."""
    return sorted(shapes, key=lambda s: arith.param_count(arith.SHAPES[s]))


def rows_files(settings, tokenizer, out: Path) -> dict[int, str]:
    """Write one rows file per seq len (the persona's rows stitched to it; one tokenizer for every shape) and
    return {seq len: path}."""
    from stylealign.personas import load_persona

    from .rows import select

    persona, files = load_persona(settings.persona), {}
    for seq in settings.scale_seq_lens:
        rows = select(persona, tokenizer, sft_rows=(settings.scale_steps + settings.warmup) * settings.scale_batch,
                      pref_rows=0, prompts=0, max_tokens=seq, seq_len=seq)
        files[seq] = str(out / "work" / f"rows-scale-{seq}.json")
        write_atomic(Path(files[seq]), json.dumps(rows, ensure_ascii=False))
    return files


def train_flops(shape: str, seq: int) -> float:
    """Return LoRA training FLOPs per token of `shape` on rows of `seq` tokens (mean causal context (seq+1)/2)."""
    return arith.flops_per_token(arith.Dims.from_config(arith.SHAPES[shape]), "train", 16, (seq + 1) / 2)


def estimate_seconds(done: list[dict], cells: list[tuple[str, int]]) -> float:
    """Return the expected wall seconds of `cells` from finished arms of a smaller shape at the same seq lens:
    each arm's start-up as measured, its loading scaled by parameters, its steps by FLOPs per token."""
    total = 0.0
    for shape, seq in cells:
        for res in (r for r in done if r["seq_len"] == seq and "steps" in r):
            steps = sum(s["seconds"] for s in res["steps"]) + sum(res["warmup_seconds"])
            start = max(0.0, res["wall_seconds"] - steps - res["load_seconds"])
            params = arith.param_count(arith.SHAPES[shape]) / arith.param_count(arith.SHAPES[res["shape"]])
            total += start + res["load_seconds"] * params + steps * train_flops(shape, seq) / train_flops(res["shape"], seq)
    return total


def scale_arms(settings, setup, run, echo=print) -> list[dict]:
    """Build the shapes, run kit and reference SFT at every (shape, seq len); return the arms' results, each
    tagged with its shape, seq len and arm."""
    from stylealign import models

    shapes, seq_lens, results = by_size(settings.scale_shapes), sorted(settings.scale_seq_lens), []
    tokenizer = models.load_tokenizer(models.resolve_base("smollm2-135m"))  # every shape's (bench.shapes)
    rows = rows_files(settings, tokenizer, setup.out)
    for i, shape in enumerate(shapes):
        folder = build(shape, run, echo)
        for seq in seq_lens:
            for arm in ARMS:
                spec = ArmSpec(area="sft", arm=arm, model=folder, recipe=setup.recipe_name, quant=settings.quant,
                               batch_size=settings.scale_batch, warmup=settings.warmup,
                               total_steps=settings.scale_steps + settings.warmup,
                               max_length=max(setup.recipe.max_length, seq + 256), rows=rows[seq], ref=settings.ref,
                               kit_set=settings.kit_set)
                result = run(f"scale-{shape}-{seq}-{arm}", spec) if folder else {"error": "shape not built"}
                results.append({**result, "shape": shape, "seq_len": seq, "arm": arm})
        if i == 0 and len(shapes) > 1:
            rest = estimate_seconds(results, [(s, q) for s in shapes[1:] for q in seq_lens])
            echo(f"  scale: at most ~{rest / 60:.0f} more min for {', '.join(shapes[1:])} (from {shape}'s time "
                 "scaled by FLOPs; bigger models use the CPU better)")
    return results


def build(shape: str, run, echo=print) -> str | None:
    """Return the folder of the random Llama `shape`, built once under the cache, in a process of its own."""
    if is_built(shape):
        return str(shape_folder(shape))
    echo(f"  building random {shape} ({arith.param_count(arith.SHAPES[shape]) / 1e6:,.0f}M parameters, once)")
    return run(f"shape-{shape}", ArmSpec(area="shape", model=shape)).get("path")
