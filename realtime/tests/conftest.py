"""Fixtures for the realtime tests: players on the board, sockets, and the channel layer."""

import itertools
from collections.abc import Callable

import pytest
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.conf import settings

from realtime.consumers import LeaderboardConsumer

_action_ids = itertools.count()


def give_points(user, points: int) -> int:
    """Award points through the scoring service (one committed write); return the new total."""
    from scores.services import score_award

    receipt = score_award(
        user=user, action_id=f"rt-{next(_action_ids)}", points=points, reason="realtime test"
    )
    return receipt.new_total_score


def rows_of(message: dict) -> list[tuple[str, int]]:
    """The ordered (player, score) rows of a board message."""
    return [(row["user_id"], row["score"]) for row in message["leaderboard"]]


def db_rows() -> list[tuple[str, int]]:
    """The top ten straight from the database, in board order."""
    from scores.selectors import top_rows_from_db

    return [(row["user_id"], row["score"]) for row in top_rows_from_db()]


def server_env() -> dict[str, str]:
    """Environment for a Daphne subprocess: share this process's board keys and layer prefix."""
    if not settings.REDIS_URL:
        return {}
    return {
        "CACHE_KEY_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
    }


@pytest.fixture
def ranked_players(make_user) -> Callable[[int], list]:
    """Make n players with distinct scores: 100 * n for the first down to 100 for the last."""

    def make(count: int, prefix: str = "p") -> list:
        players = []
        for index in range(count):
            user = make_user(f"{prefix}{index:02d}")
            give_points(user, 100 * (count - index))
            players.append(user)
        return players

    return make


@pytest.fixture
async def layer():
    """The process's channel layer; its Redis pools for this test's loop are closed after."""
    channel_layer = get_channel_layer()
    yield channel_layer
    close_pools = getattr(channel_layer, "close_pools", None)
    if close_pools is not None:
        await close_pools()


@pytest.fixture
async def open_socket(layer):
    """Connect WebSocket clients to the board consumer; every one is closed after the test."""
    sockets: list[WebsocketCommunicator] = []

    async def connect(application=None, **kwargs) -> tuple[WebsocketCommunicator, dict]:
        socket = WebsocketCommunicator(
            application or LeaderboardConsumer.as_asgi(), "/ws/leaderboard/", **kwargs
        )
        connected, _ = await socket.connect(timeout=5)
        assert connected
        sockets.append(socket)
        snapshot = await socket.receive_json_from(timeout=5)
        assert snapshot["type"] == "leaderboard_snapshot"
        return socket, snapshot

    yield connect
    for socket in sockets:
        await socket.disconnect()
