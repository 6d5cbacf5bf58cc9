"""WebSocket and SSE consumers: join the board group, turn layer events into frames."""

import asyncio
import contextlib
import json
import logging

from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import BaseChannelLayer
from django.conf import settings

from leaderboard.redis_client import REDIS_ERRORS
from realtime.broadcast import LEADERBOARD_GROUP, remember_consumer_loop
from scores.board import leaderboard_snapshot

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 4096
# The layer forgets a group member group_expiry seconds after it joined (one day in
# settings), however alive its socket is; re-joining this often keeps it in.
REJOIN_SECONDS = min(30 * 60, settings.CHANNEL_GROUP_EXPIRY / 3)
# Close codes. Daphne (autobahn) refuses any code an application sends other than
# 1000 or 3000-4999, and then leaves the socket open; so the RFC 6455 codes are
# mirrored into the private range: 4009 "message too big" (1009), 4013 "try again
# later" (1013: the channel layer is down).
CLOSE_TOO_BIG = 4009
CLOSE_TRY_AGAIN_LATER = 4013


@database_sync_to_async
def snapshot_payload() -> dict:
    """A snapshot message: the current board."""
    return {"type": "leaderboard_snapshot", **leaderboard_snapshot()}


async def stay_in_group(layer: BaseChannelLayer, channel_name: str, every: float) -> None:
    """Re-join the board group every `every` seconds until cancelled."""
    while True:
        await asyncio.sleep(every)
        try:
            await layer.group_add(LEADERBOARD_GROUP, channel_name)
        except Exception as exc:  # a Redis outage must not end the loop; retry next round
            logger.warning("re-joining the board group failed: %s", exc)


async def cancel(task: asyncio.Task) -> None:
    """Cancel a task and wait until it has stopped."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class BoardGroupMixin:
    """Membership of the board group for the life of a connection, renewed periodically."""

    rejoin_seconds: float = REJOIN_SECONDS
    last_version = -1
    rejoin_task: asyncio.Task | None = None

    async def join_board(self) -> None:
        remember_consumer_loop(asyncio.get_running_loop())
        await self.channel_layer.group_add(LEADERBOARD_GROUP, self.channel_name)
        self.rejoin_task = asyncio.create_task(
            stay_in_group(self.channel_layer, self.channel_name, self.rejoin_seconds)
        )

    async def leave_board(self) -> None:
        if self.rejoin_task is None:
            return
        await cancel(self.rejoin_task)
        self.rejoin_task = None
        await self.channel_layer.group_discard(LEADERBOARD_GROUP, self.channel_name)

    def is_newer(self, version: int) -> bool:
        """Record and accept a board newer than the last one sent; broadcasts can cross."""
        if version <= self.last_version:
            return False
        self.last_version = version
        return True


class LeaderboardConsumer(BoardGroupMixin, AsyncJsonWebsocketConsumer):
    """Public live board: snapshot on connect, updates in version order, resync on request."""

    async def __call__(self, scope, receive, send) -> None:
        """A lost channel layer (Redis down) closes the socket with 4013, not a crash (1011)."""
        try:
            await super().__call__(scope, receive, send)
        except REDIS_ERRORS as exc:
            logger.warning("channel layer unavailable, closing the socket: %s", exc)
            if self.rejoin_task is not None:
                await cancel(self.rejoin_task)
                self.rejoin_task = None
            with contextlib.suppress(Exception):
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})

    async def connect(self) -> None:
        try:
            await self.join_board()
        except REDIS_ERRORS as exc:
            # The channel layer (Redis) is down: no live updates can reach this socket.
            # Show the board from the database, then ask the client to come back later.
            logger.warning("board group unavailable, closing after a snapshot: %s", exc)
            await self.accept()
            await self.send_snapshot()
            await self.close(code=CLOSE_TRY_AGAIN_LATER)
            return
        await self.accept()
        await self.send_snapshot()

    async def disconnect(self, code: int) -> None:
        await self.leave_board()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Answer {"type": "resync"} with a snapshot, anything else with an error frame."""
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > MAX_FRAME_BYTES:
            await self.close(code=CLOSE_TOO_BIG)
            return
        if text_data is None:
            await self.send_error("unsupported_frame", "Send JSON text frames.")
            return
        try:
            message = json.loads(text_data)
        except ValueError:
            await self.send_error("invalid_json", "The frame is not valid JSON.")
            return
        if isinstance(message, dict) and message.get("type") == "resync":
            await self.send_snapshot()
            return
        await self.send_error("unknown_message", 'The only message accepted is {"type": "resync"}.')

    async def send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "error": code, "detail": detail})

    async def send_snapshot(self) -> None:
        payload = await snapshot_payload()
        self.last_version = max(self.last_version, payload["version"])
        await self.send_json(payload)

    async def leaderboard_update(self, event: dict) -> None:
        """A board change from the layer: forward it unless it is not newer than what we sent."""
        if self.is_newer(event["version"]):
            await self.send(text_data=event["text"])


