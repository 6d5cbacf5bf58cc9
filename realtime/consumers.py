"""WebSocket and SSE consumers: join the board group, turn layer events into frames."""

import asyncio
import json
import logging
import time

from channels.db import database_sync_to_async
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from realtime.broadcast import LEADERBOARD_GROUP, remember_consumer_loop
from scores.board import leaderboard_snapshot

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 4096
# Group membership expires after the layer's group_expiry; re-joining well
# before that keeps a long-lived socket in the group.
REJOIN_SECONDS = 3600


@database_sync_to_async
def snapshot_payload() -> dict:
    """A snapshot message: the current board."""
    return {"type": "leaderboard_snapshot", **leaderboard_snapshot()}


class LeaderboardConsumer(AsyncJsonWebsocketConsumer):
    """Public live board: snapshot on connect, updates in version order, resync on request."""

    async def connect(self) -> None:
        self.last_version = -1
        self.joined_at = time.monotonic()
        remember_consumer_loop(asyncio.get_running_loop())
        await self.channel_layer.group_add(LEADERBOARD_GROUP, self.channel_name)
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await self.channel_layer.group_discard(LEADERBOARD_GROUP, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_BYTES:
            await self.close(code=1009)
            return
        try:
            message = json.loads(text_data) if text_data is not None else None
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") == "resync":
            await self.send_snapshot()
            return
        await self.send_json(
            {"type": "error", "error": "unknown_message", "detail": 'Send {"type": "resync"}.'}
        )

    async def send_snapshot(self) -> None:
        payload = await snapshot_payload()
        self.last_version = max(self.last_version, payload["version"])
        await self.send_json(payload)

    async def leaderboard_update(self, event: dict) -> None:
        """A board change from the layer: forward it unless it is not newer than what we sent."""
        payload = event["payload"]
        if payload["version"] <= self.last_version:
            return
        self.last_version = payload["version"]
        await self.send_json(payload)
        if time.monotonic() - self.joined_at > REJOIN_SECONDS:
            self.joined_at = time.monotonic()
            await self.channel_layer.group_add(LEADERBOARD_GROUP, self.channel_name)


def sse_frame(payload: dict) -> bytes:
    """One Server-Sent Event: id is the version, event the message type."""
    data = json.dumps(payload, separators=(",", ":"))
    return f"id: {payload['version']}\nevent: {payload['type']}\ndata: {data}\n\n".encode()


class LeaderboardEventsConsumer(AsyncHttpConsumer):
    """Server-Sent Events: the same payloads as the WebSocket, snapshot first, heartbeats."""

    heartbeat_seconds = 15

    async def handle(self, body: bytes) -> None:
        if self.scope["method"] not in ("GET", "HEAD"):
            await self.send_response(
                405,
                json.dumps({"error": "method_not_allowed", "detail": "Use GET."}).encode(),
                headers=[(b"Content-Type", b"application/json"), (b"Allow", b"GET")],
            )
            return
        remember_consumer_loop(asyncio.get_running_loop())
        self.last_version = _last_event_id(self.scope)
        await self.channel_layer.group_add(LEADERBOARD_GROUP, self.channel_name)
        await self.send_headers(
            headers=[
                (b"Content-Type", b"text/event-stream; charset=utf-8"),
                (b"Cache-Control", b"no-cache"),
                (b"X-Accel-Buffering", b"no"),
            ]
        )
        # A client that reconnects with Last-Event-ID gets a snapshot only if the
        # board moved on since; one that is current just keeps listening.
        payload = await snapshot_payload()
        if payload["version"] > self.last_version or self.last_version < 0:
            self.last_version = max(self.last_version, payload["version"])
            await self.send_body(sse_frame(payload), more_body=True)
        else:
            await self.send_body(b": up to date\n\n", more_body=True)
        self.heartbeat = asyncio.create_task(self._heartbeat())

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.send_body(b": heartbeat\n\n", more_body=True)
            await self.channel_layer.group_add(LEADERBOARD_GROUP, self.channel_name)

    async def leaderboard_update(self, event: dict) -> None:
        """Forward a newer board as an event."""
        payload = event["payload"]
        if payload["version"] <= self.last_version:
            return
        self.last_version = payload["version"]
        await self.send_body(sse_frame(payload), more_body=True)

    async def disconnect(self) -> None:
        task = getattr(self, "heartbeat", None)
        if task is not None:
            task.cancel()
        await self.channel_layer.group_discard(LEADERBOARD_GROUP, self.channel_name)


def _last_event_id(scope: dict) -> int:
    for name, value in scope.get("headers", []):
        if name == b"last-event-id":
            try:
                return int(value.decode("latin-1").strip())
            except ValueError:
                return -1
    return -1
