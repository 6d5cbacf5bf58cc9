"""Real Daphne processes sharing PostgreSQL and Redis: the deployment as clients see it."""

import asyncio
import json

import httpx
import pytest
from django.conf import settings

from realtime.consumers import CLOSE_TOO_BIG, MAX_FRAME_BYTES
from realtime.tests.conftest import db_rows, rows_of, server_env
from tests.faults import Daphne, WsClient, access_token, new_action_id

pytestmark = [
    pytest.mark.needs_postgres,
    pytest.mark.needs_redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(scope="module")
def servers(django_db_setup):
    """Two Daphne processes on free ports, for every test of this module (on the test DB)."""
    started = []
    try:
        for _ in range(2):
            started.append(Daphne(settings.REDIS_URL, extra_env=server_env()).start())
        yield started
    finally:
        for server in started:
            server.stop()
    for server in started:
        assert server.server_errors() == [], server.output()


@pytest.fixture
def win(db):
    from scores.models import ActionType

    return ActionType.objects.create(code="win", name="Win a match", points=100)


def post_win(server: Daphne, user) -> int:
    response = httpx.post(
        f"{server.base}/api/scores/update",
        json={"action_id": new_action_id(), "action": "win"},
        headers={"Authorization": f"Bearer {access_token(user)}"},
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["new_total_score"]


def update_versions(client: WsClient) -> list[int]:
    return [m["version"] for m in client.messages if m["type"] == "leaderboard_update"]


def test_score_posted_through_one_server_reaches_sockets_of_both_in_the_same_order(
    servers, win, make_user
):
    players = [make_user(f"two{index}") for index in range(3)]
    clients = [WsClient(server.ws_url).start() for server in servers]
    try:
        for step in range(6):
            player = players[step % 3]
            total = post_win(servers[step % 2], player)
            # Every client, including the one on the other process, sees the change.
            for client in clients:
                client.wait_for(
                    lambda m, p=player, t=total: (
                        m["type"] == "leaderboard_update" and (str(p.pk), t) in rows_of(m)
                    ),
                    timeout=10,
                )

        final = db_rows()
        for client in clients:
            client.wait_state(lambda c: c.rows == final, 10, what="the final board")
        seen = [update_versions(client) for client in clients]
        assert seen[0] == seen[1]
        assert seen[0] == sorted(set(seen[0]))  # strictly increasing
        assert len(seen[0]) >= 6
    finally:
        for client in clients:
            client.close()


def test_sse_streams_through_daphne(servers, win, make_user):
    player = make_user("sse")
    with (
        httpx.Client(base_url=servers[1].base, timeout=10) as client,
        client.stream("GET", "/api/scores/events") as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        events = []
        for line in response.iter_lines():
            if not line.startswith("data: "):
                continue
            events.append(json.loads(line.removeprefix("data: ")))
            if len(events) == 2:
                break
            total = post_win(servers[0], player)  # through the other process
    assert events[0]["type"] == "leaderboard_snapshot"
    assert events[1]["type"] == "leaderboard_update"
    assert events[1]["changed"] == {"user_id": str(player.pk), "username": "sse", "score": total}
    assert events[1]["version"] > events[0]["version"]


async def test_daphne_closes_a_socket_that_sends_a_frame_over_4_kib(servers):
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    server = servers[0]
    async with connect(server.ws_url, origin=server.base) as socket:
        snapshot = json.loads(await socket.recv())
        assert snapshot["type"] == "leaderboard_snapshot"
        await socket.send(json.dumps({"type": "resync", "pad": "x" * MAX_FRAME_BYTES}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), timeout=10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CLOSE_TOO_BIG


async def test_daphne_refuses_a_websocket_from_a_foreign_origin(servers):
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        async with connect(servers[0].ws_url, origin="https://evil.example"):
            pass
    assert refused.value.response.status_code == 403