def sse_frame(payload: dict) -> bytes:
    """One Server-Sent Event: id is the version, event the message type."""
    data = json.dumps(payload, separators=(",", ":"))
    return f"id: {payload['version']}\nevent: {payload['type']}\ndata: {data}\n\n".encode()


class LeaderboardEventsConsumer(BoardGroupMixin, AsyncHttpConsumer):
    """Server-Sent Events: the same payloads as the WebSocket, snapshot first, heartbeats."""

    heartbeat_seconds: float = 15
    heartbeat: asyncio.Task | None = None
    # Tells EventSource how long to wait before reconnecting (milliseconds).
    retry_ms = 3000

    async def http_request(self, message: dict) -> None:
        """Start the stream and keep the consumer running (the base class stops after handle)."""
        if message.get("more_body"):
            return
        if not await self.open_stream():
            raise StopConsumer

    async def open_stream(self) -> bool:
        """Send the headers and the first event; False when the response is already complete."""
        method = self.scope["method"]
        if method not in ("GET", "HEAD"):
            body = json.dumps({"error": "method_not_allowed", "detail": "Use GET."}).encode()
            await self.send_response(
                405, body, headers=[(b"Content-Type", b"application/json"), (b"Allow", b"GET")]
            )
            return False
        await self.send_headers(
            headers=[
                (b"Content-Type", b"text/event-stream; charset=utf-8"),
                (b"Cache-Control", b"no-cache"),
                (b"X-Accel-Buffering", b"no"),
            ]
        )
        if method == "HEAD":
            await self.send_body(b"")
            return False
        await self.join_board()
        payload = await snapshot_payload()
        # A client that reconnects with the Last-Event-ID of the current board only
        # needs to keep listening; any other id (older, or unknown after a reset)
        # gets a snapshot.
        self.last_version = payload["version"]
        first = b": up to date\n\n"
        if _last_event_id(self.scope) != payload["version"]:
            first = sse_frame(payload)
        await self.send_body(f"retry: {self.retry_ms}\n\n".encode() + first, more_body=True)
        self.heartbeat = asyncio.create_task(self.send_heartbeats())
        return True

    async def send_heartbeats(self) -> None:
        """A comment line every heartbeat_seconds keeps proxies from closing an idle stream."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            await self.send_body(b": heartbeat\n\n", more_body=True)

    async def leaderboard_update(self, event: dict) -> None:
        """Forward a newer board as an event."""
        if self.is_newer(event["version"]):
            frame = f"id: {event['version']}\nevent: leaderboard_update\ndata: {event['text']}\n\n"
            await self.send_body(frame.encode(), more_body=True)

    async def disconnect(self) -> None:
        if self.heartbeat is not None:
            await cancel(self.heartbeat)
            self.heartbeat = None
        await self.leave_board()


def _last_event_id(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"last-event-id":
            try:
                return int(value.decode("latin-1").strip())
            except ValueError:
                return None
    return None
