"""Helpers several test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from stylealign.cli import main
from stylealign.files import read_jsonl
from stylealign.synth import log_path

ARTIFACTS = Path(__file__).parent / "artifacts"  # screenshots of the browser tests (gitignored)
PROGRESS = re.compile(r"\d+%\||\[A$|^\s*\[A")  # tqdm bars (weights, tokenizing, training steps)


def fails_with(capsys, argv: list[str], *phrases: str, code: int = 2) -> str:
    """Run the CLI in-process; assert exit `code` and, besides progress bars, exactly one `stylealign: error:`
    line holding `phrases` (so no traceback)."""
    rc = main(argv)
    err = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
           if line.strip() and not PROGRESS.search(line)]
    assert rc == code, err
    assert len(err) == 1 and err[0].startswith("stylealign: error: "), err
    for phrase in phrases:
        assert phrase in err[0], err[0]
    return err[0]


def tiny_trainer(stage: str, tiny_model_dir, small_persona, overrides: dict, out: Path):
    """Return the kit's SFT or DPO trainer on the tiny fp32 Llama and the small persona, under these recipe
    overrides; for DPO a PeftModel with a non-zero adapter (as after SFT), so policy and reference differ."""
    import torch

    from stylealign import models
    from stylealign.config import load_recipe
    from stylealign.personas import load_persona
    from stylealign.train import dpo_trainer, load_stage_data, sft_trainer

    recipe = load_recipe(None, overrides)
    torch.manual_seed(0)
    model = models.load_model(str(tiny_model_dir), quant="none", dtype="fp32")
    tok = models.load_tokenizer(str(tiny_model_dir))
    data = load_stage_data(load_persona(small_persona), stage, recipe, tok)
    if stage == "dpo":
        from peft import get_peft_model

        from stylealign.train import lora_config

        model = get_peft_model(model, lora_config(recipe))  # as after SFT: TRL adds the frozen "ref" copy
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.02, generator=torch.Generator().manual_seed(sum(map(ord, name))))
    return (sft_trainer if stage == "sft" else dpo_trainer)(model, tok, data, recipe, out)


def kill_after_two_decisions(cmd: list[str], out: Path, timeout: float, poll: float = 0.2) -> subprocess.Popen:
    """Run `stylealign synth` (cmd) and `kill -9` it once its log holds two decisions (or it ends, or `timeout`)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    try:  # the log appears with the first decision
        while len(read_jsonl(log_path(out), missing_ok=True)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(poll)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return proc


# ---- the browser apps behind a login -------------------------------------------------------------------------
LOGIN = ("alice", "s3cret")
# The login page and what it loads (checked in a browser), and startup-events, which launch() calls itself.
PUBLIC = {("GET", "/"), ("HEAD", "/"), ("POST", "/login"), ("POST", "/login/"), ("GET", "/theme.css"),
          ("GET", "/favicon.ico"), ("GET", "/assets/{path:path}"), ("GET", "/static/{path:path}"),
          ("GET", "/gradio_api/startup-events")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def routes(app) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, FastAPI's included routers flattened."""
    found, todo = set(), list(app.routes)
    while todo:
        route = todo.pop()
        todo += getattr(getattr(route, "original_router", None), "routes", [])
        found |= {(m, route.path) for m in getattr(route, "methods", None) or ()}
    return sorted(found)


def refused(client: httpx.Client, method: str, path: str) -> bool:
    """Whether a login check refused a request to the route (its path parameters filled in).

    Other 401s are the route's own business (run history wants a Hugging Face token); only the
    status and a 401's body are read, as some routes stream forever. A HEAD answer has no body.
    """
    url = re.sub(r"\{[^}]*\}", "x", path)
    with client.stream(method, url, json={} if method == "POST" else None) as response:
        return response.status_code == 401 and (method == "HEAD" or b"Not authenticated" in response.read())


def log_in(client: httpx.Client) -> None:
    """Log in through Gradio's own login route; the client keeps the cookie it sets."""
    response = client.post("/login", data=dict(zip(("username", "password"), LOGIN)))
    assert response.status_code == 200, response.text
