"""The README's examples run.

Every `stylealign …` command line in the README's fenced code blocks (backslash continuations joined, trailing
`# comments` dropped) is classified below, with the reason: RUN ones run in-process through `stylealign.cli.main`,
in README order, in one workspace (a temporary folder holding the shipped personas and eval/ suites) on a tiny
random Llama given as a GGUF file (the embedded model's real tokenizer, so token-length checks match the real
model), with the appended flags named in each entry; PARSE ones need a server, a network, a GPU, a browser or a
teacher endpoint, so their command line must parse and their subcommand's `--help` must work. A command the README
gains that is not classified here fails the test, and so does an entry the README no longer has.

Every relative Markdown link in README.md, docs/*.md and benchmarks/*.md resolves to a file (and heading), and
every `stylealign` command in docs/ and benchmarks/ parses.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from stylealign.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").glob("*.md")), *sorted((REPO / "benchmarks").glob("*.md"))]


# ---- the commands of a Markdown file ---------------------------------------------------------------------------

def _strip_comment(line: str) -> str:
    """Return a shell line without its trailing comment: a `#` that starts a word outside quotes."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands(text: str) -> list[str]:
    """Return the `stylealign …` command lines of the fenced code blocks in `text`, in order, whitespace
    collapsed: lines that start with `stylealign` or run it with `-m stylealign` (accelerate, python)."""
    found = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.M | re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = " ".join(_strip_comment(line).split())
            if line.startswith("stylealign ") or " -m stylealign " in line:
                found.append(line)
    return found


def argv_of(command: str) -> list[str]:
    """Return the arguments after `stylealign` in a command line."""
    words = shlex.split(command)
    return words[words.index("stylealign") + 1:] if words[0] == "stylealign" else words[words.index("-m") + 2:]


# ---- the classification ----------------------------------------------------------------------------------------

# One optimizer step per stage at a high learning rate and no warm-up (whose first step has learning rate 0), so
# the adapter moves a random model's greedy tokens and the export check can tell it from the base.
TRAIN = ("--base", "{base}", "--quant", "none", "--dtype", "fp32", "--eval-fraction", "0", "--select.enabled", "false",
         "--sft.max-steps", "1", "--sft.batch-size", "1", "--sft.grad-accum", "1", "--sft.length-group", "0",
         "--dpo.max-steps", "1", "--dpo.batch-size", "1", "--dpo.grad-accum", "1", "--dpo.length-group", "0",
         "--sft.learning-rate", "0.05", "--dpo.learning-rate", "0.05", "--sft.warmup-ratio", "0", "--dpo.warmup-ratio", "0")
# Each part of the evaluation has its own tests (tests/test_eval_*.py); here the command runs end to end on one
# prompt per suite with the sampled pass and the greedy probe. Left out: the style classifier (it embeds every
# preference pair with MiniLM: ~35 s), the pushback turns, retention's perplexity and KL passes, and the plots.
EVAL = ("--limit", "1", "--max-new-tokens", "4", "--probe-tokens", "4", "--n-boot", "100", "--no-classifier",
        "--no-pushback", "--no-retention", "--no-plots", "--quiet")
TINY = "a tiny base and 1 step per stage (max_length stays the recipe's: the full rows are validated)"


@dataclass(frozen=True)
class Run:
    """Run in the workspace: `extra` appended ({base}: the tiny GGUF), after `prepare(workspace)`; exit code in
    `codes`; the paths in `makes` exist afterwards, and `check(workspace, stdout, exit code)` holds."""

    why: str
    extra: tuple = ()
    codes: tuple = (0,)
    makes: tuple = ()
    prepare: object = None
    check: object = None
    marks: tuple = ()


@dataclass(frozen=True)
class Parse:
    """Parse only: the line parses and its subcommand's --help works."""

    why: str
    files: tuple = field(default=())  # repository files the line names, which must exist


