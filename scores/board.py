"""Board state kept beside the database: rank index, cached top ten, deployment-wide version.

With `REDIS_URL` set, everything lives in Redis and is shared by every process:
- a sorted set ranks every visible player (score = -total, member =
  `<reached_at micros, hex>:<user id>`, so ZRANK orders by total desc, reached_at
  asc, user id asc) and answers a rank in O(log n);
- a hash remembers each player's current member and row revision, so a late
  writer never regresses the index (a Lua script applies only newer revisions);
- the cached top ten with its version, and the version counter itself.

The database stays the source of truth. When Redis is unreachable every read
falls back to the database; when Redis comes back, or lost its data, the index
is rebuilt from the database. Without `REDIS_URL` (one process, development) the
same interface is kept in process memory and ranks are counted in the database.
"""

import contextlib
import json
import logging
import threading
import time
from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from leaderboard.redis_client import REDIS_ERRORS, key_prefix, redis_client
from scores.models import Score
from scores.selectors import BoardRow, db_rank, db_total_players, top_rows_from_db

logger = logging.getLogger(__name__)

# Applies one player's row to the index if its revision is newer than the one held.
# KEYS: zset, hash. ARGV: user id, member ("" = not on the board), -total, revision.
_APPLY = """
local cur = redis.call('HGET', KEYS[2], ARGV[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  local old_member = string.sub(cur, 1, sep - 1)
  local old_rev = tonumber(string.sub(cur, sep + 1))
  if old_rev >= tonumber(ARGV[4]) then return 0 end
  if old_member ~= '' then redis.call('ZREM', KEYS[1], old_member) end
end
if ARGV[2] ~= '' then redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2]) end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2] .. '|' .. ARGV[4])
return 1
"""

# Stores a board only if its version is newer than the stored one.
# KEYS: board. ARGV: version, json.
_STORE_BOARD = """
local cur = redis.call('GET', KEYS[1])
if cur then
  local v = cjson.decode(cur)['version']
  if v and tonumber(v) >= tonumber(ARGV[1]) then return 0 end
end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

# Increments the version; a counter Redis lost restarts from the clock in
# milliseconds, so versions keep increasing across a Redis restart.
# KEYS: counter.
_NEXT_VERSION = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
end
return redis.call('INCR', KEYS[1])
"""

# Raises a stored number to ARGV[1] if it is lower. KEYS: key.
_MAX = """
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1]) end
return 1
"""

# Releases a lock only if we still own it. KEYS: lock. ARGV: token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def member_for(*, user_id: Any, reached_at: datetime) -> str:
    """The sorted-set member of a player: orders ties by reached_at, then user id."""
    micros = int(reached_at.timestamp() * 1_000_000)
    return f"{micros:016x}:{user_id}"


