"""A real headless Chromium drives the arena page: side by side, a blind vote, the leaderboard.

Needs Debian's chromium at /usr/bin/chromium (never downloaded by Playwright). Without it the test
fails when CI is set and skips locally. Screenshots go to tests/artifacts/ (gitignored).
"""

import re
import socket

import pytest
from helpers import ARTIFACTS

from stylealign.fakes import HEDGY, fake_service
from stylealign.ui.app import build_app, launch_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def arena(tmp_path_factory):
    service = fake_service(tmp_path_factory.mktemp("arena") / "votes.sqlite", delay=0.01)
    demo = build_app(service)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch_app(demo, port=port, block=False)
    yield service, f"http://127.0.0.1:{port}/"
    demo.close()


def assistant_text(page, pane: str) -> str:
    """Return the text of the last bot message in a chat pane ("" if none yet)."""
    bots = page.locator(f"#{pane} .message.bot")
    return bots.last.inner_text() if bots.count() else ""


def test_page_side_by_side_vote_and_leaderboard(browser, arena):
    from playwright.sync_api import expect

    service, url = arena
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 960})
    page.goto(url)

    page.locator("#sbs-input textarea").fill("Should I rewrite our backend in Rust?")
    page.click("#sbs-send")
    expect(page.locator("#status")).to_contain_text("Done.", timeout=20_000)
    left, right = assistant_text(page, "left-pane"), assistant_text(page, "right-pane")
    assert left == HEDGY["en"]
    assert right and right != left
    page.screenshot(path=str(ARTIFACTS / "arena.png"), full_page=True)

    page.get_by_role("tab", name="Blind battle").click()
    page.locator("#battle-input textarea").fill("Tabs or spaces?")
    page.click("#battle-send")
    expect(page.locator("#battle-status")).to_contain_text("which is better", timeout=20_000)
    assert assistant_text(page, "pane-a") and assistant_text(page, "pane-b")
    assert page.locator("#reveal").inner_text().strip() == ""  # nothing revealed before the vote
    page.click("#vote-A")
    expect(page.locator("#reveal")).to_contain_text("was", timeout=10_000)
    battle = service.battles.get(next(iter(service.battles._by_session)))
    assert re.search(rf"A\s+was\s+{battle.model_a}", page.locator("#reveal").inner_text())
    page.screenshot(path=str(ARTIFACTS / "arena-battle.png"), full_page=True)

    page.get_by_role("tab", name="Leaderboard").click()
    expect(page.get_by_text("1 vote.")).to_be_visible(timeout=20_000)
    table = page.locator("#ratings")
    for name in service.names:
        expect(table).to_contain_text(name)
    assert len(service.store) == 1 and service.store.all()[0].winner == "A"
    page.screenshot(path=str(ARTIFACTS / "arena-leaderboard.png"), full_page=True)
    page.close()


def test_login_page_works_behind_the_login_on_every_route(browser, tmp_path):
    """With --auth every route but the login page and its static files is refused: the page must still
    render its form from those alone, and after the login the app must work."""
    from playwright.sync_api import expect

    demo = build_app(fake_service(tmp_path / "votes.sqlite", delay=0.01))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch_app(demo, port=port, auth="alice:s3cret", block=False)
    page = browser.new_page()
    refused = []
    page.on("response", lambda r: r.status == 401 and refused.append(r.url))
    try:
        page.goto(f"http://127.0.0.1:{port}/")
        page.locator("input[type=password]").fill("s3cret")
        page.locator("input[type=text]").first.fill("alice")
        assert refused == []  # the login page loaded nothing the login guards
        page.get_by_role("button", name="Login").click()
        page.locator("#sbs-input textarea").fill("hello?")
        page.click("#sbs-send")
        expect(page.locator("#status")).to_contain_text("Done.", timeout=20_000)
        assert refused == []
    finally:
        page.close()
        demo.close()
