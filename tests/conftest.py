"""Shared fixtures: a tiny random Llama with the embedded model's real tokenizer, and the embedded model.

Fast tests use the tiny model (2 layers, hidden 64) so they run in seconds on a CPU with no network;
tests marked `slow` use the embedded SmolLM2-135M (converted once into the cache).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing in the tests may reach a hub
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    """Return the cached HF folder of the embedded SmolLM2-135M-Instruct (converting it on first use)."""
    from stylealign.models import resolve_base

    return Path(resolve_base("smollm2-135m").path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir) -> Path:
    """Return a local HF folder holding a randomly initialised 2-layer Llama and the embedded tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(embedded_dir)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def tiny_recipe_overrides(tiny_model_dir) -> dict:
    """Return recipe overrides for a seconds-long run on the tiny model."""
    return {"base": str(tiny_model_dir), "quant": "none", "dtype": "fp32", "max_length": 512,
            "eval_fraction": 0.0, "sft.max_steps": 3, "sft.batch_size": 4, "sft.logging_steps": 1,
            "sft.learning_rate": 5e-3, "dpo.max_steps": 3, "dpo.batch_size": 2, "dpo.logging_steps": 1,
            "dpo.learning_rate": 5e-3, "lora.r": 4, "lora.alpha": 8}


SHIPPED = Path(__file__).resolve().parents[1] / "personas" / "sharp-candid"


def _rows(path_glob: str, n: int) -> list[str]:
    lines = []
    for f in sorted(SHIPPED.glob(path_glob)):
        lines += [line for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
    return lines[:n]


@pytest.fixture
def small_persona(tmp_path) -> Path:
    """Return a persona folder with a dozen of the shipped SFT rows and eight preference pairs."""
    folder = tmp_path / "mini"
    (folder / "data").mkdir(parents=True)
    text = (SHIPPED / "persona.yaml").read_text(encoding="utf-8").split("\ndata:")[0]
    (folder / "persona.yaml").write_text(text.replace("name: sharp-candid", "name: mini")
                                         + "\ndata:\n  sft: [data/sft.jsonl]\n  preference: [data/pref.jsonl]\n")
    (folder / "data" / "sft.jsonl").write_text("\n".join(_rows("data/sft_en_*.jsonl", 12)) + "\n", encoding="utf-8")
    (folder / "data" / "pref.jsonl").write_text("\n".join(_rows("data/pref_en_*.jsonl", 8)) + "\n", encoding="utf-8")
    return folder


# ---- no test leaves a process running --------------------------------------------------------------------------
# Children inherit the environment, so this mark finds a process started from this session even after its parent
# died and it was re-parented (the orphaned server a killed `stylealign serve` used to leave).
_MARK_NAME = "STYLEALIGN_TEST_SESSION"
os.environ[_MARK_NAME] = f"{os.getpid()}-{os.urandom(4).hex()}"
_MARK = f"{_MARK_NAME}={os.environ[_MARK_NAME]}".encode()


def _processes() -> dict[int, tuple[int, bool]]:
    """Return {pid: (parent pid, started from this session)} of the live processes (not zombies) other than
    this one, from /proc (empty where there is none)."""
    found = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/stat").exists() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state, ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:2]
            ours = int(ppid) == os.getpid() or _MARK in (entry / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError):  # gone meanwhile, or another user's
            continue
        if state != "Z":
            found[int(entry.name)] = (int(ppid), ours)
    return found


def _new_processes(before: set[int]) -> dict[int, str]:
    """Return {pid: command line} of the session's processes not in `before` (the session's at the test's
    start), leaving out those started by one that is (a module fixture's browser opening a renderer)."""
    procs, leaked = _processes(), {}
    for pid, (ppid, ours) in procs.items():
        ancestor = ppid
        while ancestor in procs and ancestor not in before:
            ancestor = procs[ancestor][0]
        if ours and pid not in before and ancestor not in before:
            try:
                leaked[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
    return leaked


@pytest.fixture(autouse=True)
def no_process_left_running():
    """Fail a test that leaves a process it started running (after a grace for ones on their way out), and kill
    what it left so the leak stops there."""
    before = {pid for pid, (_, ours) in _processes().items() if ours}
    yield
    deadline = time.monotonic() + 15
    while (leaked := _new_processes(before)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in leaked:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    if leaked:
        pytest.fail("the test left processes running (killed now): "
                    + "; ".join(f"{pid}: {cmd[:200]}" for pid, cmd in leaked.items()), pytrace=False)


# ---- a headless Chromium (Debian's; Playwright never downloads one) ---------------------------------------------
CHROMIUM = Path(os.environ.get("STYLEALIGN_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright import sync_api  # in the test extra: a missing install fails, never skips

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()
