"""The scoreboard page as the server renders it (what a browser without JavaScript shows)."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings

from realtime.tests.conftest import db_rows, give_points
from scores.board import leaderboard_snapshot

# Committed writes: the board refresh runs on commit, and the rank index is rebuilt by
# a background thread that must see the rows.
pytestmark = pytest.mark.django_db(transaction=True)

STATIC = Path(settings.BASE_DIR) / "static"


class BoardParser(HTMLParser):
    """Collects the board rows, every tag, and every asset URL of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.tags: list[tuple[str, dict]] = []
        self._cell: str | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if tag == "tr" and "data-user-id" in attributes:
            self.rows.append({"user_id": attributes["data-user-id"]})
        elif tag == "td" and self.rows and attributes.get("class") in {"rank", "name", "score"}:
            self._cell = attributes["class"]
            self.rows[-1][self._cell] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell:
            self.rows[-1][self._cell] += data


def parse(html: str) -> BoardParser:
    parser = BoardParser()
    parser.feed(html)
    return parser


def test_page_renders_the_top_ten_on_the_server(client, ranked_players):
    ranked_players(12)

    response = client.get("/")

    assert response.status_code == 200
    page = parse(response.content.decode())
    assert [(row["user_id"], int(row["score"])) for row in page.rows] == db_rows()
    assert [int(row["rank"]) for row in page.rows] == list(range(1, 11))
    board = leaderboard_snapshot()
    assert response.context["board"]["version"] == board["version"]
    assert f'data-version="{board["version"]}"' in response.content.decode()
    assert '<span id="total-players">12</span>' in response.content.decode()


def test_empty_board_says_so(client):
    response = client.get("/")

    assert response.status_code == 200
    assert parse(response.content.decode()).rows == []
    assert b"No scores yet." in response.content


def test_player_names_are_escaped(client, make_user):
    name = '<img src=x onerror="alert(1)">&co'
    give_points(make_user(name), 10)

    response = client.get("/")

    html = response.content.decode()
    assert "<img" not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;co" in html
    assert parse(html).rows[0]["name"] == name


def test_page_loads_only_its_own_assets(client):
    page = parse(client.get("/").content.decode())

    urls = [attrs.get("src") or attrs.get("href") for _, attrs in page.tags]
    urls = [url for url in urls if url]
    assert sorted(urls) == ["/static/scoreboard.css", "/static/scoreboard.js"]
    for url in urls:
        assert client.get(url).status_code == 200


def test_page_is_laid_out_for_phones(client):
    page = parse(client.get("/").content.decode())

    viewport = [attrs for tag, attrs in page.tags if attrs.get("name") == "viewport"]
    assert viewport == [{"name": "viewport", "content": "width=device-width, initial-scale=1"}]
    assert "@media (max-width:" in (STATIC / "scoreboard.css").read_text()


def test_script_never_writes_html():
    script = (STATIC / "scoreboard.js").read_text()

    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write", script)
    assert "textContent" in script


def test_page_is_get_only(client):
    assert client.post("/").status_code == 405
