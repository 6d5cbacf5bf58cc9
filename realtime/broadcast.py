"""Refresh the top ten after a committed change and broadcast it, throttled deployment-wide.

The path (SPEC.md section 8): `board_changed` runs on commit. It brings the
rank index up to date, skips when the player can neither enter nor leave the
cached top ten, and otherwise recomputes the top ten from the indexed query.
Recomputations are serialised by a deployment-wide lock and coalesced: a
writer that finds the lock held leaves a "pending" flag that the holder
honours before it lets go, so the last commit is always reflected. A changed
board gets `version + 1` and is stored, then published: the first change in an
interval goes out at once, later ones are merged into one latest-wins snapshot
sent when the interval ends.
"""

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

from channels.layers import DEFAULT_CHANNEL_LAYER, channel_layers, get_channel_layer
from django.conf import settings

from leaderboard.redis_client import REDIS_ERRORS
from scores.board import get_store, make_board
from scores.models import Score
from scores.selectors import TOP_N, top_rows_from_db

logger = logging.getLogger(__name__)

LEADERBOARD_GROUP = "leaderboard"
MESSAGE_TYPE = "leaderboard.update"


def board_changed(*, user_id: UUID | str) -> None:
    """After a commit: update the rank index, and refresh the top ten if it can change."""
    try:
        _board_changed(user_id)
    except REDIS_ERRORS as exc:
        get_store().mark_dirty()
        logger.warning("board refresh skipped, Redis unavailable: %s", exc)
    except Exception:
        # A failed refresh never fails the write; the next change or a resync repairs it.
        logger.exception("board refresh failed")


def _board_changed(user_id: UUID | str) -> None:
    store = get_store()
    score = Score.objects.select_related("user").filter(user_id=user_id).first()
    if score is None:
        return
    try:
        store.apply(score)
    except REDIS_ERRORS:
        store.mark_dirty()
        raise
    board = store.get_board()
    if board is not None and not _can_change(board, score):
        return
    refresh_board(changed=score)


def _can_change(board: dict, score: Score) -> bool:
    rows = board["leaderboard"]
    if len(rows) < TOP_N or any(row["user_id"] == str(score.user_id) for row in rows):
        return True
    return not score.is_hidden and score.total >= rows[-1]["score"]


def refresh_board(*, changed: Score | None = None) -> None:
    """Recompute the top ten (coalesced across the deployment) and publish it if it changed."""
    store = get_store()
    store.set_flag("refresh:pending")
    while True:
        token = store.lock("refresh", 5000)
        if token is None:
            return  # the holder sees our flag before it lets go
        try:
            while store.take_flag("refresh:pending"):
                _recompute(changed)
        finally:
            store.unlock("refresh", token)
        if not store.has_flag("refresh:pending"):
            return


def _rows_key(rows: list[dict]) -> list[tuple[str, int]]:
    return [(row["user_id"], row["score"]) for row in rows]


def _changed_row(old_rows: list[dict], new_rows: list[dict], trigger: Score | None) -> dict | None:
    """The player whose change this board shows.

    Refreshes are coalesced, so the writer that recomputes may not be the one
    whose score moved: the first row whose score differs from the previous board
    names the change; a board that only lost a player names the trigger.
    """
    before = {row["user_id"]: row["score"] for row in old_rows}
    for row in new_rows:
        if before.get(row["user_id"]) != row["score"]:
            return {"user_id": row["user_id"], "username": row["username"], "score": row["score"]}
    if trigger is None:
        return None
    return {
        "user_id": str(trigger.user_id),
        "username": trigger.user.username,
        "score": trigger.total,
    }


def _recompute(changed: Score | None) -> None:
    store = get_store()
    rows = top_rows_from_db()
    current = store.get_board()
    if current is not None and _rows_key(current["leaderboard"]) == _rows_key(rows):
        return
    board = make_board(rows, store.next_version())
    board["changed"] = _changed_row(current["leaderboard"] if current else [], rows, changed)
    if store.store_board(board):
        publish(board)


# -- throttled publishing ---------------------------------------------------------------


def publish(board: dict) -> None:
    """Send now if no broadcast went out in the last interval; else send the latest later."""
    store = get_store()
    interval = settings.BROADCAST_INTERVAL_MS
    if interval <= 0 or store.lock("broadcast", interval):
        _send(board)
    else:
        _schedule_trailing(store.lock_ttl_ms("broadcast") / 1000)


_trailing_pending = threading.Event()


def _schedule_trailing(delay: float) -> None:
    """One trailing send per process at a time is enough: it sends the latest board."""
    if _trailing_pending.is_set():
        return
    _trailing_pending.set()
    sender().call_later(delay, _trailing)


def _trailing() -> None:
    """At the end of an interval: send the newest board unless it went out already."""
    _trailing_pending.clear()
    store = get_store()
    try:
        board = store.get_board()
        if board is None or board["version"] <= store.sent_version():
            return
        if store.lock("broadcast", settings.BROADCAST_INTERVAL_MS):
            _send(board)
        else:
            _schedule_trailing(store.lock_ttl_ms("broadcast") / 1000)
    except REDIS_ERRORS as exc:
        logger.warning("trailing broadcast skipped, Redis unavailable: %s", exc)


def update_message(board: dict) -> dict:
    """The channel-layer event for a board: its version and the frame, encoded once.

    Every consumer forwards `text` as is, so a broadcast to a thousand sockets
    costs one JSON encoding, not a thousand.
    """
    payload = {"type": "leaderboard_update", **board}
    return {
        "type": MESSAGE_TYPE,
        "version": board["version"],
        "text": json.dumps(payload, separators=(",", ":")),
    }


def _send(board: dict) -> None:
    store = get_store()
    # Versions are not consecutive (merged changes are never sent), so each message
    # names the one sent before it: a client that did not see that one missed a
    # message and resyncs. Sends are serialised by the broadcast lock.
    previous = store.sent_version()
    store.mark_sent(board["version"])
    sender().group_send(LEADERBOARD_GROUP, update_message({**board, "previous_version": previous}))


class Sender:
    """Sends group messages from sync code without blocking it, and runs delayed calls.

    With Redis, a private event loop thread owns its own channel-layer instance,
    so connections persist between sends. The in-memory layer is not thread-safe,
    so its sends run on the loop the consumers live on (remembered on connect).
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="broadcast")
        self.thread.start()
        self.redis = bool(settings.REDIS_URL)
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER) if self.redis else None
        self.consumer_loop: asyncio.AbstractEventLoop | None = None
        self.sent = 0

    def group_send(self, group: str, message: dict) -> None:
        if self.redis:
            layer, loop = self.layer, self.loop
        else:
            layer, loop = get_channel_layer(), self.consumer_loop
            if loop is None or loop.is_closed() or not loop.is_running():
                return  # nobody in this process is listening
        self.sent += 1
        future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), loop)
        future.add_done_callback(_log_failure)

    def call_later(self, delay: float, callback: Callable[[], Any]) -> None:
        def run() -> None:
            self.loop.run_in_executor(None, callback)

        self.loop.call_soon_threadsafe(self.loop.call_later, max(delay, 0.001), run)


def _log_failure(future) -> None:
    exc = future.exception()
    if exc is not None:
        logger.warning("broadcast failed: %s", exc)


_sender: Sender | None = None
_sender_lock = threading.Lock()


def sender() -> Sender:
    """The process's sender, started on first use."""
    global _sender
    with _sender_lock:
        if _sender is None:
            _sender = Sender()
        return _sender


def remember_consumer_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Record the loop consumers run on (used by the in-memory channel layer)."""
    sender().consumer_loop = loop