def _write_my_tutor_data(ws: Path) -> None:
    """The README's 'write personas/my-tutor/data/sft_*.jsonl' step: 24 conversations in character."""
    rows = [line for f in sorted((REPO / "personas" / "warm-tutor" / "data").glob("sft_en_*.jsonl"))
            for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    (ws / "personas" / "my-tutor" / "data" / "sft_hand.jsonl").write_text("\n".join(rows[:24]) + "\n", encoding="utf-8")


def _interrupt_after_sft(ws: Path) -> None:
    """Leave runs/sc as a run interrupted between its stages: the work folder with SFT finished, no DPO."""
    shutil.move(ws / "runs" / "sc", ws / "runs" / "sc.partial")
    shutil.rmtree(ws / "runs" / "sc.partial" / "stages" / "dpo")
    for name in ("adapter", "manifest.json"):
        path = ws / "runs" / "sc.partial" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _cast_votes(ws: Path) -> None:
    """Votes as the arena records them: three decisive battles, one tie."""
    from stylealign.arena.votes import Vote, VoteStore

    def conv(user, answer):
        return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]

    store = VoteStore(ws / ".stylealign" / "arena" / "votes.sqlite")
    store.add(Vote("baseline", "sc", "B", conv("Is Rust worth learning?", "It depends on many factors."),
                   conv("Is Rust worth learning?", "Yes, if you write systems code.")))
    store.add(Vote("sc", "baseline", "A", conv("Should I rewrite it in Go?", "No. Fix the slow query first."),
                   conv("Should I rewrite it in Go?", "There are several factors to consider.")))
    store.add(Vote("sc", "baseline", "A", conv("要不要换工作？", "先拿到offer再说。"), conv("要不要换工作？", "这取决于很多因素。")))
    store.add(Vote("baseline", "sc", "tie", conv("hi", "Hello!"), conv("hi", "Hi.")))


def _two_prompt_suite(ws: Path) -> None:
    rows = (REPO / "eval" / "suites" / "smoke.jsonl").read_text(encoding="utf-8").splitlines()
    (ws / "smoke-2.jsonl").write_text("\n".join(rows[:2]) + "\n", encoding="utf-8")


