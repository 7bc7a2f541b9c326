"""Generation backends: the in-process `Generator`, or any OpenAI-compatible server.

A `Backend` answers conversations, each row with its own adapter (None = the base model). The
in-process `stylealign.generate.Generator` is one; `OpenAIBackend` is the other: it sends each row
to `/chat/completions` of a serving engine (vLLM, llama.cpp's server, llama-cpp-python's, a hosted
API), where adapters are model names on the server. Evaluation, arena contestants, the judge and
the synth teacher take either, so a real serving engine takes over when one machine is not enough.

Spec strings (`open_backend`): `openai:http://host:port/v1#MODEL` (MODEL = the base model's name on
the server), optionally with options after `?`: `openai:http://h:8000/v1#base?concurrency=8&timeout=60`.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Iterator, Protocol, runtime_checkable

from stylealign.errors import ConfigError, UserError

KEY_ENVS = ("STYLEALIGN_API_KEY", "OPENAI_API_KEY")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}
# Repetition penalty has no name in the OpenAI API: vLLM reads `repetition_penalty`, llama.cpp's
# servers `repeat_penalty`; both ignore the other's. `penalty=none` in the spec sends neither (for
# servers that reject unknown fields).
PENALTY_KEYS = ("repetition_penalty", "repeat_penalty")


@runtime_checkable
class Backend(Protocol):
    """Anything that answers conversations with per-row adapters; `Generator` is one."""

    def generate(self, conversations: list[list[dict]], adapters: list[str | None], config,
                 strengths: dict[str, float] | None = None, batch_size: int = 8, progress: bool = False,
                 stopped: list | None = None) -> list[str]:
        """Return one answer per conversation; adapters[i] None = the base model. A given `stopped`
        list receives, per conversation, whether its answer ended before the token budget."""


class BackendError(UserError, RuntimeError):
    """The server refused or failed a request after every retry (the message says what and where)."""


@dataclass(frozen=True)
class Endpoint:
    """How to reach one OpenAI-compatible server."""

    url: str  # base URL ending in /v1 (or the full /chat/completions URL)
    api_key: str | None = None
    timeout: float = 120.0  # seconds per request
    retries: int = 4  # extra attempts after the first, on connection errors, timeouts and 408/429/5xx
    backoff: float = 1.0  # first wait in seconds; doubles each retry (with jitter), capped at 30 s

    @property
    def chat_url(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/chat/completions") else base + "/chat/completions"


def api_key_from_env(envs: tuple[str, ...] = KEY_ENVS) -> str | None:
    """Return the first API key set among `envs`, else None (local servers need none)."""
    return next((os.environ[e] for e in envs if os.environ.get(e)), None)


def chat_completion(endpoint: Endpoint, body: dict) -> dict:
    """POST `body` to the endpoint's /chat/completions and return the decoded reply, retrying with
    exponential backoff on transient failures; raises BackendError naming the URL and the cause."""
    data = json.dumps(body).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    attempt = 0
    while True:
        try:
            req = urllib.request.Request(endpoint.chat_url, data=data, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=endpoint.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as e:
            detail = _error_text(e)
            if e.code not in RETRY_STATUS or attempt == endpoint.retries:
                raise BackendError(f"{endpoint.chat_url}: HTTP {e.code}: {detail}") from None
            wait = _retry_after(e)
            wait = _backoff(endpoint.backoff, attempt) if wait is None else wait
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as e:
            if attempt == endpoint.retries:
                reason = getattr(e, "reason", e)
                raise BackendError(f"{endpoint.chat_url}: {reason} (after {attempt + 1} attempts; "
                                   "is the server running? see --backend)") from None
            wait = _backoff(endpoint.backoff, attempt)
        time.sleep(wait)
        attempt += 1


def _backoff(first: float, attempt: int) -> float:
    return min(30.0, first * 2 ** attempt) * (0.5 + random.random() / 2)


def _retry_after(e: urllib.error.HTTPError) -> float | None:
    try:
        return min(60.0, float(e.headers.get("Retry-After")))
    except (TypeError, ValueError):
        return None


def _error_text(e: urllib.error.HTTPError) -> str:
    try:
        text = e.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    try:
        err = json.loads(text).get("error", text)
        text = err.get("message", err) if isinstance(err, dict) else err
    except (ValueError, AttributeError):
        pass
    return " ".join(str(text).split())[:300] or e.reason


def reply_text(reply: dict) -> str:
    """Return the assistant text of a chat completion reply ("" when the server sent none)."""
    try:
        return (reply["choices"][0]["message"].get("content") or "").strip()
    except (KeyError, IndexError, TypeError, AttributeError):
        raise BackendError(f"not a chat completion reply: {json.dumps(reply)[:200]}") from None


class OpenAIBackend:
    """A Backend over one OpenAI-compatible server: the base and each adapter are model names there.

    `adapter_models` maps adapter names to served model names (default: the same name, which is what
    `stylealign serve` and the documented vLLM command register). Rows run `concurrency` at a time.
    """

    def __init__(self, url: str, model: str, adapter_models: dict[str, str] | None = None,
                 api_key: str | None = None, concurrency: int = 4, timeout: float = 120.0, retries: int = 4,
                 backoff: float = 1.0, penalty_keys: tuple[str, ...] = PENALTY_KEYS):
        if concurrency < 1:
            raise ConfigError("concurrency must be >= 1")
        self.endpoint = Endpoint(url, api_key or api_key_from_env(), timeout, retries, backoff)
        self.base, self.concurrency, self.penalty_keys = model, concurrency, tuple(penalty_keys)
        self.adapter_models = dict(adapter_models or {})
        self.lock = threading.Lock()

    @property
    def adapter_names(self) -> list[str]:
        return list(self.adapter_models)

    def add_adapter(self, name: str, path: str | None = None, model: str | None = None) -> None:
        """Register adapter `name`, served as `model` (default `name`); `path` is the run, for the record."""
        self.adapter_models[name] = model or name

    def model_for(self, adapter: str | None) -> str:
        """Return the served model name for an adapter (None = the base)."""
        if adapter is None:
            return self.base
        return self.adapter_models.get(adapter, adapter)

    def request_body(self, conversation: list[dict], adapter: str | None, config) -> dict:
        """Return the /chat/completions body for one row under a GenerationConfig."""
        body = {"model": self.model_for(adapter), "messages": [dict(role=t["role"], content=t["content"]) for t in conversation],
                "max_tokens": config.max_new_tokens, "seed": config.seed,
                "temperature": config.temperature if config.do_sample else 0.0,
                "top_p": config.top_p if config.do_sample else 1.0}
        # Sent even at 1.0: llama-cpp-python's server applies 1.1 to requests that leave it out.
        body.update({k: config.repetition_penalty for k in self.penalty_keys})
        return body

    def complete(self, conversation: list[dict], adapter: str | None, config) -> tuple[str, bool]:
        """Return the server's answer for one row and whether it ended before the token budget."""
        reply = chat_completion(self.endpoint, self.request_body(conversation, adapter, config))
        return reply_text(reply), reply["choices"][0].get("finish_reason") != "length"

    def generate(self, conversations, adapters, config, strengths=None, batch_size: int = 8,
                 progress: bool = False, stopped: list | None = None) -> list[str]:
        """Return one answer per conversation, `concurrency` requests in flight (batch_size is the
        in-process batch; a server batches concurrent requests itself). A given `stopped` list
        receives, per conversation, whether its answer ended before the budget (finish_reason)."""
        from tqdm.auto import tqdm

        if len(adapters) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(adapters)} adapter entries")
        check_strengths(strengths)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool, \
                tqdm(total=len(conversations), desc="generating", unit="answer", disable=not progress) as bar:
            futures = [pool.submit(self.complete, c, a, config) for c, a in zip(conversations, adapters)]
            results = []
            for f in futures:
                results.append(f.result())
                bar.update(1)
        if stopped is not None:
            stopped[:] = [end for _, end in results]
        return [text for text, _ in results]

    def stream(self, conversations, adapters, config, strengths=None) -> Iterator[list[str]]:
        """Yield the answers as they complete (rows still running show ""), then the full set."""
        check_strengths(strengths)
        texts = [""] * len(conversations)
        with ThreadPoolExecutor(max_workers=self.concurrency) as pool:
            futures = {pool.submit(self.complete, c, a, config): i for i, (c, a) in enumerate(zip(conversations, adapters))}
            for f in as_completed(futures):
                texts[futures[f]] = f.result()[0]
                yield list(texts)


