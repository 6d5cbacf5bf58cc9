"""Hostile input on a live Daphne: 4xx or a closed socket, never a 5xx or a stuck process."""

import asyncio
import json
import time

import httpx
import pytest

from tests.faults import (
    LIVE_SERVER_MARKS,
    Daphne,
    RedisServer,
    WsClient,
    access_token,
    new_action_id,
)

pytestmark = LIVE_SERVER_MARKS

BIG_NUMBERS = [0, -1, 2**31, 2**63, -(2**63), 2**64, 10**400, 1e308, -0.0, 0.5, True, None]
NUMBER_TEXTS = ["NaN", "Infinity", "-Infinity", "1e999", "0x10", "٣", "1_000"]


@pytest.fixture
def live():
    from django.contrib.auth.models import Permission

    from accounts.models import User
    from scores.models import ActionType

    ActionType.objects.create(code="win", name="Win", points=100)
    player = User.objects.create(username="target", password="!")
    server = User.objects.create(username="gameserver", password="!")
    server.user_permissions.add(Permission.objects.get(codename="award_points"))
    redis_server = RedisServer().start()
    daphne = Daphne(redis_server.url).start()
    yield daphne, player, server
    daphne.stop()
    redis_server.kill()


def raw_json_bodies() -> list[str]:
    """Bodies a JSON encoder would never write: NaN, huge literals, deep nesting."""
    bodies = [
        '{"action_id": "x1", "action": "win", "user_id": NaN}',
        '{"action_id": NaN, "action": "win"}',
        '{"action_id": "x1", "action": Infinity}',
        '{"action_id": "x1", "action": "win", "timestamp": 1e999}',
        '{"action_id": "x1", "action": "win", "timestamp": ' + "9" * 5000 + "}",
        "[" * 60_000 + "]" * 60_000,
        '{"a":' * 20_000 + "1" + "}" * 20_000,
        '{"action_id": "x1", "action": "win"',
        "\x00\xff\xfe",
        '"just a string"',
        "12345678901234567890",
        "null",
        "",
    ]
    return bodies


def check(response: httpx.Response, what: str, *, read: bool = False) -> None:
    """A write must be refused (4xx, error shape); a read may also answer 200. Never 5xx."""
    low = 200 if read else 400
    assert low <= response.status_code < 500, (what[:200], response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) >= {"error", "detail"}, body


def test_hostile_http_input(live):
    from scores.models import Score, ScoreEvent

    daphne, player, server = live
    client = httpx.Client(base_url=daphne.base, timeout=20)
    player_auth = {"Authorization": f"Bearer {access_token(player)}"}
    server_auth = {"Authorization": f"Bearer {access_token(server)}"}

    for value in [*BIG_NUMBERS, *NUMBER_TEXTS, [], {}, [1], {"$gt": ""}]:
        # Strings are valid action ids and (unknown) action codes; anything else is not.
        fields = ("user_id", "timestamp")
        if not isinstance(value, str):
            fields += ("action_id", "action")
        for field in fields:
            body = {"action_id": new_action_id(), "action": "win", field: value}
            check(client.post("/api/scores/update", json=body, headers=player_auth), repr(body))
        for extra in ("points", "score", "score_increment"):
            body = {"action_id": new_action_id(), "action": "win", extra: value}
            check(client.post("/api/scores/update", json=body, headers=player_auth), repr(body))
        body = {
            "user_id": str(player.pk),
            "action_id": new_action_id(),
            "points": value,
            "reason": "fuzz",
        }
        check(client.post("/api/scores/award", json=body, headers=server_auth), repr(body))
        check(
            client.get(f"/api/scores/players/{player.pk}", params={"around": str(value)}),
            f"around={value!r}",
            read=True,
        )
        check(
            client.get(
                "/api/scores/history",
                params={"page_size": str(value), "cursor": str(value)},
                headers=player_auth,
            ),
            f"history {value!r}",
            read=True,
        )

    for raw in raw_json_bodies():
        for path, auth in (("/api/scores/update", player_auth), ("/api/scores/award", server_auth)):
            response = client.post(
                path, content=raw.encode(), headers={**auth, "Content-Type": "application/json"}
            )
            check(response, raw)
    # Bodies past the 64 KiB limit, and in a type the API does not speak.
    big = json.dumps({"action_id": "x" * (2 * 1024 * 1024), "action": "win"})
    check(
        client.post(
            "/api/scores/update",
            content=big,
            headers={**player_auth, "Content-Type": "application/json"},
        ),
        "2 MiB",
    )
    check(
        client.post(
            "/api/scores/update",
            content="action=win",
            headers={**player_auth, "Content-Type": "application/x-www-form-urlencoded"},
        ),
        "form",
    )
    # Tokens that are not tokens.
    for token in [
        ".",
        "a" * 10_000,
        "e30.e30.",
        "eyJhbGciOiJub25lIn0.eyJ1c2VyX2lkIjoxfQ.",
        "\u00e9",
    ]:
        headers = {"Authorization": f"Bearer {token}".encode()}
        check(client.post("/api/scores/update", json={}, headers=headers), f"token {token[:20]}")
    # Paths that are not ids.
    for path in ["/api/scores/players/0", "/api/scores/players/-1", "/api/scores/players/NaN"]:
        check(client.get(path), path, read=True)

    # Nothing was counted, and the service is fine.
    assert ScoreEvent.objects.count() == 0
    assert Score.objects.filter(total__gt=0).count() == 0
    assert client.get("/readyz").status_code == 200
    assert daphne.server_errors() == [], daphne.server_errors()
    client.close()


