"""The one generation path: a base model in memory, any number of adapters, mixed-adapter batches.

Every caller (chat, evaluation, arena, benchmarks) goes through `Generator`. A batch may mix rows
for the baseline (adapter None) and for adapters: PEFT routes each row through its own LoRA
weights, so comparing two contestants costs one forward pass per token, not two. The decode loop
is ours rather than `model.generate` so that each row gets its own RNG (a row's text does not
depend on which other rows share its batch) and so that streaming is a plain iterator.
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from stylealign import decoding
from stylealign.errors import ConfigError, NotFound
from stylealign.phases import trim_heap

BASE_ROW = "__base__"  # PEFT's name for "no adapter" in a mixed batch


@dataclass
class GenerationConfig:
    """Sampling settings, recorded with every comparison and identical for baseline and adapter."""

    max_new_tokens: int = 160
    do_sample: bool = True
    temperature: float = 0.7
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int = 0

    def __post_init__(self):
        if self.max_new_tokens < 1:
            raise ConfigError("max_new_tokens must be >= 1")
        if self.do_sample and not (self.temperature > 0 and 0 < self.top_p <= 1):
            raise ConfigError("sampling needs temperature > 0 and 0 < top_p <= 1")
        if self.repetition_penalty <= 0:
            raise ConfigError("repetition_penalty must be > 0")

    def to_dict(self) -> dict:
        return asdict(self)


# Decoding for answers people read (the main job's comparison, the arena's defaults), chosen by
# measurement on the embedded 135M model: `python benchmarks/coherence_sweep.py decoding RUN` (docs/EVALUATION.md,
# "Style that holds up": the most relevant answers with under 5% repetitive, baseline and adapter).
# Evaluations record their own settings; the probe is always greedy.
READING = {"temperature": 0.3, "top_p": 0.9, "repetition_penalty": 1.1}


def reading_config(**overrides) -> "GenerationConfig":
    """Return the measured decoding settings for answers people read (READING), with `overrides`."""
    return GenerationConfig(**{**READING, **overrides})


def adapter_dir(path: str | Path) -> Path:
    """Return the PEFT adapter folder for a run folder or an adapter folder."""
    path = Path(path)
    if (path / "adapter" / "adapter_config.json").exists():
        return path / "adapter"
    if (path / "adapter_config.json").exists():
        return path
    raise NotFound(f"{path}: no adapter_config.json here or in {path / 'adapter'}")


class Generator:
    """One base model in memory with named adapters; batched, streaming, seeded generation."""

    def __init__(self, base: str = "smollm2-135m", quant: str = "none", dtype: str = "auto",
                 adapters: dict[str, str] | None = None, model=None, tokenizer=None):
        from stylealign import models

        if model is None:
            resolved = models.resolve_base(base)
            model = models.load_model(resolved, quant=quant, dtype=dtype)
            tokenizer = tokenizer or models.load_tokenizer(resolved)
        self.base, self.quant = base, quant
        self.model, self.tokenizer = model.eval(), tokenizer
        self.adapter_paths: dict[str, str] = {}
        self._scalings: dict[str, dict] = {}
        self.row_scaling = True  # False: PEFT's per-row routing for every mixed batch (the bench's reference)
        self.lock = threading.Lock()  # strengths are model state: one generation at a time
        for name, path in (adapters or {}).items():
            self.add_adapter(name, path)

    @property
    def adapter_names(self) -> list[str]:
        return list(self.adapter_paths)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def add_adapter(self, name: str, path: str) -> None:
        """Attach the adapter in a run folder (or adapter folder) under `name`, frozen, for inference."""
        from peft import PeftModel

        if name in self.adapter_paths or name == BASE_ROW:
            raise ValueError(f"adapter name {name!r} is already taken")
        from stylealign.adapters import check_for_base

        folder = adapter_dir(path)
        check_for_base(folder, self.model, self.base)  # one line instead of PEFT's page of shape mismatches
        if not self.adapter_paths and not isinstance(self.model, PeftModel):
            self.model = PeftModel.from_pretrained(self.model, folder, adapter_name=name, is_trainable=False).eval()
        else:
            self.model.load_adapter(folder, adapter_name=name, is_trainable=False)
        self.adapter_paths[name] = str(path)
        self._lora_in_compute_dtype(name)
        self._scalings[name] = {m: dict(m.scaling) for m in self._lora_layers()}

    def _lora_in_compute_dtype(self, name: str) -> None:
        """On a CPU with unquantized bf16 weights (what `stylealign eval` and the arena generate from), hold adapter
        `name` in bf16 too: PEFT loads it in fp32 and then casts every LoRA layer's input to fp32 and its output back
        at every step (a third of a prefill's time). bf16 LoRA arithmetic is what CPU training computes under
        autocast (train.cpu_lora_autocast). A 4-bit base (`--quant nf4`) keeps PEFT's fp32 adapter, as trained."""
        import torch

        base_dtype = next(p.dtype for n, p in self.model.named_parameters() if "lora_" not in n)
        quantized = getattr(self.model.config, "quantization_config", None) is not None  # 4-bit: generate as trained
        if self.device.type != "cpu" or base_dtype != torch.bfloat16 or quantized:
            return
        for layer in self._lora_layers():
            for group in (layer.lora_A, layer.lora_B):
                if name in group:
                    group[name].to(base_dtype)

    def _lora_layers(self):
        from peft.tuners.lora import LoraLayer

        return [m for m in self.model.modules() if isinstance(m, LoraLayer)]

    @contextlib.contextmanager
    def strengths(self, strengths: dict[str, float] | None):
        """Scale each named adapter's LoRA contribution (0 = base, 1 = as trained) inside the block."""
        strengths = {k: float(v) for k, v in (strengths or {}).items() if float(v) != 1.0}
        for name in strengths:
            if name not in self.adapter_paths:
                raise ValueError(f"unknown adapter {name!r}; loaded: {self.adapter_names}")
        try:
            for name, scale in strengths.items():
                for layer, saved in self._scalings[name].items():
                    if name in saved:
                        layer.scaling[name] = saved[name] * scale
            yield
        finally:
            for name in strengths:
                for layer, saved in self._scalings[name].items():
                    layer.scaling.update({k: v for k, v in saved.items() if k == name})

    def _adapter_kwargs(self, adapters: list[str | None]) -> dict:
        unknown = {a for a in adapters if a is not None and a not in self.adapter_paths}
        if unknown:
            raise ValueError(f"unknown adapter(s) {sorted(unknown)}; loaded: {self.adapter_names}")
        if not self.adapter_paths:
            return {}
        return {"adapter_names": [a if a is not None else BASE_ROW for a in adapters]}

    def encode(self, conversations: list[list[dict]]) -> dict:
        """Return left-padded input_ids/attention_mask for chat-templated conversations."""
        texts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True, tokenize=False)
                 for c in conversations]
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    def logits(self, input_ids, attention_mask, adapter: str | None):
        """Return the [B, T, V] logits of `adapter` (None = base) for the given tokens, without grad."""
        import torch

        position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        with torch.no_grad(), self._routing([adapter] * input_ids.shape[0]):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                              use_cache=False).logits.float()

    def stream(self, conversations, adapters, config: GenerationConfig, strengths=None,
               stopped: list | None = None) -> Iterator[list[str]]:
        """Yield, after every decoding step, the text generated so far for each row. A given `stopped`
        list is filled at the end: per row, whether it ended on a stop token before the token budget."""
        tokens: list[list[int]] = [[] for _ in conversations]
        with self.lock, self.strengths(strengths):
            for step in self._decode(conversations, adapters, config, stopped):
                for row, tok in step.items():
                    tokens[row].append(tok)
                yield [self.tokenizer.decode(t, skip_special_tokens=True).strip() for t in tokens]

    def generate(self, conversations, adapters, config: GenerationConfig, strengths=None,
                 batch_size: int = 8, progress: bool = False, stopped: list | None = None) -> list[str]:
        """Return one answer per conversation; rows are batched by length, each with its own adapter.
        A given `stopped` list receives, per conversation, whether its answer ended before the budget."""
        from tqdm.auto import tqdm

        if len(adapters) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(adapters)} adapter entries")
        order = decoding.batch_order(conversations, adapters)
        answers: list[str] = [""] * len(conversations)
        ended: list[bool] = [False] * len(conversations)
        bar = tqdm(total=len(conversations), desc="generating", unit="answer", disable=not progress)
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            final, batch_stopped = [""] * len(idx), []
            for final in self.stream([conversations[i] for i in idx], [adapters[i] for i in idx], config, strengths,
                                     batch_stopped):
                pass
            for i, text, end in zip(idx, final, batch_stopped):
                answers[i], ended[i] = text, end
            bar.update(len(idx))
            trim_heap()  # the batch's KV cache and prefill activations go back to the OS
        bar.close()
        if stopped is not None:
            stopped[:] = ended
        return answers

    def _decode(self, conversations, adapters, config: GenerationConfig,
                stopped: list | None = None) -> Iterator[dict[int, int]]:
        """Yield {row: new token} per step for unfinished rows; KV cache, per-row seeded sampling.
        At the end `stopped` (if given) holds, per row, whether a stop token ended it.

        Rows that have stopped leave the batch (`decoding.LiveRows.prune`): a decode step's cost grows with its rows
        (SmolLM2 on 2 CPU cores: 74 ms at 8 rows, 137 ms at 32), and most greedy answers end long before the
        budget while one or two run on. A row's numbers may then differ from the full batch's by the
        batch-shape tolerance of docs/CONTRACTS.md, as they may already between batch compositions."""
        import torch
        from transformers import DynamicCache

        enc = self.encode(conversations)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        live = decoding.LiveRows(rows=torch.arange(len(conversations)), adapters=list(adapters),
                     rngs=[torch.Generator(device=self.device).manual_seed(config.seed) for _ in conversations],
                     seen=decoding.seen_tokens(ids, mask, len(self.tokenizer)),  # for the repetition penalty
                     mask=mask, position=(mask.long().cumsum(-1) - 1).clamp(min=0), cache=DynamicCache())
        stops = self._stop_ids()
        done = torch.zeros(len(conversations), dtype=torch.bool)  # per original row
        step_ids = ids
        # The prefill's last position as an index tensor, not logits_to_keep=1: the model slices its hidden states
        # with it, and a strided [B, 1, d] slice sends the LM head down matmul's batched path, which expands and
        # copies the whole [B, d, vocab] weight (1.8 GB and seconds for 32 rows of SmolLM2); an index gives a
        # contiguous [B, 1, d] and one matmul. Decode steps have length 1 and are contiguous already.
        keep = torch.tensor([ids.shape[1] - 1], device=self.device)
        with torch.no_grad(), contextlib.ExitStack() as routing, decoding.report_done(done, stopped):
            routing.enter_context(self._routing(live.adapters))
            for _ in range(config.max_new_tokens):
                out = self.model(input_ids=step_ids, attention_mask=live.mask, position_ids=live.position,
                                 use_cache=True, logits_to_keep=keep, **{self._cache_kwarg(): live.cache})
                keep = 1
                logits = out.logits[:, -1, :].float()
                del out
                if live.seen.shape[1] < logits.shape[1]:  # a vocabulary padded past the tokenizer's
                    live.seen = torch.nn.functional.pad(live.seen, (0, logits.shape[1] - live.seen.shape[1]))
                nxt = torch.tensor(decoding.pick_tokens(logits, live.seen, live.rngs, config))
                emitted, ended = {}, torch.zeros(len(nxt), dtype=torch.bool)
                for pos, (row, tok) in enumerate(zip(live.rows.tolist(), nxt.tolist())):
                    if tok in stops:
                        done[row] = ended[pos] = True
                    else:
                        emitted[row] = tok
                        live.seen[pos, tok] = True
                if emitted:
                    yield emitted
                if bool(done.all()):
                    return
                if bool(ended.any()):
                    mixed = len(set(live.adapters)) > 1
                    live.prune(~ended)
                    nxt = nxt[~ended]
                    if mixed:  # PEFT's per-row routing holds the batch's adapter list: enter it anew
                        routing.close()
                        routing.enter_context(self._routing(live.adapters))
                step_ids = nxt[:, None].to(self.device)
                live.mask = torch.cat([live.mask, torch.ones_like(live.mask[:, :1])], dim=1)
                live.position = live.position[:, -1:] + 1

    def _routing(self, adapters: list[str | None]):
        """Return a context that routes each row through its adapter for every forward inside it. PEFT's
        mixed-batch hooks are entered once per generation, not once per decode step (they walk every
        module to register); a batch of one adapter takes PEFT's plain path, and so does a batch of base rows and
        one adapter's, with a per-row scaling (`_row_scaled`)."""
        names = self._adapter_kwargs(adapters).get("adapter_names")
        if names is None:
            return contextlib.nullcontext()
        if len(set(names)) == 1:
            if names[0] == BASE_ROW:
                return self.model.disable_adapter()
            self.model.set_adapter(names[0], inference_mode=True)
            return contextlib.nullcontext()
        adapters_here = set(names) - {BASE_ROW}
        if self.row_scaling and len(adapters_here) == 1 and self._plain_lora(name := adapters_here.pop()):
            return self._row_scaled(name, [n != BASE_ROW for n in names])
        return self.model.base_model._enable_peft_forward_hooks(adapter_names=names)

    def _plain_lora(self, name: str) -> bool:
        """Whether adapter `name` is vanilla LoRA in every layer (no DoRA or other variant), whose output is
        `lora_B(lora_A(x)) * scaling` and so takes a per-row scaling."""
        return all(name not in layer.lora_variant for layer in self._scalings[name])

    @contextlib.contextmanager
    def _row_scaled(self, name: str, rows: list[bool]):
        """Route a batch of base rows and rows of one adapter, `name`, through the adapter alone with a per-row
        scaling: the adapter's own where `rows` is True, 0 on base rows (whose output is then the base layer's plus
        zero). PEFT's per-row routing instead gathers each adapter's rows and scatters them back in every layer:
        on 2 CPU cores, 64 greedy answers (32 prompts, base and adapter) in one batch at 1.08x the answers/s, the
        same texts (benchmarks/README.md, "Decoding"). The scale is held in the LoRA's dtype where it is exact there (alpha/r
        of 2, a strength of 0.5), else in fp32 (PEFT casts the layer's sum back to its own dtype)."""
        import torch

        self.model.set_adapter(name, inference_mode=True)
        layers = [layer for layer, saved in self._scalings[name].items() if name in saved]  # the adapter's layers
        saved = [layer.scaling[name] for layer in layers]  # as they stand (a strength may have scaled them)
        mask = torch.tensor(rows, device=self.device)[:, None, None]
        scales: dict[float, object] = {}
        try:
            for layer, scale in zip(layers, saved):
                if scale not in scales:
                    dtype = layer.lora_A[name].weight.dtype
                    exact = torch.tensor(scale, dtype=dtype).item() == scale
                    scales[scale] = mask * torch.tensor(scale, dtype=dtype if exact else torch.float32, device=self.device)
                layer.scaling[name] = scales[scale]
            yield
        finally:
            for layer, scale in zip(layers, saved):
                layer.scaling[name] = scale

    def _cache_kwarg(self) -> str:
        """Return the forward() name of the KV cache argument (renamed from past_key_values in transformers 5.x)."""
        import inspect

        from peft import PeftModel

        base = self.model.get_base_model() if isinstance(self.model, PeftModel) else self.model
        return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"

    def _stop_ids(self) -> set[int]:
        ids = {self.tokenizer.eos_token_id}
        gen_eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        ids |= set(gen_eos if isinstance(gen_eos, list) else [gen_eos])
        ids.add(self.tokenizer.convert_tokens_to_ids("<|im_end|>") if "<|im_end|>" in self.tokenizer.get_vocab() else None)
        return {i for i in ids if i is not None}