def _all_pairs_trained(ws: Path, out: str, rc: int) -> None:
    """The DPO stage saw every shipped pair: the ones over 512 tokens (Chinese, up to ~563) passed validation."""
    pairs = sum(1 for f in (REPO / "personas" / "sharp-candid" / "data").glob("pref_*.jsonl")
                for line in f.read_text(encoding="utf-8").splitlines() if line.strip())
    manifest = json.loads((ws / "runs" / "sc-dpo" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["data"]["dpo"]["train_rows"] == pairs, manifest["data"]["dpo"]


def _answers_both(ws: Path, out: str, rc: int) -> None:
    assert "[baseline] " in out and "[sc] " in out, out


def _gate_decided(ws: Path, out: str, rc: int) -> None:
    gate = json.loads((ws / "runs" / "sc" / "eval" / "report.json").read_text(encoding="utf-8"))["gate"]
    assert [c["spec"] for c in gate["checks"]] == ["verdict_first=0.5"], gate
    assert rc == (0 if gate["passed"] else 1), (rc, gate)


def _three_pairs(ws: Path, out: str, rc: int) -> None:
    assert len((ws / "arena-prefs.jsonl").read_text(encoding="utf-8").splitlines()) == 3


SERVER = "serves until stopped"
CLASSIFIED: dict[str, Run | Parse] = {
    # one command per stage
    "stylealign personas list": Run("lists the workspace's personas", check=lambda ws, out, rc: "sharp-candid" in out),
    "stylealign personas validate sharp-candid": Run("the shipped data's checks, as shipped"),
    "stylealign personas stats sharp-candid": Run("the data card's numbers, as shipped"),
    "stylealign train all --persona sharp-candid --recipe smollm2-135m_qlora_cpu --run runs/sc":
        Run(TINY, TRAIN, makes=("runs/sc/adapter", "runs/sc/manifest.json", "runs/sc/stages/dpo")),
    "stylealign train sft --recipe smollm2-135m_qlora_cpu --run runs/sc-sft --sft.max-steps 40 --lora.r 8":
        Run(TINY, TRAIN, makes=("runs/sc-sft/adapter",)),
    "stylealign train dpo --init runs/sc-sft --run runs/sc-dpo":
        Run("default recipe (max_length 1024) on all 431 shipped pairs, Chinese ones of 516-563 tokens among them; "
            + TINY, TRAIN, makes=("runs/sc-dpo/adapter",), check=_all_pairs_trained),
    "stylealign train all --persona sharp-candid --recipe smollm2-135m_qlora_cpu --run runs/sc --resume":
        Run("runs/sc interrupted between SFT and DPO first, so it continues with DPO; " + TINY, TRAIN,
            prepare=_interrupt_after_sft, makes=("runs/sc/adapter", "runs/sc/manifest.json"),
            check=lambda ws, out, rc: not (ws / "runs" / "sc.partial").exists()),
    "stylealign chat --adapter runs/sc --compare":
        Run("reads prompts from stdin, so one --prompt; 8 new tokens",
            ("--prompt", "Is it worth learning Rust?", "--max-new-tokens", "8"), check=_answers_both),
    "stylealign eval --adapter runs/sc --suite eval/suites/style_en.jsonl --fail-under verdict_first=0.5":
        Run("the gate decides the exit (1: a random model fails it)", EVAL, codes=(0, 1),
            makes=("runs/sc/eval/report.json", "runs/sc/eval/report.md"), check=_gate_decided),
    "stylealign studio": Parse("Gradio app: " + SERVER + " (tests/test_studio*.py drive it)"),
    "stylealign arena --adapter runs/sc": Parse("Gradio app: " + SERVER + " (tests/test_arena_*.py drive it)"),
    "stylealign arena export-prefs --votes .stylealign/arena/votes.sqlite --out arena-prefs.jsonl":
        Run("on a vote file with 3 decisive votes and a tie", prepare=_cast_votes, check=_three_pairs),
    "stylealign train dpo --data arena-prefs.jsonl --init runs/sc --run runs/sc-r2":
        Run("on the exported votes; " + TINY, TRAIN, makes=("runs/sc-r2/adapter",)),
    "stylealign export runs/sc --to all":
        Run("its check with llama.cpp on 2 of the smoke suite's prompts, 8 greedy tokens each",
            ("--suite", "smoke-2.jsonl", "--horizon", "8"), prepare=_two_prompt_suite, marks=(pytest.mark.llama_cpp,),
            makes=("runs/sc/export/merged", "runs/sc/export/gguf/base.gguf", "runs/sc/export/ollama/Modelfile",
                   "runs/sc/export/COMMANDS.md", "runs/sc/export/report.md")),
    "stylealign serve runs/sc": Parse("llama.cpp's server: " + SERVER + " (tests/test_export_llama.py runs it)"),
    # your own persona
    "stylealign personas new my-tutor":
        Run("asks on a terminal only, so the answers as flags",
            ("--title", "My Tutor", "--description", "A patient tutor.", "--system-prompt", "You are a patient tutor."),
            makes=("personas/my-tutor/persona.yaml",)),
    'stylealign synth my-tutor --teacher "file:personas/my-tutor/data/sft_*.jsonl"':
        Run("after writing 24 conversations into data/sft_hand.jsonl; the tiny base as student, 4 tokens",
            ("--student", "{base}", "--student-tokens", "4", "--batch-size", "32", "--quiet"),
            prepare=_write_my_tutor_data,
            makes=("personas/my-tutor/data/pref_synth.jsonl",)),
    "stylealign personas validate my-tutor": Run("the scaffold's requirements on the new data (20+ rows, 20+ pairs)"),
    "stylealign train all --persona my-tutor --recipe smollm2-135m_qlora_cpu --run runs/my-tutor":
        Run(TINY, TRAIN, makes=("runs/my-tutor/adapter",)),
    "stylealign eval --adapter runs/my-tutor --limit 20": Run("the kit's suites, as the persona has none", EVAL,
                                                             makes=("runs/my-tutor/eval/report.md",)),
    'stylealign synth my-tutor --teacher "openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct?concurrency=8" '
    "--topic math:fractions --per-topic 20": Parse("a teacher endpoint (tests/test_synth_openai.py serves one)"),
    # training on many GPUs
    "accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m stylealign train all --recipe "
    "qwen2.5-7b_qlora_gpu": Parse("several GPUs and a 7B base from the Hub", files=("configs/accelerate/multi_gpu.yaml",)),
    # evaluation, export, speed
    "stylealign eval --adapter runs/sc --strength 0.5 --strength 1 --strength 1.5 --limit 40":
        Run("three strengths", EVAL, makes=("runs/sc/eval/report.json",)),
    "stylealign eval --adapter runs/sc --backend openai:http://127.0.0.1:8000/v1#smollm2-135m":
        Parse("generation on a server (`stylealign serve`; tests/test_export_llama.py runs it)"),
    "stylealign bench --quick": Parse("a benchmark: minutes of timed training (tests/test_bench.py runs a tiny one)"),
}

README_COMMANDS = commands(README.read_text(encoding="utf-8"))


def test_every_readme_command_is_classified():
    unclassified = [c for c in README_COMMANDS if c not in CLASSIFIED]
    stale = [c for c in CLASSIFIED if c not in README_COMMANDS]
    assert not unclassified, "README commands not classified in tests/test_readme.py (Run or Parse): " + repr(unclassified)
    assert not stale, "classified commands the README no longer has: " + repr(stale)
    assert len(set(README_COMMANDS)) == len(README_COMMANDS), "a README command appears twice; each runs once"


# ---- parse only ----------------------------------------------------------------------------------------------

def _help_path(argv: list[str]) -> list[str]:
    """Return the leading subcommand words of `argv` (e.g. ['arena', 'export-prefs'])."""
    parser, path = build_parser(), []
    for word in argv:
        subs = [a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        path.append(word)
    return path


def parses(command: str, capsys) -> None:
    argv = argv_of(command)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{command!r} does not parse (exit {e.code}): {capsys.readouterr().err.strip()}")
    assert getattr(args, "func", None), f"{command!r} parses to no command"
    path = _help_path(argv)
    assert path, command
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([*path, "--help"])
    assert done.value.code == 0
    assert "usage: stylealign " + " ".join(path) in capsys.readouterr().out


PARSED = [c for c in README_COMMANDS if isinstance(CLASSIFIED.get(c), Parse)]


@pytest.mark.parametrize("command", PARSED)
def test_readme_command_parses(command, capsys):
    parses(command, capsys)
    for name in CLASSIFIED[command].files:
        assert (REPO / name).is_file(), f"{command!r} names {name}, which does not exist"


DOC_COMMANDS = sorted({c for page in PAGES if page != README for c in commands(page.read_text(encoding="utf-8"))})


@pytest.mark.parametrize("command", DOC_COMMANDS)
def test_docs_command_parses(command, capsys):
    parses(command, capsys)


# ---- run -------------------------------------------------------------------------------------------------------

def write_tiny_gguf(hf_dir: Path, out: Path) -> Path:
    """Write the tiny HF Llama at `hf_dir` as an F32 GGUF with the embedded model's tokenizer metadata, in
    llama.cpp's layout (q/k rows permuted as convert_hf_to_gguf does), so `--base FILE.gguf` and export work."""
    import gguf
    from safetensors.numpy import load_file

    from stylealign.export.lora_gguf import llama_permute
    from stylealign.models import embedded_gguf

    cfg = json.loads((hf_dir / "config.json").read_text())
    heads, kv_heads = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    rope = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    shape = {"llama.block_count": cfg["num_hidden_layers"], "llama.context_length": cfg["max_position_embeddings"],
             "llama.embedding_length": cfg["hidden_size"], "llama.feed_forward_length": cfg["intermediate_size"],
             "llama.attention.head_count": heads, "llama.attention.head_count_kv": kv_heads,
             "llama.rope.dimension_count": cfg["hidden_size"] // heads, "llama.rope.freq_base": float(rope),
             "llama.attention.layer_norm_rms_epsilon": float(cfg["rms_norm_eps"])}
    source = gguf.GGUFReader(str(embedded_gguf("smollm2-135m")))
    writer = gguf.GGUFWriter(str(out), "llama")
    for key, value in source.fields.items():
        if key.startswith("GGUF.") or key in ("general.architecture", "general.file_type", "general.quantization_version"):
            continue
        kind = value.types[0]
        sub = {"sub_type": value.types[-1]} if kind == gguf.GGUFValueType.ARRAY else {}
        writer.add_key_value(key, shape.get(key, value.contents()), kind, **sub)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    names = {"embed_tokens": "token_embd", "norm": "output_norm", "input_layernorm": "attn_norm",
             "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate",
             "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, weight in sorted(load_file(hf_dir / "model.safetensors").items()):
        if name == "lm_head.weight":
            writer.add_tensor("output.weight", np.ascontiguousarray(weight, dtype=np.float32))
            continue
        parts = name.removeprefix("model.").removesuffix(".weight").split(".")
        target = f"blk.{parts[1]}.{names['.'.join(parts[2:])]}" if parts[0] == "layers" else names[parts[0]]
        if name.endswith("q_proj.weight"):
            weight = llama_permute(weight, heads)
        elif name.endswith("k_proj.weight"):
            weight = llama_permute(weight, kv_heads)
        writer.add_tensor(target + ".weight", np.ascontiguousarray(weight, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def tiny_untied_model(like: Path, out: Path) -> Path:
    """Save the tiny random Llama of `like` (its config and tokenizer) with an LM head of its own: with the
    embeddings tied, a random model's greedy answer repeats the prompt's last token ("\\n") whatever its adapter,
    so no export check could tell adapter from base."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig.from_pretrained(like)
    config.tie_word_embeddings = False
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    AutoTokenizer.from_pretrained(like).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, tiny_model_dir):
    """Return a folder laid out like a checkout for the README's commands: personas/ (the shipped ones linked,
    new ones written here), eval/ (linked), a tiny base as a GGUF file, and a model cache of its own in which
    that file's HF conversion is the tiny model itself (converting 49k tokens of GGUF vocabulary takes ~20 s)."""
    from stylealign.models import files_sha256

    ws = tmp_path_factory.mktemp("readme")
    hf = tiny_untied_model(tiny_model_dir, ws / "tiny-hf")
    (ws / "personas").mkdir()
    for persona in (REPO / "personas").iterdir():
        if persona.is_dir():
            (ws / "personas" / persona.name).symlink_to(persona, target_is_directory=True)
    (ws / "eval").symlink_to(REPO / "eval", target_is_directory=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STYLEALIGN_HOME", str(ws / ".cache"))
        mp.delenv("STYLEALIGN_PERSONAS", raising=False)
        base = write_tiny_gguf(hf, ws / "tiny.gguf")
        shutil.copytree(hf, ws / ".cache" / "models" / f"gguf-{files_sha256([base])[:16]}")
        yield ws


RUNS = [pytest.param(c, marks=CLASSIFIED[c].marks, id=c[:90]) for c in README_COMMANDS
        if isinstance(CLASSIFIED.get(c), Run)]
PROGRESS = re.compile(r"\d+%\||\[A$|^\s*\[A")


@pytest.mark.parametrize("command", RUNS)
def test_readme_command_runs(command, workspace, capsys, monkeypatch):
    spec: Run = CLASSIFIED[command]
    monkeypatch.chdir(workspace)
    if spec.prepare:
        spec.prepare(workspace)
    argv = argv_of(command) + [a.replace("{base}", str(workspace / "tiny.gguf")) for a in spec.extra]
    capsys.readouterr()
    rc = main(argv)
    out, err = capsys.readouterr()
    err = "\n".join(line for line in err.replace("\r", "\n").splitlines() if line.strip() and not PROGRESS.search(line))
    saved = re.search(r"traceback saved to (\S+)", err)
    detail = err + ("\n" + Path(saved.group(1)).read_text() if saved and Path(saved.group(1)).exists() else "")
    assert rc in spec.codes, f"`stylealign {shlex.join(argv)}` exited {rc}:\n{detail[-4000:]}"
    assert "stylealign: error:" not in err and "internal error" not in err, detail[-4000:]
    for path in spec.makes:
        assert (workspace / path).exists(), f"{command!r} did not write {path}"
    if spec.check:
        assert spec.check(workspace, out, rc) is not False, out[-2000:]


def test_the_dpo_example_needs_the_1024_default(workspace, capsys, monkeypatch):
    """The README's `train dpo --init runs/sc-sft` passes on the shipped pairs because max_length is 1024: at the
    old default 512 the same command stops at validation on the Chinese pairs over 512 tokens."""
    monkeypatch.chdir(workspace)
    command = "stylealign train dpo --init runs/sc-sft --run runs/sc-dpo"
    extra = [a.replace("{base}", str(workspace / "tiny.gguf")) for a in CLASSIFIED[command].extra]
    capsys.readouterr()
    assert main([*argv_of(command), *extra, "--max-length", "512", "--run", "runs/sc-dpo-512"]) == 2
    too_long = [line for line in capsys.readouterr().err.splitlines() if "> max_length 512" in line]
    assert too_long and all("/pref_zh_" in line for line in too_long), too_long
    assert not (workspace / "runs" / "sc-dpo-512").exists()


# ---- links -----------------------------------------------------------------------------------------------------

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """Return GitHub's heading anchors of a Markdown file (lower case, punctuation dropped, spaces to '-')."""
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    found = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.replace("`", "").strip().lower()).replace(" ", "-")
        base, n = slug, 1
        while slug in found:
            slug, n = f"{base}-{n}", n + 1
        found.add(slug)
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    text = re.sub(r"^```.*?^```", "", page.read_text(encoding="utf-8"), flags=re.M | re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = unquote(target).partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target}: no such file")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(f"{target}: no heading #{anchor} in {file.relative_to(REPO)}")
    assert not broken, f"{page.relative_to(REPO)}: " + "; ".join(broken)


def test_readme_stays_a_readme():
    """For users: what it is, the two commands, a tour, one command per stage, links; the rest lives in docs/ and
    benchmarks/."""
    text = README.read_text(encoding="utf-8")
    assert len(text.encode()) <= 16_000
    assert "./run.sh main" in text and "./run.sh test" in text
    assert "English-centric" in text and "Chinese" in text and "benchmarks/CANDOR.md" in text

