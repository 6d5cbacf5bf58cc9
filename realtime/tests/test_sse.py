"""Server-Sent Events at /api/scores/events, through the full ASGI application."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import ApplicationCommunicator

from realtime.consumers import LeaderboardEventsConsumer
from realtime.tests.conftest import db_rows, give_points, rows_of

pytestmark = pytest.mark.django_db(transaction=True)


def parse_events(chunk: bytes) -> list[dict]:
    """Split an SSE chunk into events: {"id", "event", "data", "retry", "comments"}."""
    events = []
    for block in chunk.decode().split("\n\n"):
        if not block:
            continue
        event: dict = {"comments": []}
        for line in block.split("\n"):
            if line.startswith(":"):
                event["comments"].append(line[1:].strip())
            else:
                name, _, value = line.partition(": ")
                event[name] = value
        if "data" in event:
            event["data"] = json.loads(event["data"])
        events.append(event)
    return events


class Stream:
    """An open SSE response: read it chunk by chunk, then disconnect."""

    def __init__(self, method: str = "GET", headers: list[tuple[bytes, bytes]] = ()) -> None:
        from leaderboard.asgi import application

        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": "/api/scores/events",
            "raw_path": b"/api/scores/events",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"testserver"), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.communicator = ApplicationCommunicator(application, scope)

    async def start(self) -> dict:
        await self.communicator.send_input({"type": "http.request", "body": b""})
        start = await self.communicator.receive_output(timeout=5)
        assert start["type"] == "http.response.start"
        return start

    async def chunk(self) -> dict:
        message = await self.communicator.receive_output(timeout=5)
        assert message["type"] == "http.response.body"
        return message

    async def events(self) -> list[dict]:
        return parse_events((await self.chunk())["body"])

    async def close(self) -> None:
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout=5)


@pytest.fixture
async def open_stream(layer):
    streams: list[Stream] = []

    async def open_(**kwargs) -> tuple[Stream, dict]:
        stream = Stream(**kwargs)
        streams.append(stream)
        return stream, await stream.start()

    yield open_
    for stream in streams:
        if not stream.communicator.future.done():
            await stream.close()


async def test_stream_starts_with_a_snapshot_event(ranked_players, open_stream):
    await sync_to_async(ranked_players)(3)

    stream, start = await open_stream()

    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"Content-Type"].startswith(b"text/event-stream")
    assert headers[b"Cache-Control"] == b"no-cache"
    first = await stream.chunk()
    assert first["more_body"] is True
    retry, snapshot = parse_events(first["body"])
    assert int(retry["retry"]) > 0
    assert snapshot["event"] == "leaderboard_snapshot"
    assert snapshot["data"]["type"] == "leaderboard_snapshot"
    assert int(snapshot["id"]) == snapshot["data"]["version"]
    assert rows_of(snapshot["data"]) == await sync_to_async(db_rows)()


async def test_committed_change_arrives_as_an_update_event(ranked_players, open_stream):
    players = await sync_to_async(ranked_players)(3)
    stream, _ = await open_stream()
    snapshot = (await stream.events())[-1]

    await sync_to_async(give_points)(players[2], 500)

    (update,) = await stream.events()
    assert update["event"] == "leaderboard_update"
    assert int(update["id"]) == update["data"]["version"] > int(snapshot["id"])
    assert update["data"]["changed"]["user_id"] == str(players[2].pk)
    assert rows_of(update["data"]) == await sync_to_async(db_rows)()


async def test_last_event_id_of_the_current_board_skips_the_snapshot(ranked_players, open_stream):
    players = await sync_to_async(ranked_players)(2)
    first, _ = await open_stream()
    version = (await first.events())[-1]["id"]

    again, start = await open_stream(headers=[(b"last-event-id", version.encode())])

    assert start["status"] == 200
    events = await again.events()
    assert [event.get("event") for event in events] == [None, None]
    assert events[-1]["comments"] == ["up to date"]
    await sync_to_async(give_points)(players[1], 500)
    (update,) = await again.events()
    assert update["event"] == "leaderboard_update"
    assert int(update["id"]) > int(version)


@pytest.mark.parametrize("last_event_id", [b"1", b"99999999999999999", b"not-a-number"])
async def test_stale_or_unknown_last_event_id_gets_a_snapshot(
    ranked_players, open_stream, last_event_id
):
    players = await sync_to_async(ranked_players)(2)
    await sync_to_async(give_points)(players[1], 500)

    stream, _ = await open_stream(headers=[(b"last-event-id", last_event_id)])

    snapshot = (await stream.events())[-1]
    assert snapshot["event"] == "leaderboard_snapshot"
    assert rows_of(snapshot["data"]) == await sync_to_async(db_rows)()


async def test_heartbeat_comments_keep_an_idle_stream_open(open_stream, monkeypatch):
    monkeypatch.setattr(LeaderboardEventsConsumer, "heartbeat_seconds", 0.05)
    stream, _ = await open_stream()
    await stream.chunk()

    for _ in range(2):
        heartbeat = await stream.chunk()
        assert heartbeat == {
            "type": "http.response.body",
            "body": b": heartbeat\n\n",
            "more_body": True,
        }


async def test_default_heartbeat_is_every_15_seconds() -> None:
    assert LeaderboardEventsConsumer.heartbeat_seconds == 15


async def test_client_disconnect_ends_the_consumer(open_stream):
    stream, _ = await open_stream()
    await stream.chunk()

    await stream.close()

    assert stream.communicator.future.done()
    assert stream.communicator.future.exception() is None


async def test_post_is_405(open_stream):
    stream, start = await open_stream(method="POST")

    assert start["status"] == 405
    body = await stream.chunk()
    assert json.loads(body["body"])["error"] == "method_not_allowed"
    assert not body.get("more_body")
