"""The Gradio app driven over its API (gradio_client) on 127.0.0.1, backed by the fake generator."""

import socket
import time

import gradio_client  # in the test extra: a missing install fails, never skips
import pytest

from stylealign.fakes import HEDGY, fake_service  # noqa: E402
from stylealign.ui.app import build_app, launch_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def text(chat: list[dict], i: int = -1) -> str:
    """Return the text of message i from a Chatbot value as the API returns it."""
    content = chat[i]["content"]
    return content if isinstance(content, str) else "".join(c.get("text", "") for c in content)


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    service = fake_service(tmp_path_factory.mktemp("arena") / "votes.sqlite", delay=0.02)
    demo = build_app(service, concurrency=3)
    port = free_port()
    launch_app(demo, host="127.0.0.1", port=port, block=False)
    yield service, demo, f"http://127.0.0.1:{port}/"
    demo.close()


@pytest.fixture
def client(arena):
    return gradio_client.Client(arena[2], verbose=False)


def test_binds_localhost_with_a_limited_queue(arena):
    _, demo, url = arena
    assert demo.server_name == "127.0.0.1" and url.startswith("http://127.0.0.1:")
    assert demo.share is False or demo.share is None
    assert demo._queue.default_concurrency_limit == 3
    generate = [d for d in demo.fns.values() if d.concurrency_id == "generate"]
    assert generate and all(d.concurrency_limit == 1 for d in generate)


def test_side_by_side_streams_and_strength_zero_is_the_baseline(client):
    job = client.submit("Is Rust worth it?", "calm", 1.0, api_name="/side_by_side")
    updates = list(job)
    left, right, status, box = job.result()
    assert len(updates) > 2 and status == "Done." and box == ""
    assert text(left) == HEDGY["en"] and text(right) != text(left)
    left0, right0, *_ = client.predict("Is Rust worth it?", "calm", 0.0, api_name="/side_by_side")
    assert text(right0) == text(left0)


def test_generation_error_is_shown_and_the_app_keeps_running(client):
    left, right, status, _ = client.predict("make it FAIL", "calm", 1.0, api_name="/side_by_side")
    assert "generation failed" in status and "generation failed" in text(right)
    client.predict(api_name="/clear")
    left, right, status, _ = client.predict("and now?", "calm", 1.0, api_name="/side_by_side")
    assert status == "Done." and len(left) == 2


def test_blind_battle_vote_reveal_and_leaderboard(arena, client):
    service = arena[0]
    before = len(service.store)
    early = client.predict(api_name="/vote_A")
    assert "Start a battle" in early[0] and early[1] == ""
    job = client.submit("Tabs or spaces?", api_name="/battle")
    while not service.battles.get(client.session_hash) or not service.battles.get(client.session_hash).busy:
        time.sleep(0.01)
    status, reveal = client.predict(api_name="/vote_B")
    assert "complete" in status and reveal == ""  # refused server-side while answers stream
    a, b, status, reveal, _ = job.result()
    assert text(a) and text(b) and "which is better" in status and reveal == ""
    status, reveal = client.predict(api_name="/vote_B")
    battle = service.battles.get(client.session_hash)
    assert "recorded" in status and battle.model_a in reveal and battle.model_b in reveal
    assert len(service.store) == before + 1
    table, matrix, note = client.predict(False, 0, api_name="/leaderboard")
    rows = {r[1]: r for r in table["data"]}
    assert set(rows) == set(service.names)
    assert rows[battle.model_b][4] >= 1  # battles column
    assert f"{before + 1} vote" in note


def test_auth_is_enforced(tmp_path):
    demo = build_app(fake_service(tmp_path / "v.sqlite"))
    port = free_port()
    launch_app(demo, port=port, auth="alice:s3cret", block=False)
    try:
        with pytest.raises(Exception):
            gradio_client.Client(f"http://127.0.0.1:{port}/", verbose=False)
        client = gradio_client.Client(f"http://127.0.0.1:{port}/", auth=("alice", "s3cret"), verbose=False)
        left, right, status, _ = client.predict("hi", "calm", 1.0, api_name="/side_by_side")
        assert status == "Done."
    finally:
        demo.close()