def check_strengths(strengths: dict[str, float] | None) -> None:
    """Raise ValueError for a LoRA strength other than 1: a server applies adapters as served."""
    odd = {k: v for k, v in (strengths or {}).items() if float(v) != 1.0}
    if odd:
        raise ConfigError(f"LoRA strengths {odd} need the in-process backend: a server applies its adapters as "
                         "served (llama.cpp: serve with --lora-scaled FILE:SCALE instead)")


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Return (url, model, options) from `openai:URL#MODEL[?key=value&...]`; ValueError says how to fix it."""
    kind, _, rest = spec.partition(":")
    url, _, model_part = rest.rpartition("#")
    model, _, query = model_part.partition("?")
    if kind != "openai" or not url or not model or not url.startswith(("http://", "https://")):
        raise ConfigError(f"bad backend spec {spec!r}: use openai:http://HOST:PORT/v1#MODEL "
                         "(MODEL = the base model's name on the server)")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = set(options) - {"concurrency", "timeout", "retries", "backoff", "penalty"}
    if unknown:
        raise ConfigError(f"backend spec {spec!r}: unknown option(s) {sorted(unknown)}; "
                         "known: concurrency, timeout, retries, backoff, penalty")
    return url, model, options


def open_backend(spec: str, adapter_models: dict[str, str] | None = None, api_key: str | None = None) -> OpenAIBackend:
    """Return the backend a spec names (see the module docstring); ValueError on a bad spec."""
    url, model, opts = parse_spec(spec)
    penalty = opts.get("penalty")
    keys = PENALTY_KEYS if penalty is None else tuple(k for k in penalty.split(",") if k and k != "none")
    try:
        return OpenAIBackend(url, model, adapter_models, api_key=api_key, concurrency=int(opts.get("concurrency", 4)),
                             timeout=float(opts.get("timeout", 120)), retries=int(opts.get("retries", 4)),
                             backoff=float(opts.get("backoff", 1.0)), penalty_keys=keys)
    except ValueError as e:
        raise ConfigError(f"backend spec {spec!r}: {e}") from None


def backend_for_runs(spec: str, runs: list[str]) -> OpenAIBackend:
    """Return the backend for `spec` with each run registered under its folder name, which is the
    model name `stylealign serve` and the documented vLLM command give its adapter."""
    from pathlib import Path

    from stylealign.generate import unique_name

    backend = open_backend(spec)
    for run in runs:
        backend.add_adapter(unique_name(Path(run).resolve().name, backend.adapter_names), run)
    return backend