async def ws_send_and_wait_close(url: str, origin: str, frame) -> int | None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async with connect(url, origin=origin, max_size=None) as ws:
        await ws.recv()  # the snapshot
        try:
            await ws.send(frame)
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd else None
    return None


def test_hostile_websocket_frames(live):
    daphne, _player, _server = live
    origin = daphne.base
    # A 2 MiB frame is refused by Daphne (1 MiB limit); an 8 KiB one by the consumer.
    code = asyncio.run(ws_send_and_wait_close(daphne.ws_url, origin, "x" * (2 * 1024 * 1024)))
    assert code in (1009, 1006, None)
    code = asyncio.run(ws_send_and_wait_close(daphne.ws_url, origin, json.dumps({"p": "x" * 8192})))
    assert code == 4009

    # Junk frames get error frames, and the socket stays usable.
    client = WsClient(daphne.ws_url).start()
    for frame in ["not json", "[]", '{"type": 1}', '{"type": "resync"', "null", "1e999"]:
        start = len(client.messages)
        client.send(frame)
        client.wait_for(lambda m: m["type"] == "error", 5, start)
    start = len(client.messages)
    client.send('{"type": "resync"}')
    client.wait_for(lambda m: m["type"] == "leaderboard_snapshot", 5, start)
    client.close()


def test_websocket_flood_does_not_stall_the_server(live):
    daphne, player, _server = live
    watcher = WsClient(daphne.ws_url).start()
    flooder = WsClient(daphne.ws_url).start()

    async def flood() -> int:
        sent = 0
        loop_start = time.monotonic()
        for second in range(3):
            for _ in range(1000):
                if flooder._ws is None:
                    return sent
                try:
                    await flooder._ws.send('{"type": "resync"}')
                except Exception:  # closed by the server: a legitimate answer
                    return sent
                sent += 1
            await asyncio.sleep(max(0.0, loop_start + second + 1 - time.monotonic()))
        return sent

    future = asyncio.run_coroutine_threadsafe(flood(), flooder._loop)
    # While the flood runs, the server answers others promptly.
    latencies = []
    time.sleep(0.3)
    for _ in range(10):
        began = time.monotonic()
        assert httpx.get(f"{daphne.base}/healthz", timeout=5).status_code == 200
        latencies.append(time.monotonic() - began)
        time.sleep(0.1)
    start = len(watcher.messages)
    response = httpx.post(
        f"{daphne.base}/api/scores/update",
        json={"action_id": new_action_id(), "action": "win"},
        headers={"Authorization": f"Bearer {access_token(player)}"},
        timeout=10,
    )
    assert response.status_code == 200
    watcher.wait_for(lambda m: m["type"] == "leaderboard_update", 5, start)
    sent = future.result(30)
    print("flood sent", sent, "frames; healthz latencies", latencies)
    assert max(latencies) < 1.0, latencies
    assert sent > 0
    # Afterwards the server is still fine.
    assert httpx.get(f"{daphne.base}/readyz", timeout=5).status_code == 200
    assert daphne.server_errors() == []
    watcher.close()
    flooder.close()
