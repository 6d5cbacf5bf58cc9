"""A burst of top-ten changes costs a bounded number of broadcasts and ends on the final board."""

import math
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections

from realtime.broadcast import sender
from realtime.tests.conftest import db_rows, give_points, rows_of
from scores.board import get_store

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WRITES = 500
SOCKETS = 5


def burst(players: list) -> float:
    """WRITES score changes, each to a top-ten player; return how long they took in seconds."""
    # SQLite allows one writer at a time; PostgreSQL takes the burst from several threads.
    workers = 1 if connection.vendor == "sqlite" else 8

    def write(index: int) -> None:
        try:
            give_points(players[index % len(players)], 1 + index % 7)
        finally:
            connections.close_all()

    started = time.monotonic()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(write, range(WRITES)))
    return time.monotonic() - started


async def test_burst_of_500_changes_is_throttled_and_every_socket_ends_on_the_final_board(
    ranked_players, open_socket, settings
):
    settings.BROADCAST_INTERVAL_MS = 100
    players = await sync_to_async(ranked_players)(10)
    sockets = [await open_socket() for _ in range(SOCKETS)]
    sent_before = sender().sent

    seconds = await sync_to_async(burst)(players)

    final = get_store().get_board()
    assert rows_of(final) == await sync_to_async(db_rows)()
    for socket, snapshot in sockets:
        versions = []
        message = snapshot
        while message["version"] < final["version"]:
            message = await socket.receive_json_from(timeout=10)
            assert message["type"] == "leaderboard_update"
            versions.append(message["version"])
        assert message["version"] == final["version"]
        assert rows_of(message) == rows_of(final)
        assert versions == sorted(set(versions))  # strictly increasing
    assert await sockets[0][0].receive_nothing(timeout=0.3)

    broadcasts = sender().sent - sent_before
    # The first change goes out at once, then at most one per interval, plus the
    # trailing send and a little slack for the interval boundaries. The bound scales
    # with how long the burst took on this machine; without throttling it would be
    # one broadcast per changed board, hundreds.
    allowed = math.ceil(seconds * 1000 / settings.BROADCAST_INTERVAL_MS) + 3
    assert 1 <= broadcasts <= allowed, (broadcasts, allowed, seconds)
