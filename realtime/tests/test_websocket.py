"""The WebSocket consumer over the real channel layer (Redis when REDIS_URL is set)."""

import asyncio
import copy
import json

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction

from realtime.broadcast import LEADERBOARD_GROUP, update_message
from realtime.consumers import CLOSE_TOO_BIG, MAX_FRAME_BYTES, LeaderboardConsumer
from realtime.tests.conftest import db_rows, give_points, rows_of
from scores.board import get_store

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


async def test_snapshot_on_connect_is_the_current_top_ten(ranked_players, open_socket):
    await sync_to_async(ranked_players)(12)

    _, snapshot = await open_socket()

    assert rows_of(snapshot) == await sync_to_async(db_rows)()
    assert len(snapshot["leaderboard"]) == 10
    assert snapshot["total_players"] == 12
    assert snapshot["version"] == get_store().get_board()["version"]


async def test_committed_score_change_is_pushed(ranked_players, open_socket):
    players = await sync_to_async(ranked_players)(3)
    socket, snapshot = await open_socket()

    total = await sync_to_async(give_points)(players[2], 250)

    update = await socket.receive_json_from(timeout=5)
    assert update["type"] == "leaderboard_update"
    assert update["version"] > snapshot["version"]
    assert update["changed"] == {
        "user_id": str(players[2].pk),
        "username": players[2].username,
        "score": total,
    }
    assert rows_of(update)[0] == (str(players[2].pk), 350)
    assert rows_of(update) == await sync_to_async(db_rows)()


async def test_rolled_back_score_change_is_never_pushed(ranked_players, open_socket):
    players = await sync_to_async(ranked_players)(3)
    socket, _ = await open_socket()

    def write_then_roll_back() -> None:
        try:
            with transaction.atomic():
                give_points(players[2], 10_000)
                raise Rollback
        except Rollback:
            pass

    await sync_to_async(write_then_roll_back)()
    # A committed change afterwards: had the rolled-back one been sent, it would come first.
    await sync_to_async(give_points)(players[1], 1)

    update = await socket.receive_json_from(timeout=5)
    assert update["changed"]["user_id"] == str(players[1].pk)
    assert (str(players[2].pk), 10_100) not in rows_of(update)
    assert rows_of(update) == await sync_to_async(db_rows)()
    assert await socket.receive_nothing(timeout=0.3)


async def test_eleventh_player_scoring_below_the_top_ten_sends_nothing(ranked_players, open_socket):
    players = await sync_to_async(ranked_players)(11)  # the 10th has 200, the 11th 100
    socket, _ = await open_socket()
    version = get_store().current_version()

    await sync_to_async(give_points)(players[10], 50)  # 150: still 11th

    assert get_store().current_version() == version  # no new board was even computed
    await sync_to_async(give_points)(players[0], 1)  # a real change, as a marker
    update = await socket.receive_json_from(timeout=5)
    assert update["changed"]["user_id"] == str(players[0].pk)
    assert update["version"] == version + 1


async def test_eleventh_player_overtaking_the_tenth_is_pushed(ranked_players, open_socket):
    players = await sync_to_async(ranked_players)(11)
    socket, _ = await open_socket()

    await sync_to_async(give_points)(players[10], 150)  # 250: overtakes the 10th (200)

    update = await socket.receive_json_from(timeout=5)
    assert rows_of(update)[9] == (str(players[10].pk), 250)
    assert str(players[9].pk) not in dict(rows_of(update))


async def test_resync_answers_with_a_snapshot(ranked_players, open_socket):
    await sync_to_async(ranked_players)(2)
    socket, snapshot = await open_socket()

    await socket.send_json_to({"type": "resync"})

    again = await socket.receive_json_from(timeout=5)
    assert again["type"] == "leaderboard_snapshot"
    assert again["version"] == snapshot["version"]
    assert rows_of(again) == rows_of(snapshot)


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"text_data": json.dumps({"type": "hello"})}, "unknown_message"),
        ({"text_data": json.dumps(["resync"])}, "unknown_message"),
        ({"text_data": "resync"}, "invalid_json"),
        ({"bytes_data": b'{"type": "resync"}'}, "unsupported_frame"),
    ],
)
async def test_anything_but_resync_gets_an_error_frame_and_the_socket_stays(
    open_socket, frame, error
):
    socket, _ = await open_socket()

    await socket.send_to(**frame)

    reply = await socket.receive_json_from(timeout=5)
    assert reply["type"] == "error"
    assert reply["error"] == error
    assert reply["detail"]
    await socket.send_json_to({"type": "resync"})
    assert (await socket.receive_json_from(timeout=5))["type"] == "leaderboard_snapshot"