def generator_for_runs(runs: list[str], base: str | None = None, quant: str | None = None,
                       dtype: str = "auto") -> Generator:
    """Return a Generator on the runs' shared base (from their manifests) with each run attached
    under its folder name. Runs trained on different bases cannot share one model: that is an error."""
    from stylealign.manifest import read_manifest

    manifests = [read_manifest(r) for r in runs]
    bases = {m.base_name for m in manifests} - {None}
    if base is None:
        if len(bases) > 1:
            raise ConfigError(f"runs were trained on different bases {sorted(bases)}; pass --base")
        base = bases.pop() if bases else "smollm2-135m"
    gen = Generator(base=base, quant=quant or generation_quant([m.base_quant for m in manifests]), dtype=dtype)
    for run in runs:
        gen.add_adapter(unique_name(Path(run).resolve().name, gen.adapter_names), run)
    return gen


def generation_quant(trained: list[str | None]) -> str:
    """Return the base weights to generate from by default, given the runs' trained quants (manifest
    base_model.quant): on a GPU the runs' own (4-bit saves memory);
    on a CPU unquantized, since bitsandbytes dequantises every 4-bit weight at every decode step there
    (a quarter of the decode time, benchmarks/README.md); `--quant nf4` generates as trained."""
    import torch

    quants = set(trained) - {None}
    if not torch.cuda.is_available():
        return "none"
    return quants.pop() if len(quants) == 1 else "none"


def unique_name(name: str, taken: list[str]) -> str:
    """Return `name`, or `name-2`, `name-3`, ... if taken."""
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}-{n}"
    return out
