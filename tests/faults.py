"""Real servers for fault tests: a private redis-server, Daphne subprocesses, WebSocket clients.

Everything binds 127.0.0.1 on free ports. Tests start these themselves and kill
them to inject faults; nothing here mocks a failure.
"""

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Every fault test starts real servers on the real PostgreSQL test database and
# real Redis, so it needs both, is slow, and needs committed data.
LIVE_SERVER_MARKS = [
    pytest.mark.needs_postgres,
    pytest.mark.needs_redis,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05, what=""):
    """Poll `predicate` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # polling a server that may be down
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}: {last_exc}")


class RedisServer:
    """A throw-away redis-server without persistence: a restart loses every key."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, 10, what=f"redis on {self.port}")
        return self

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, decode_responses=True)


def database_url() -> str:
    """A postgres:// URL for the database the test process uses (the pytest test database)."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    user = quote(db.get("USER") or "")
    password = quote(db.get("PASSWORD") or "")
    auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{db['NAME']}"


class Daphne:
    """`daphne leaderboard.asgi:application` in a subprocess, pointed at the test database."""

    def __init__(self, redis_url: str, *, port: int | None = None, extra_env=None, args=()) -> None:
        self.port = port or free_port()
        self.redis_url = redis_url
        self.extra_env = dict(extra_env or {})
        self.args = list(args)
        self.proc: subprocess.Popen | None = None
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115 - kept open for the child
            prefix="daphne-", suffix=".log", delete=False
        )
        self.base = f"http://127.0.0.1:{self.port}"
        self.ws_url = f"ws://127.0.0.1:{self.port}/ws/leaderboard/"

    def env(self) -> dict:
        from django.conf import settings

        env = dict(os.environ)
        env.pop("TEST_DATABASE_NAME", None)
        env.update(
            {
                "DATABASE_URL": database_url(),
                "REDIS_URL": self.redis_url,
                "CACHE_KEY_PREFIX": "rel",
                "CHANNEL_PREFIX": "rel",
                "SCORE_RATE_LIMIT": "100000/m",
                "AUTH_RATE_LIMIT": "100000/m",
                "DB_POOL_MAX": "10",
                "PYTHONUNBUFFERED": "1",
                "LOG_LEVEL": "WARNING",
                # Production mode; tokens minted by the test process stay valid.
                "DEBUG": "0",
                "SECRET_KEY": "reliability-tests-secret-key-" + "x" * 32,
                "JWT_SIGNING_KEY": settings.SIMPLE_JWT["SIGNING_KEY"],
            }
        )
        env.update(self.extra_env)
        return env

    def start(self) -> "Daphne":
        self.proc = subprocess.Popen(
            [
                str(BIN / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                *self.args,
                "leaderboard.asgi:application",
            ],
            cwd=ROOT,
            env=self.env(),
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        wait_until(self._alive, 30, what=f"daphne on {self.port}")
        return self

    def _alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"daphne exited with {self.proc.returncode}:\n{self.output()}")
        return httpx.get(f"{self.base}/healthz", timeout=1).status_code == 200

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-20000:]

    def server_errors(self) -> list[str]:
        """Tracebacks and 5xx access-log lines in the server's output."""
        return [
            line
            for line in self.output().splitlines()
            if "Traceback" in line or " 500 " in line or "Internal Server Error" in line
        ]


def access_token(user) -> str:
    from rest_framework_simplejwt.tokens import AccessToken

    return str(AccessToken.for_user(user))


def new_action_id() -> str:
    return f"a-{uuid.uuid4().hex}"


class WsClient:
    """A WebSocket client on its own thread: records every frame, optionally reconnects.

    `board` is what a browser would show: the newest version seen and its rows.
    """

    def __init__(self, url: str, *, reconnect: bool = False, origin: str | None = None) -> None:
        self.url = url
        self.origin = origin or url.replace("ws://", "http://").split("/ws/")[0]
        self.reconnect = reconnect
        self.messages: list[dict] = []
        self.connects = 0
        self.handshake_failures: list[int] = []
        self.closed_code: int | None = None
        self.version = -1
        self.rows: list[tuple[str, int]] | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._ws = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self, timeout: float = 30) -> "WsClient":
        self._thread.start()
        self.wait_for(lambda m: m["type"] == "leaderboard_snapshot", timeout)
        return self

    def _run(self) -> None:
        self._loop.run_until_complete(self._main())

    async def _main(self) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed, InvalidHandshake

        backoff = 0.1
        while not self._stop:
            try:
                async with connect(
                    self.url, origin=self.origin, open_timeout=5, max_size=2**22
                ) as ws:
                    self._ws = ws
                    with self._cond:
                        self.connects += 1
                        self.closed_code = None
                        self._cond.notify_all()
                    backoff = 0.1
                    async for raw in ws:
                        self._record(json.loads(raw))
            except (TimeoutError, OSError, ConnectionClosed, InvalidHandshake) as exc:
                code = getattr(getattr(exc, "rcvd", None), "code", None)
                status = getattr(getattr(exc, "response", None), "status_code", None)
                if status is not None:
                    self.handshake_failures.append(status)
                with self._cond:
                    self.closed_code = code if code is not None else -1
                    self._cond.notify_all()
            finally:
                self._ws = None
            if not self.reconnect:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    def _record(self, message: dict) -> None:
        with self._cond:
            self.messages.append(message)
            version = message.get("version")
            is_board = message.get("type", "").startswith("leaderboard")
            if is_board and version is not None and version > self.version:
                self.version = version
                self.rows = [(r["user_id"], r["score"]) for r in message["leaderboard"]]
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[dict], bool], timeout: float, start: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for message in self.messages[start:]:
                    if predicate(message):
                        return message
                left = deadline - time.monotonic()
                if left <= 0:
                    types = [m.get("type") for m in self.messages]
                    raise AssertionError(f"no matching message in {timeout}s; got {types}")
                self._cond.wait(left)

    def wait_state(self, predicate: Callable[["WsClient"], bool], timeout: float, what="") -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"timed out waiting for {what}")
                self._cond.wait(left)

    def send(self, text: str) -> None:
        ws = self._ws
        assert ws is not None, "not connected"
        asyncio.run_coroutine_threadsafe(ws.send(text), self._loop).result(10)

    def close(self) -> None:
        self._stop = True
        ws = self._ws
        if ws is not None and self._loop.is_running():
            with contextlib.suppress(Exception):  # closing a socket that may be gone
                asyncio.run_coroutine_threadsafe(ws.close(), self._loop).result(5)
        self._thread.join(10)


def db_top(limit: int = 10) -> list[tuple[str, int]]:
    """The exact top ten from the database, as (user_id, score) rows."""
    from scores.selectors import top_rows_from_db

    return [(row["user_id"], row["score"]) for row in top_rows_from_db(limit)]


def api_top(base: str) -> list[tuple[str, int]]:
    body = httpx.get(f"{base}/api/scores/leaderboard", timeout=10).json()
    return [(row["user_id"], row["score"]) for row in body["leaderboard"]]


def check_scores_clean() -> str:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("check_scores", stdout=out)
    return out.getvalue()