async def test_frame_over_4_kib_closes_the_socket(open_socket):
    socket, _ = await open_socket()

    await socket.send_to(text_data=json.dumps({"type": "resync", "pad": "x" * MAX_FRAME_BYTES}))

    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": CLOSE_TOO_BIG}


async def test_frame_of_exactly_4_kib_is_still_read(open_socket):
    socket, _ = await open_socket()
    frame = '{"type": "resync"}'
    frame = frame[:-1] + " " * (MAX_FRAME_BYTES - len(frame)) + "}"
    assert len(frame.encode()) == MAX_FRAME_BYTES

    await socket.send_to(text_data=frame)

    assert (await socket.receive_json_from(timeout=5))["type"] == "leaderboard_snapshot"


async def test_consumer_drops_a_version_not_newer_than_the_last_it_sent(open_socket, layer):
    socket, snapshot = await open_socket()
    base = {**snapshot, "leaderboard": [], "total_players": 0}
    newer, older, newest = (
        update_message({**base, "version": snapshot["version"] + step}) for step in (2, 1, 3)
    )

    for message in (newer, older, newest):
        await layer.group_send(LEADERBOARD_GROUP, message)

    seen = [(await socket.receive_json_from(timeout=5))["version"] for _ in range(2)]
    assert seen == [snapshot["version"] + 2, snapshot["version"] + 3]
    assert await socket.receive_nothing(timeout=0.3)


async def test_foreign_origin_is_refused_by_the_full_application(open_socket):
    from leaderboard.asgi import application

    evil = WebsocketCommunicator(
        application,
        "/ws/leaderboard/",
        headers=[(b"host", b"127.0.0.1:8000"), (b"origin", b"https://evil.example")],
    )
    connected, _ = await evil.connect(timeout=5)
    assert not connected

    # The same application lets the page's own origin in.
    _, snapshot = await open_socket(
        application, headers=[(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")]
    )
    assert snapshot["type"] == "leaderboard_snapshot"


class NeverRejoins(LeaderboardConsumer):
    rejoin_seconds = 3600


async def test_periodic_rejoin_keeps_a_long_lived_socket_in_the_group(settings):
    """group_expiry forgets members that joined too long ago; the consumer re-joins in time."""
    short = copy.deepcopy(settings.CHANNEL_LAYERS)
    short["default"].setdefault("CONFIG", {})["group_expiry"] = 1
    settings.CHANNEL_LAYERS = short  # a fresh layer instance with a one-second expiry
    layer = get_channel_layer()

    class RejoinsOften(LeaderboardConsumer):
        rejoin_seconds = 0.2

    sockets = {}
    try:
        for consumer in (RejoinsOften, NeverRejoins):
            socket = WebsocketCommunicator(consumer.as_asgi(), "/ws/leaderboard/")
            assert (await socket.connect(timeout=5))[0]
            snapshot = await socket.receive_json_from(timeout=5)
            sockets[consumer] = socket

        await asyncio.sleep(2.5)  # both joined more than group_expiry ago
        message = update_message(
            {**snapshot, "version": snapshot["version"] + 1, "leaderboard": []}
        )
        await layer.group_send(LEADERBOARD_GROUP, message)

        update = await sockets[RejoinsOften].receive_json_from(timeout=5)
        assert update["version"] == snapshot["version"] + 1
        # The control shows the expiry is real: without re-joining, the socket is gone.
        assert await sockets[NeverRejoins].receive_nothing(timeout=0.5)
    finally:
        for socket in sockets.values():
            await socket.disconnect()
        if hasattr(layer, "close_pools"):
            await layer.close_pools()


async def test_disconnect_leaves_the_group_and_stops_rejoining(layer):
    socket = WebsocketCommunicator(LeaderboardConsumer.as_asgi(), "/ws/leaderboard/")
    assert (await socket.connect(timeout=5))[0]
    await socket.receive_json_from(timeout=5)
    before = {task for task in asyncio.all_tasks() if "stay_in_group" in repr(task)}
    assert before

    await socket.disconnect()

    after = {task for task in asyncio.all_tasks() if "stay_in_group" in repr(task)}
    assert not (before & after)
