"""Channel-layer limits: a socket that never reads, a socket older than group_expiry."""

import base64
import os
import socket
import time

import httpx
import pytest

from tests.faults import (
    LIVE_SERVER_MARKS,
    Daphne,
    RedisServer,
    WsClient,
    access_token,
    db_top,
    new_action_id,
    wait_until,
)

pytestmark = LIVE_SERVER_MARKS

CAPACITY = 500  # settings.CHANNEL_LAYERS capacity


@pytest.fixture
def players():
    from accounts.models import User
    from scores.models import ActionType

    ActionType.objects.create(code="win", name="Win", points=100)
    return [User.objects.create(username=f"c{i:02d}", password="!") for i in range(12)]


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.kill()


def open_silent_socket(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads a byte."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /ws/leaderboard/ HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: http://127.0.0.1:{port}\r\n\r\n"
        ).encode()
    )
    return sock


def server_closed(sock: socket.socket, timeout: float) -> bool:
    """Drain what the server sent; True once it has closed or reset the connection."""
    sock.settimeout(0.5)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if sock.recv(1 << 20) == b"":
                return True
        except TimeoutError:
            continue
        except OSError:
            return True
    return False


def test_socket_that_never_reads(redis_server, players):
    # Pings every second, dropped after two without a pong; production uses Daphne's
    # defaults (20 s and 30 s), which bound the same way, only later.
    daphne = Daphne(
        redis_server.url,
        extra_env={"BROADCAST_INTERVAL_MS": "0"},
        args=["--ping-interval", "1", "--ping-timeout", "2"],
    ).start()
    try:
        tokens = {user.pk: access_token(user) for user in players}
        healthy = WsClient(daphne.ws_url).start()
        silent = [open_silent_socket(daphne.port) for _ in range(5)]
        rss_before = daphne.rss_kib()
        client = httpx.Client(base_url=daphne.base, timeout=10)
        # Round-robin wins reshuffle the top ten on every write: one broadcast each.
        for round_number in range(15):
            for user in players:
                response = client.post(
                    "/api/scores/update",
                    json={"action_id": new_action_id(), "action": "win"},
                    headers={"Authorization": f"Bearer {tokens[user.pk]}"},
                )
                assert response.status_code == 200, response.text
            if round_number == 5:
                # The others still get every change while the silent sockets back up.
                wait_until(lambda: healthy.rows == db_top(), 5, what="healthy socket current")
        wait_until(lambda: healthy.rows == db_top(), 10, what="healthy socket converges")
        updates = [m for m in healthy.messages if m["type"] == "leaderboard_update"]
        assert len(updates) > 60

        # The server drops the silent sockets (no pong) and frees what it buffered.
        for sock in silent:
            assert server_closed(sock, 15), "a socket that never reads was never dropped"
            sock.close()
        rss_after = daphne.rss_kib()
        assert rss_after - rss_before < 50_000, (rss_before, rss_after)

        # No channel queue in Redis grows past the layer's capacity.
        redis = redis_server.client()
        for key in redis.scan_iter("rel*"):
            kind = redis.type(key)
            if kind == "zset":
                assert redis.zcard(key) <= CAPACITY, key
            elif kind == "list":
                assert redis.llen(key) <= CAPACITY, key

        # And the server still serves new sockets and writes.
        fresh = WsClient(daphne.ws_url).start()
        assert [(r["user_id"], r["score"]) for r in fresh.messages[0]["leaderboard"]] == db_top()
        fresh.close()
        healthy.close()
        client.close()
    finally:
        daphne.stop()


def test_socket_older_than_group_expiry_still_gets_updates(redis_server, players):
    daphne = Daphne(redis_server.url, extra_env={"CHANNEL_GROUP_EXPIRY": "3"}).start()
    try:
        old = WsClient(daphne.ws_url).start()
        time.sleep(5)  # no traffic for longer than group_expiry
        start = len(old.messages)
        response = httpx.post(
            f"{daphne.base}/api/scores/update",
            json={"action_id": new_action_id(), "action": "win"},
            headers={"Authorization": f"Bearer {access_token(players[0])}"},
            timeout=10,
        )
        assert response.status_code == 200, response.text
        update = old.wait_for(lambda m: m["type"] == "leaderboard_update", 5, start)
        assert update["leaderboard"][0]["user_id"] == str(players[0].pk)
        old.close()
    finally:
        daphne.stop()
