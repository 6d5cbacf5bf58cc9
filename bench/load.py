"""Load generators and probes, all asyncio, run in the benchmark's own process.

Every function returns plain dicts of figures; latencies are in milliseconds.
"""

import asyncio
import contextlib
import itertools
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import psycopg
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

_run_ids = itertools.count()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(latencies: list[float]) -> dict:
    return {
        "n": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies) if latencies else None,
        "mean_ms": statistics.fmean(latencies) if latencies else None,
    }


def cdf_points(latencies: list[float], points: int = 200) -> list[float]:
    """A down-sampled sorted copy, enough to draw a distribution."""
    if not latencies:
        return []
    ordered = sorted(latencies)
    step = max(1, len(ordered) // points)
    sample = ordered[::step]
    if sample[-1] != ordered[-1]:
        sample.append(ordered[-1])
    return [round(value, 3) for value in sample]


async def closed_loop(
    concurrency: int,
    duration: float,
    warmup: float,
    make_worker: Callable[[int], Callable[[], Awaitable[bool]]],
) -> dict:
    """Run `concurrency` clients back to back for warmup + duration seconds.

    Each worker call does one operation and returns True on success. Operations
    that complete in the measured window count; their latencies are recorded.
    """
    latencies: list[float] = []
    errors = 0
    completed = 0
    cpu0 = time.process_time()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + duration

    async def client(index: int) -> None:
        nonlocal errors, completed
        work = make_worker(index)
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                ok = await work()
            except (httpx.HTTPError, psycopg.Error, OSError):
                ok = False
            t1 = time.perf_counter()
            if t0 >= measure_from and t1 <= stop_at:
                if ok:
                    completed += 1
                    latencies.append((t1 - t0) * 1000)
                else:
                    errors += 1

    await asyncio.gather(*(client(index) for index in range(concurrency)))
    wall = time.perf_counter() - start
    result = summary(latencies)
    result.update(
        {
            "concurrency": concurrency,
            "ops_per_s": completed / duration,
            "errors": errors,
            "driver_cpu_share": (time.process_time() - cpu0) / wall,
            "cdf": cdf_points(latencies),
        }
    )
    return result


def http_client(concurrency: int) -> httpx.AsyncClient:
    limits = httpx.Limits(
        max_connections=concurrency + 8, max_keepalive_connections=concurrency + 8
    )
    return httpx.AsyncClient(limits=limits, timeout=60)


async def write_load(
    urls: list[str],
    players: list[dict],
    action: str,
    concurrency: int,
    duration: float,
    warmup: float,
) -> dict:
    """Score updates through the full API; client i writes as player i."""
    run = next(_run_ids)
    async with http_client(concurrency) as client:

        def make_worker(index: int):
            player = players[index % len(players)]
            url = f"{urls[index % len(urls)]}/api/scores/update"
            headers = {"Authorization": f"Bearer {player['access']}"}
            counter = itertools.count()

            async def work() -> bool:
                body = {"action_id": f"w{run}-{index}-{next(counter)}", "action": action}
                answer = await client.post(url, json=body, headers=headers)
                return answer.status_code == 200

            return work

        return await closed_loop(concurrency, duration, warmup, make_worker)


async def read_load(urls: list[str], concurrency: int, duration: float, warmup: float) -> dict:
    """GET /api/scores/leaderboard back to back."""
    async with http_client(concurrency) as client:

        def make_worker(index: int):
            url = f"{urls[index % len(urls)]}/api/scores/leaderboard"

            async def work() -> bool:
                answer = await client.get(url)
                return answer.status_code == 200

            return work

        return await closed_loop(concurrency, duration, warmup, make_worker)


# The statements the update path needs at the least: ledger insert, total increment,
# top-ten select (SPEC.md section 8), issued by a bare psycopg client.
SQL_INSERT = """
INSERT INTO scores_scoreevent
    (id, user_id, action_id, action_type_id, points, total_after, kind, reason,
     client_ip, created_at)
VALUES (%s, %s, %s, NULL, 1, NULL, 'action', '', '127.0.0.1', now())
"""
SQL_INCREMENT = """
UPDATE scores_score SET total = total + 1, reached_at = now(), revision = revision + 1
WHERE user_id = %s RETURNING total
"""
SQL_TOP = """
SELECT s.user_id, u.username, s.total, s.reached_at
FROM scores_score s JOIN accounts_user u ON u.id = s.user_id
WHERE NOT s.is_hidden ORDER BY s.total DESC, s.reached_at ASC, s.user_id ASC LIMIT 10
"""


async def sql_baseline(
    database_url: str, players: list[dict], concurrency: int, duration: float, warmup: float
) -> dict:
    """The same SQL as the update path needs, from bare psycopg, one connection per client."""
    run = next(_run_ids)
    connections = await _open_connections(database_url, concurrency)
    idle: asyncio.Queue = asyncio.Queue()
    for conn in connections:
        idle.put_nowait(conn)
    try:

        def make_worker(index: int):
            user_id = players[index % len(players)]["id"]
            counter = itertools.count()

            async def work() -> bool:
                conn = await idle.get()
                try:
                    async with conn.transaction():
                        await conn.execute(
                            SQL_INSERT, (uuid.uuid4(), user_id, f"s{run}-{index}-{next(counter)}")
                        )
                        await conn.execute(SQL_INCREMENT, (user_id,))
                    await (await conn.execute(SQL_TOP)).fetchall()
                finally:
                    idle.put_nowait(conn)
                return True

            return work

        result = await closed_loop(concurrency, duration, warmup, make_worker)
        result["connections"] = len(connections)
        return result
    finally:
        for conn in connections:
            await conn.close()


async def _open_connections(database_url: str, wanted: int) -> list:
    """Up to `wanted` connections; fewer if the server runs out (shared machines), never 0."""
    connections: list = []
    deadline = time.monotonic() + 10
    while len(connections) < wanted:
        try:
            connections.append(await psycopg.AsyncConnection.connect(database_url, autocommit=True))
        except psycopg.OperationalError:
            if time.monotonic() > deadline and connections:
                break
            if time.monotonic() > deadline + 20:
                raise
            await asyncio.sleep(0.5)
    return connections


async def redis_read_baseline(
    redis_url: str, key: str, concurrency: int, duration: float, warmup: float
) -> dict:
    """A bare Redis GET of the cached board: the floor under GET /api/scores/leaderboard."""
    client = aioredis.Redis.from_url(redis_url, max_connections=concurrency + 4)
    try:

        def make_worker(index: int):
            async def work() -> bool:
                return await client.get(key) is not None

            return work

        return await closed_loop(concurrency, duration, warmup, make_worker)
    finally:
        await client.aclose()


# -- WebSockets -----------------------------------------------------------------------


@dataclass
class Listener:
    """One WebSocket client that records every frame with its arrival time."""

    socket: ClientConnection
    frames: list[tuple[float, str]] = field(default_factory=list)
    task: asyncio.Task | None = None

    async def pump(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.socket:
                self.frames.append((time.perf_counter(), frame))

    def messages(self) -> list[tuple[float, dict]]:
        return [(t, json.loads(raw)) for t, raw in self.frames]


async def open_listeners(urls: list[str], count: int, batch: int = 50) -> list[Listener]:
    """Connect `count` clients round-robin over `urls`, `batch` at a time; wait for snapshots."""
    listeners: list[Listener] = []

    async def one(index: int) -> Listener:
        url = urls[index % len(urls)]
        origin = url.replace("ws://", "http://").split("/ws/")[0]
        socket = await connect(
            url, origin=origin, compression=None, max_size=None, open_timeout=60, ping_interval=None
        )
        listener = Listener(socket)
        listener.task = asyncio.create_task(listener.pump())
        return listener

    for first in range(0, count, batch):
        listeners += await asyncio.gather(
            *(one(index) for index in range(first, min(count, first + batch)))
        )
    deadline = time.perf_counter() + 30
    while any(not item.frames for item in listeners) and time.perf_counter() < deadline:
        await asyncio.sleep(0.05)
    return listeners


async def close_listeners(listeners: list[Listener]) -> None:
    async def one(listener: Listener) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(listener.socket.close(), 5)
        if listener.task is not None:
            listener.task.cancel()
            with contextlib.suppress(BaseException):
                await listener.task

    for first in range(0, len(listeners), 200):
        await asyncio.gather(*(one(item) for item in listeners[first : first + 200]))


async def update_to_screen(
    ws_urls: list[str],
    post_url: str,
    mover: dict,
    action: str,
    clients: int,
    updates: int,
    spacing: float,
) -> dict:
    """POST top-ten changes one at a time; time each until every client has received it."""
    listeners = await open_listeners(ws_urls, clients)
    connected = sum(1 for item in listeners if item.frames)
    sent_at: dict[int, float] = {}
    post_ms: list[float] = []
    run = next(_run_ids)
    errors = 0
    async with http_client(2) as client:
        headers = {"Authorization": f"Bearer {mover['access']}"}
        await asyncio.sleep(0.3)
        for index in range(updates):
            t0 = time.perf_counter()
            answer = await client.post(
                post_url, json={"action_id": f"m{run}-{index}", "action": action}, headers=headers
            )
            if answer.status_code != 200:
                errors += 1
                continue
            sent_at[answer.json()["new_total_score"]] = t0
            post_ms.append((time.perf_counter() - t0) * 1000)
            await asyncio.sleep(spacing)
    await asyncio.sleep(max(1.0, spacing * 2))
    await close_listeners(listeners)

    latencies: list[float] = []
    per_client_versions: list[set[int]] = []
    all_versions: set[int] = set()
    for listener in listeners:
        versions = set()
        for t, message in listener.messages():
            if message.get("type") != "leaderboard_update":
                continue
            changed = message.get("changed") or {}
            if changed.get("user_id") != mover["id"] or changed.get("score") not in sent_at:
                continue
            latencies.append((t - sent_at[changed["score"]]) * 1000)
            versions.add(message["version"])
        per_client_versions.append(versions)
        all_versions |= versions
    shares = [len(v) / len(all_versions) for v in per_client_versions] if all_versions else [0.0]
    result = summary(latencies)
    result.update(
        {
            "clients": clients,
            "connected": connected,
            "updates_sent": len(sent_at),
            "post_errors": errors,
            "versions_seen": len(all_versions),
            "post_p50_ms": percentile(post_ms, 50),
            "received_share_mean": statistics.fmean(shares),
            "received_share_min": min(shares),
            "cdf": cdf_points(latencies),
        }
    )
    return result


async def ws_baseline(
    url: str, trigger_url: str, clients: int, updates: int, spacing: float, payload_bytes: int
) -> dict:
    """The same fan-out from a bare `websockets` server (bench.ws_baseline): the floor."""
    listeners = await open_listeners([url], clients)
    sent_at: dict[int, float] = {}
    trigger = await connect(trigger_url, compression=None, ping_interval=None)
    await asyncio.sleep(0.3)
    for index in range(updates):
        sent_at[index] = time.perf_counter()
        await trigger.send(json.dumps({"seq": index, "size": payload_bytes}))
        await trigger.recv()
        await asyncio.sleep(spacing)
    await trigger.close()
    await asyncio.sleep(max(0.5, spacing * 2))
    await close_listeners(listeners)
    latencies = []
    shares = []
    for listener in listeners:
        seen = 0
        for t, raw in listener.frames:
            seq = json.loads(raw).get("seq")
            if seq in sent_at:
                latencies.append((t - sent_at[seq]) * 1000)
                seen += 1
        shares.append(seen / max(1, len(sent_at)))
    result = summary(latencies)
    result.update(
        {
            "clients": clients,
            "received_share_mean": statistics.fmean(shares) if shares else 0.0,
            "received_share_min": min(shares) if shares else 0.0,
            "cdf": cdf_points(latencies),
        }
    )
    return result


async def count_broadcasts(
    ws_url: str, run: Callable[[], Awaitable[dict]], settle: float = 1.0
) -> dict:
    """Run `run()` while one client listens; count the board updates it received."""
    (listener,) = await open_listeners([ws_url], 1)
    snapshot_version = listener.messages()[0][1]["version"]
    start = time.perf_counter()
    load = await run()
    elapsed = time.perf_counter() - start
    await asyncio.sleep(settle)
    await close_listeners([listener])
    updates = [(t, m) for t, m in listener.messages() if m.get("type") == "leaderboard_update"]
    versions = [m["version"] for _, m in updates]
    return {
        "load": load,
        "elapsed_s": elapsed,
        "broadcasts": len(updates),
        "versions_created": (max(versions) - snapshot_version) if versions else 0,
        "in_order": versions == sorted(versions),
        "times": [t - start for t, _ in updates],
    }


async def idle_sockets(ws_url: str, count: int, rss: Callable[[], int]) -> dict:
    """Resident memory of the server before and after `count` idle WebSocket clients."""
    await asyncio.sleep(1.0)
    before = rss()
    listeners = await open_listeners([ws_url], count)
    await asyncio.sleep(2.0)
    after = rss()
    connected = sum(1 for item in listeners if item.frames)
    await close_listeners(listeners)
    return {
        "sockets": connected,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "per_socket_kib": (after - before) / max(1, connected),
    }


async def write_count(
    url: str, players: list[dict], action: str, concurrency: int, total: int
) -> dict:
    """Exactly `total` score updates, `concurrency` at a time; client i writes as player i."""
    run = next(_run_ids)
    statuses: dict[int, int] = {}
    async with http_client(concurrency) as client:

        async def worker(index: int) -> None:
            player = players[index % len(players)]
            headers = {"Authorization": f"Bearer {player['access']}"}
            for n in range(index, total, concurrency):
                body = {"action_id": f"c{run}-{n}", "action": action}
                answer = await client.post(f"{url}/api/scores/update", json=body, headers=headers)
                statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(worker(index) for index in range(concurrency)))
        elapsed = time.perf_counter() - start
    return {"writes": total, "statuses": statuses, "ops_per_s": total / elapsed}