class RedisBoardStore:
    """Board state in Redis, shared by every process of the deployment."""

    def __init__(self, prefix: str) -> None:
        self.client = redis_client()
        self.prefix = prefix
        self.k_rank = f"{prefix}:board:rank"
        self.k_members = f"{prefix}:board:members"
        self.k_ready = f"{prefix}:board:ready"
        self.k_version = f"{prefix}:board:version"
        self.k_board = f"{prefix}:board:top"
        self.k_rebuild = f"{prefix}:board:rebuilding"
        self._apply = self.client.register_script(_APPLY)
        self._store_board = self.client.register_script(_STORE_BOARD)
        self.release_script = self.client.register_script(_RELEASE)
        self._next_version = self.client.register_script(_NEXT_VERSION)
        self._max = self.client.register_script(_MAX)
        self.k_sent = f"{prefix}:board:sent"
        # Set when a write could not reach Redis: the index may have missed it, so
        # it is dropped and rebuilt as soon as Redis answers again.
        self._dirty = threading.Event()
        self._rebuild_thread: threading.Thread | None = None

    # -- rank index ---------------------------------------------------------------

    def apply(self, score: Score) -> None:
        """Bring one player's entry up to date with their database row."""
        member = (
            ""
            if score.is_hidden
            else member_for(user_id=score.user_id, reached_at=score.reached_at)
        )
        self._apply(
            keys=[self.k_rank, self.k_members],
            args=[str(score.user_id), member, -score.total, score.revision],
        )

    def is_ready(self) -> bool:
        """True when the index holds every player (it was built since Redis last lost data)."""
        if self._dirty.is_set():
            self._recover()
            return False
        return bool(self.client.exists(self.k_ready))

    def rank(self, score: Score) -> int | None:
        """The player's rank from the index, or None when the index cannot answer exactly."""
        if self._dirty.is_set():
            self._recover()
            return None
        member = member_for(user_id=score.user_id, reached_at=score.reached_at)
        # One round trip: readiness, position and score of exactly this row.
        pipe = self.client.pipeline(transaction=False)
        pipe.exists(self.k_ready)
        pipe.zrank(self.k_rank, member)
        pipe.zscore(self.k_rank, member)
        ready, position, stored = pipe.execute()
        if not ready:
            self.ensure_rebuilt()
            return None
        # A rank must be exact for this row: the index might hold an older
        # total of the player if their update is still being applied.
        if position is None or stored != -score.total:
            return None
        return position + 1

    def total_players(self) -> int | None:
        """Visible players, from the index, or None if it is not ready."""
        if not self.is_ready():
            return None
        return int(self.client.zcard(self.k_rank))

    def mark_dirty(self) -> None:
        """Remember that a write missed Redis; the index is rebuilt when it answers."""
        self._dirty.set()

    def _recover(self) -> None:
        # The cached top ten may miss the same writes: drop it too, so the next read
        # rebuilds it from the database instead of serving a stale board.
        self.client.delete(self.k_ready, self.k_rank, self.k_members, self.k_board)
        self._dirty.clear()
        self.ensure_rebuilt()

    def ensure_rebuilt(self) -> None:
        """Start one background rebuild of the index, unless one runs somewhere already."""
        if self._rebuild_thread is not None and self._rebuild_thread.is_alive():
            return
        self._rebuild_thread = threading.Thread(
            target=self.rebuild, kwargs={"only_if_missing": True}, daemon=True, name="rank-rebuild"
        )
        self._rebuild_thread.start()

    def rebuild(self, *, only_if_missing: bool = False, chunk: int = 5000) -> bool:
        """Rebuild the index from the database; True when this call built it."""
        from django.db import close_old_connections

        token = f"{time.time()}"
        if not self.client.set(self.k_rebuild, token, nx=True, ex=300):
            return False
        try:
            if only_if_missing and self.client.exists(self.k_ready):
                return False
            if not only_if_missing:
                self.client.delete(self.k_ready, self.k_rank, self.k_members)
            last = None
            rows = Score.objects.order_by("user_id").values_list(
                "user_id", "total", "reached_at", "is_hidden", "revision"
            )
            while True:
                page = rows.filter(user_id__gt=last)[:chunk] if last else rows[:chunk]
                page = list(page)
                if not page:
                    break
                pipe = self.client.pipeline(transaction=False)
                for user_id, total, reached_at, hidden, revision in page:
                    member = "" if hidden else member_for(user_id=user_id, reached_at=reached_at)
                    self._apply(
                        keys=[self.k_rank, self.k_members],
                        args=[str(user_id), member, -total, revision],
                        client=pipe,
                    )
                pipe.execute()
                last = page[-1][0]
            self.client.set(self.k_ready, "1")
            logger.info("rank index rebuilt from the database")
            return True
        finally:
            self.release_script(keys=[self.k_rebuild], args=[token])
            if threading.current_thread().name == "rank-rebuild":
                with contextlib.suppress(Exception):
                    close_old_connections()

    # -- cached top ten and version -------------------------------------------------

    def get_board(self) -> dict | None:
        if self._dirty.is_set():
            self._recover()
        raw = self.client.get(self.k_board)
        return json.loads(raw) if raw else None

    def store_board(self, board: dict) -> bool:
        return bool(
            self._store_board(keys=[self.k_board], args=[board["version"], json.dumps(board)])
        )

    def next_version(self) -> int:
        return int(self._next_version(keys=[self.k_version]))

    def current_version(self) -> int:
        return int(self.client.get(self.k_version) or 0)

    def mark_sent(self, version: int) -> None:
        """Remember the newest version broadcast by any process."""
        self._max(keys=[self.k_sent], args=[version])

    def sent_version(self) -> int:
        return int(self.client.get(self.k_sent) or 0)

    def lock(self, name: str, ttl_ms: int) -> str | None:
        """Take a deployment-wide lock; return its token, or None if it is held."""
        token = f"{threading.get_ident()}:{time.monotonic_ns()}"
        if self.client.set(f"{self.k_board}:{name}", token, nx=True, px=max(ttl_ms, 1)):
            return token
        return None

    def unlock(self, name: str, token: str) -> None:
        self.release_script(keys=[f"{self.k_board}:{name}"], args=[token])

    def lock_ttl_ms(self, name: str) -> int:
        return max(int(self.client.pttl(f"{self.k_board}:{name}")), 0)

    def set_flag(self, name: str) -> None:
        self.client.set(f"{self.k_board}:{name}", "1", ex=60)

    def take_flag(self, name: str) -> bool:
        return self.client.getdel(f"{self.k_board}:{name}") is not None

    def has_flag(self, name: str) -> bool:
        return bool(self.client.exists(f"{self.k_board}:{name}"))

    def flush(self) -> None:
        """Forget everything (tests, and `check_scores --repair`, which rebuilds after)."""
        keys = list(self.client.scan_iter(match=f"{self.prefix}:board:*", count=1000))
        if keys:
            self.client.delete(*keys)


