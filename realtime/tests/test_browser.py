"""The scoreboard page in headless Chromium against a real Daphne server."""

import json
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connections

from realtime.tests.conftest import db_rows, give_points, server_env
from tests.faults import Daphne, access_token, new_action_id

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.needs_postgres,  # the server process must see the test's database
    pytest.mark.django_db(transaction=True),
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(settings.BASE_DIR) / "test-artifacts"
PHONE = {"width": 390, "height": 844}

# Records which rows the page highlighted, whatever happens to the class later.
WATCH_HIGHLIGHTS = """() => {
  window.highlighted = [];
  new MutationObserver((mutations) => {
    for (const m of mutations) {
      if (m.type === "attributes" && m.target.classList.contains("changed")) {
        window.highlighted.push(m.target.getAttribute("data-user-id"));
      }
    }
  }).observe(document.querySelector("#board tbody"),
             {subtree: true, attributes: true, attributeFilter: ["class"]});
}"""


@pytest.fixture
def browser(monkeypatch):
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API leaves its event loop marked as running on this thread.
    # The ORM calls the test makes between browser steps are plain blocking calls and
    # safe, but Django then keeps their connection per context rather than per
    # thread: it is closed here, or it would hold the test database open.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            connections.close_all()
            chromium.close()


@pytest.fixture
def players(make_user):
    from scores.models import ActionType

    ActionType.objects.create(code="win", name="Win a match", points=100)
    names = ["alice", "bob", "carol", "<b>mallory</b>"]
    made = {}
    for name, points in zip(names, [500, 400, 350, 200], strict=True):
        made[name] = make_user(name)
        give_points(made[name], points)
    return made


@pytest.fixture
def server(players):
    daphne = Daphne(settings.REDIS_URL, extra_env=server_env()).start()
    yield daphne
    daphne.stop()


def shown_rows(page) -> list[tuple[str, str, str, str]]:
    return [
        (
            row.get_attribute("data-user-id"),
            row.locator("td.rank").inner_text(),
            row.locator("td.name").inner_text(),
            row.locator("td.score").inner_text(),
        )
        for row in page.locator("#board tbody tr[data-user-id]").all()
    ]


def expected_rows() -> list[tuple[str, str, str, str]]:
    from scores.selectors import top_rows_from_db

    return [
        (row["user_id"], str(row["rank"]), row["username"], str(row["score"]))
        for row in top_rows_from_db()
    ]


def test_page_updates_live_and_recovers_after_a_server_restart(browser, server, players):
    from playwright.sync_api import expect

    page = browser.new_page(viewport=PHONE)
    page.goto(f"{server.base}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert shown_rows(page) == expected_rows()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    page.evaluate("window.sameDocument = true")
    page.evaluate(WATCH_HIGHLIGHTS)

    carol = players["carol"]
    response = httpx.post(
        f"{server.base}/api/scores/update",
        json={"action_id": new_action_id(), "action": "win"},
        headers={"Authorization": f"Bearer {access_token(carol)}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text

    row = page.locator(f'#board tr[data-user-id="{carol.pk}"]')
    expect(row.locator("td.score")).to_have_text("450")
    expect(row.locator("td.rank")).to_have_text("2")
    assert shown_rows(page) == expected_rows()
    page.wait_for_function("id => window.highlighted.includes(id)", arg=str(carol.pk))
    assert page.evaluate("window.sameDocument") is True  # no reload
    assert page.locator("#board b").count() == 0  # the name stayed text
    page.screenshot(path=str(ARTIFACTS / "scoreboard-live.png"), full_page=True)

    server.stop()
    expect(page.locator("#connection")).to_have_attribute("data-state", "offline")
    give_points(players["bob"], 300)  # the board changes while the page cannot hear it
    server.start()

    bob = page.locator(f'#board tr[data-user-id="{players["bob"].pk}"]')
    expect(bob.locator("td.score")).to_have_text("700", timeout=30_000)
    expect(bob.locator("td.rank")).to_have_text("1")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    assert shown_rows(page) == expected_rows()
    assert page.locator("#total-players").inner_text() == "4"
    assert page.evaluate("window.sameDocument") is True
    page.screenshot(path=str(ARTIFACTS / "scoreboard-reconnected.png"), full_page=True)


def test_page_without_javascript_shows_the_top_ten(browser, server, make_user):
    for index in range(8):  # 12 players in all: the page shows ten
        give_points(make_user(f"extra{index}"), 10 + index)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()

    page.goto(f"{server.base}/")

    rows = shown_rows(page)
    assert rows == expected_rows()
    assert [(user_id, int(score)) for user_id, _, _, score in rows] == db_rows()
    assert len(rows) == 10
    assert page.locator("#total-players").inner_text() == "12"
    assert page.locator("#connection").inner_text() == "Not live"
    assert "<b>mallory</b>" in [name for _, _, name, _ in rows]
    page.screenshot(path=str(ARTIFACTS / "scoreboard-no-javascript.png"), full_page=True)
    context.close()


@pytest.mark.needs_redis  # the test talks to the server's sockets over the shared layer
def test_page_checks_versions_and_resyncs_only_after_a_missed_message(browser, server, players):
    from playwright.sync_api import expect

    from realtime.broadcast import LEADERBOARD_GROUP, sender, update_message
    from scores.board import leaderboard_snapshot

    page = browser.new_page()
    sent, received = [], []

    def watch(socket) -> None:
        socket.on("framesent", lambda frame: sent.append(frame))
        socket.on("framereceived", lambda frame: received.append(json.loads(frame)))

    page.on("websocket", watch)
    page.goto(f"{server.base}/")
    expect(page.locator("#connection")).to_have_attribute("data-state", "live")
    shown = int(page.locator("#board").get_attribute("data-version"))
    board = leaderboard_snapshot()
    first = page.locator("#board tbody tr").first.locator("td.score")

    def push(version: int, previous: int, top_score: int) -> None:
        rows = [dict(row) for row in board["leaderboard"]]
        rows[0]["score"] = top_score
        message = {**board, "leaderboard": rows, "version": version, "previous_version": previous}
        sender().group_send(LEADERBOARD_GROUP, update_message(message))

    push(shown + 10, shown, 1111)  # versions skip, but nothing was missed
    expect(first).to_have_text("1111")
    page.wait_for_timeout(1200)  # longer than the page's minimum gap between resyncs
    assert sent == []

    push(shown + 20, shown + 15, 2222)  # the message for shown + 15 never arrived
    expect(first).to_have_text("2222")
    page.wait_for_function("() => true")  # let the page's handler finish
    for _ in range(100):
        if sent:
            break
        page.wait_for_timeout(50)
    assert [json.loads(frame) for frame in sent] == [{"type": "resync"}]

    # The answer is the real board, older than the one shown: the page keeps its board.
    for _ in range(100):
        if received[-1]["type"] == "leaderboard_snapshot":
            break
        page.wait_for_timeout(50)
    assert received[-1]["type"] == "leaderboard_snapshot"
    assert received[-1]["version"] < shown + 20
    page.wait_for_timeout(300)
    expect(first).to_have_text("2222")
    assert page.locator("#board").get_attribute("data-version") == str(shown + 20)
