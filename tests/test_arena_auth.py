"""`--auth` covers every route of the arena, not only those Gradio guards itself.

The app runs in-process on 127.0.0.1 (fake generator); every route Gradio registered is called with
httpx, first without a login (all refused bar the login page and its static files), then with
the cookie Gradio's own /login sets (none refused).
"""

import time

import gradio_client
import httpx
import pytest
from helpers import LOGIN, PUBLIC, free_port, log_in, refused, routes
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from stylealign.fakes import default_answer, fake_service
from stylealign.ui.app import build_app, launch_app


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    service = fake_service(tmp_path_factory.mktemp("arena") / "votes.sqlite", delay=0.05)
    demo = build_app(service)
    port = free_port()
    launch_app(demo, port=port, auth=":".join(LOGIN), block=False)
    yield service, demo, f"http://127.0.0.1:{port}"
    demo.close()


def test_every_route_but_the_login_page_needs_the_login(arena):
    _, demo, base = arena
    all_routes = routes(demo.server_app)
    for must_be_there in ["/gradio_api/cancel", "/gradio_api/reset", "/openapi.json", "/config",
                          "/gradio_api/file={path_or_url:path}", "/gradio_api/queue/join", "/gradio_api/upload"]:
        assert must_be_there in {p for _, p in all_routes}
    with httpx.Client(base_url=base, timeout=30) as anonymous:
        answered = [route for route in all_routes if not refused(anonymous, *route)]
        assert refused(anonymous, "GET", "/no/such/route")  # nothing to learn about the routes either
    assert set(answered) == PUBLIC & set(all_routes)
    assert anonymous_post_is_refused(base, "/gradio_api/cancel", {"session_hash": "s", "fn_index": 0, "event_id": "e"})

    with httpx.Client(base_url=base, timeout=30) as client:
        log_in(client)
        # /logout last: it ends the session the other calls ride on.
        walk = sorted(all_routes, key=lambda r: r[1] == "/logout")
        assert [route for route in walk if refused(client, *route)] == []


def anonymous_post_is_refused(base: str, path: str, body: dict) -> bool:
    return httpx.post(base + path, json=body, timeout=30).status_code == 401


def test_anonymous_cancel_cannot_stop_a_logged_in_users_generation(arena):
    service, demo, base = arena
    client = gradio_client.Client(base + "/", auth=LOGIN, verbose=False)
    job = client.submit("Is Rust worth it?", "calm", 1.0, api_name="/side_by_side")
    deadline = time.monotonic() + 20
    while not (job.communicator.event_id and service._generate_lock.locked()) and time.monotonic() < deadline:
        time.sleep(0.01)
    [fn_index] = [i for i, fn in demo.fns.items() if fn.api_name == "side_by_side"]
    ids = {"session_hash": client.session_hash, "fn_index": fn_index, "event_id": job.communicator.event_id}
    assert anonymous_post_is_refused(base, "/gradio_api/cancel", ids)
    assert anonymous_post_is_refused(base, "/gradio_api/reset", {"event_id": ids["event_id"]})
    left, right, status, _ = job.result(timeout=30)
    content = right[-1]["content"]
    text = content if isinstance(content, str) else "".join(c.get("text", "") for c in content)
    whole = default_answer([{"role": "user", "content": "Is Rust worth it?"}], "calm", 1.0)
    assert status == "Done." and text == whole  # the whole answer: nothing cancelled it


def test_websockets_need_the_login_too(arena):
    _, demo, _ = arena
    with pytest.raises(WebSocketDisconnect) as refused:
        with TestClient(demo.server_app).websocket_connect("/gradio_api/anything"):
            pass
    assert refused.value.code == 1008


def test_without_auth_nothing_changes(tmp_path):
    demo = build_app(fake_service(tmp_path / "v.sqlite"))
    port = free_port()
    launch_app(demo, port=port, block=False)
    try:
        assert not demo.server_app.user_middleware or all(
            m.cls.__name__ != "RequireLogin" for m in demo.server_app.user_middleware)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as anonymous:
            assert anonymous.get("/config").status_code == 200
            assert anonymous.post("/gradio_api/reset", json={"event_id": "e"}).status_code == 200
    finally:
        demo.close()
