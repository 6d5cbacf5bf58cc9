"""What the benchmark starts and stops: a fresh database, Redis prefixes, server processes.

Nothing here imports Django: the settings are read by the processes started
here (servers and `bench.djtasks`), from the environment built by `Stack.env`.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
DEFAULT_DATABASE_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/6"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    """Resident memory of a process in KiB (VmRSS from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def children_of(pid: int) -> list[int]:
    """Direct child processes of `pid` (gunicorn workers)."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(part) for part in text.split()]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@dataclass
class Stack:
    """The benchmark's database and Redis namespace, and the processes started on them."""

    database_server: str = DEFAULT_DATABASE_SERVER
    redis_url: str = DEFAULT_REDIS_URL
    tag: str = field(
        default_factory=lambda: f"bench_{time.strftime('%Y%m%d_%H%M%S')}_{os.getpid()}"
    )
    logdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="bench-logs-")))
    servers: list["Server"] = field(default_factory=list)
    created_database: bool = False

    @property
    def database_url(self) -> str:
        return _with_database(self.database_server, self.tag)

    @property
    def cache_prefix(self) -> str:
        return self.tag

    @property
    def channel_prefix(self) -> str:
        return f"{self.tag}:asgi"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment every process of the run gets (SPEC.md section 3)."""
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "CACHE_KEY_PREFIX": self.cache_prefix,
                "CHANNEL_PREFIX": self.channel_prefix,
                "SCORE_RATE_LIMIT": "1000000/m",
                "AUTH_RATE_LIMIT": "1000000/m",
                "ACCESS_TOKEN_MINUTES": "15",
                "DEBUG": "0",
                "SECRET_KEY": f"bench-secret-{self.tag}-not-for-production",
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "LOG_LEVEL": "WARNING",
                "PYTHONUNBUFFERED": "1",
                "DJANGO_SETTINGS_MODULE": "leaderboard.settings",
            }
        )
        env.pop("TEST_DATABASE_NAME", None)
        env.update(extra)
        return env

    # -- database ------------------------------------------------------------------

    def create_database(self) -> None:
        with psycopg.connect(self.database_server, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.tag}"')
        self.created_database = True

    def drop_database(self) -> None:
        if not self.created_database:
            return
        with psycopg.connect(self.database_server, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.tag}" WITH (FORCE)')
        self.created_database = False

    def flush_redis(self) -> int:
        """Delete every key of this run (cache, board, channel layer)."""
        client = redis.Redis.from_url(self.redis_url)
        deleted = 0
        for pattern in (f"{self.cache_prefix}:*", f"{self.channel_prefix}*"):
            batch = []
            for key in client.scan_iter(match=pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += client.delete(*batch)
                    batch = []
            if batch:
                deleted += client.delete(*batch)
        client.close()
        return deleted

    def manage(self, *args: str) -> None:
        subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def djtask(self, *args: str, timeout: float = 900, env: dict | None = None) -> dict:
        """Run `python -m bench.djtasks ARGS` (Django side) and return its JSON answer."""
        done = subprocess.run(
            [sys.executable, "-m", "bench.djtasks", *args],
            cwd=ROOT,
            env=self.env(**(env or {})),
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"bench.djtasks {args[0]} failed:\n{done.stderr[-4000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    # -- servers ----------------------------------------------------------------------

    def start(self, kind: str, **options) -> "Server":
        server = Server(kind=kind, port=free_port(), stack=self, options=options)
        server.start()
        self.servers.append(server)
        return server

    def stop_all(self) -> None:
        while self.servers:
            self.servers.pop().stop()

    def close(self) -> None:
        self.stop_all()
        try:
            self.flush_redis()
        finally:
            self.drop_database()


@dataclass
class Server:
    """One server process: Daphne, gunicorn + uvicorn workers (ASGI), or gunicorn gthread (WSGI)."""

    kind: str
    port: int
    stack: Stack
    options: dict
    process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/leaderboard/"

    def command(self) -> list[str]:
        bind = f"127.0.0.1:{self.port}"
        workers = str(self.options.get("workers", 2))
        if self.kind == "daphne":
            return [
                str(VENV_BIN / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-v",
                "0",
                "--websocket_timeout",
                "86400",
                "leaderboard.asgi:application",
            ]
        if self.kind == "uvicorn":
            return [
                str(VENV_BIN / "gunicorn"),
                "leaderboard.asgi:application",
                "-k",
                "uvicorn.workers.UvicornWorker",
                "-w",
                workers,
                "-b",
                bind,
                "--log-level",
                "warning",
            ]
        if self.kind == "gthread":
            return [
                str(VENV_BIN / "gunicorn"),
                "leaderboard.wsgi:application",
                "-k",
                "gthread",
                "-w",
                workers,
                "--threads",
                str(self.options.get("threads", 8)),
                "-b",
                bind,
                "--log-level",
                "warning",
            ]
        raise ValueError(self.kind)

    def start(self) -> None:
        log = (self.stack.logdir / f"{self.kind}-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            self.command(), cwd=ROOT, env=self.stack.env(), stdout=log, stderr=subprocess.STDOUT
        )
        self.wait_ready()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} on port {self.port} exited; see {self.stack.logdir}"
                )
            try:
                with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.kind} on port {self.port} did not become ready")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def pids(self) -> list[int]:
        """The processes that serve requests (the workers, for gunicorn)."""
        return children_of(self.pid) if self.kind in ("uvicorn", "gthread") else [self.pid]

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