class LocalBoardStore:
    """The same interface for one process without Redis: ranks come from the database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._board: dict | None = None
        self._version = 0
        self._sent = 0
        self._locks: dict[str, tuple[str, float]] = {}
        self._flags: set[str] = set()

    def apply(self, score: Score) -> None:
        return None

    def is_ready(self) -> bool:
        return False

    def rank(self, score: Score) -> int | None:
        return None

    def total_players(self) -> int | None:
        return None

    def mark_dirty(self) -> None:
        return None

    def ensure_rebuilt(self) -> None:
        return None

    def rebuild(self, *, only_if_missing: bool = False, chunk: int = 5000) -> bool:
        return False

    def get_board(self) -> dict | None:
        return self._board

    def store_board(self, board: dict) -> bool:
        with self._lock:
            if self._board and self._board["version"] >= board["version"]:
                return False
            self._board = board
            return True

    def next_version(self) -> int:
        with self._lock:
            # Seeded from the clock so versions keep increasing across restarts.
            if self._version == 0:
                self._version = time.time_ns() // 1_000_000
            self._version += 1
            return self._version

    def current_version(self) -> int:
        return self._version

    def mark_sent(self, version: int) -> None:
        with self._lock:
            self._sent = max(self._sent, version)

    def sent_version(self) -> int:
        return self._sent

    def lock(self, name: str, ttl_ms: int) -> str | None:
        with self._lock:
            held = self._locks.get(name)
            now = time.monotonic()
            if held and held[1] > now:
                return None
            token = f"{threading.get_ident()}:{time.monotonic_ns()}"
            self._locks[name] = (token, now + max(ttl_ms, 1) / 1000)
            return token

    def unlock(self, name: str, token: str) -> None:
        with self._lock:
            if self._locks.get(name, ("",))[0] == token:
                del self._locks[name]

    def lock_ttl_ms(self, name: str) -> int:
        held = self._locks.get(name)
        return max(int((held[1] - time.monotonic()) * 1000), 0) if held else 0

    def set_flag(self, name: str) -> None:
        self._flags.add(name)

    def take_flag(self, name: str) -> bool:
        with self._lock:
            present = name in self._flags
            self._flags.discard(name)
            return present

    def has_flag(self, name: str) -> bool:
        return name in self._flags

    def flush(self) -> None:
        with self._lock:
            self._board = None
            self._version = 0
            self._sent = 0
            self._locks.clear()
            self._flags.clear()


_store: RedisBoardStore | LocalBoardStore | None = None
_store_lock = threading.Lock()


def get_store() -> RedisBoardStore | LocalBoardStore:
    """The process's board store, made on first use from the settings."""
    global _store
    with _store_lock:
        if _store is None:
            _store = RedisBoardStore(key_prefix()) if settings.REDIS_URL else LocalBoardStore()
        return _store


def reset_store() -> None:
    """Drop the process's store so the next use reads the settings again (tests)."""
    global _store
    with _store_lock:
        thread = getattr(_store, "_rebuild_thread", None)
        if thread is not None:
            thread.join(timeout=60)
        _store = None


# -- reads with a database fallback ------------------------------------------------


def player_rank(score: Score) -> int | None:
    """A player's exact 1-based rank; None when hidden. Index first, database if needed."""
    if score.is_hidden:
        return None
    try:
        rank = get_store().rank(score)
    except REDIS_ERRORS as exc:
        logger.warning("rank index unavailable, counting in the database: %s", exc)
        rank = None
    if rank is None:
        rank = db_rank(user_id=score.user_id, total=score.total, reached_at=score.reached_at)
    return rank


def total_players() -> int:
    """Visible players on the board."""
    try:
        count = get_store().total_players()
    except REDIS_ERRORS:
        count = None
    return db_total_players() if count is None else count


_last_version = 0


def leaderboard_snapshot() -> dict:
    """The board as clients see it: the cached top ten, or the database when Redis is down."""
    global _last_version
    store = get_store()
    try:
        board = store.get_board()
        if board is None:
            board = _rebuild_board(store)
        _last_version = max(_last_version, board["version"])
        # A copy: the local store hands out its own dict, shared with other threads.
        board = dict(board)
        # Players join below the top ten without a new version: count them now.
        board["total_players"] = total_players()
        board.pop("changed", None)
        return board
    except REDIS_ERRORS as exc:
        logger.warning("board cache unavailable, reading the database: %s", exc)
    return make_board(top_rows_from_db(), _last_version)


def _rebuild_board(store: "RedisBoardStore | LocalBoardStore") -> dict:
    """Fill an empty cache (first use, or Redis lost its data) from the database.

    The board gets a new version, newer than any sent before, and is published:
    clients that missed changes while Redis was away are repaired at once.
    """
    board = make_board(top_rows_from_db(), store.next_version())
    if not store.store_board(board):
        return store.get_board() or board  # another process stored a newer one
    from realtime.broadcast import publish

    publish(board)
    return board


def make_board(rows: list[BoardRow], version: int) -> dict:
    """A board payload (the shape of the API and of realtime messages)."""
    return {
        "leaderboard": rows,
        "total_players": total_players(),
        "last_refresh": timezone.now().isoformat().replace("+00:00", "Z"),
        "version": version,
    }
