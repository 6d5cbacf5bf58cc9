"""The benchmark run: start everything, measure the seven items of the issue, report, stop."""

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import redis

from bench import load, report
from bench.harness import (
    DEFAULT_DATABASE_SERVER,
    DEFAULT_REDIS_URL,
    ROOT,
    Server,
    Stack,
    cpu_seconds,
    free_port,
    rss_kib,
)

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Plan:
    mode: str
    write_levels: list[int]
    write_duration: float
    warmup: float
    baseline_duration: float
    read_concurrency: int
    read_duration: float
    nowaste_writes: int
    burst_duration: float
    ws_clients: list[int]
    ws_updates: int
    idle_sockets: int
    two_write_levels: list[int]
    two_ws_clients: list[int]
    alt_topologies: list[str]
    alt_write_levels: list[int]
    scale_sizes: list[int]
    scale_reps: int
    broadcast_interval_ms: int = 100
    writers: int = field(init=False)

    def __post_init__(self) -> None:
        self.writers = max(self.write_levels + self.two_write_levels + self.alt_write_levels)


QUICK = Plan(
    mode="quick",
    write_levels=[1, 8, 32],
    write_duration=1.5,
    warmup=0.3,
    baseline_duration=1.0,
    read_concurrency=16,
    read_duration=1.5,
    nowaste_writes=150,
    burst_duration=2.0,
    ws_clients=[1, 100],
    ws_updates=8,
    idle_sockets=300,
    two_write_levels=[8, 32],
    two_ws_clients=[100],
    alt_topologies=[],
    alt_write_levels=[],
    scale_sizes=[10_000],
    scale_reps=20,
)

FULL = Plan(
    mode="full",
    write_levels=[1, 8, 32, 64],
    write_duration=8.0,
    warmup=1.0,
    baseline_duration=4.0,
    read_concurrency=32,
    read_duration=5.0,
    nowaste_writes=1000,
    burst_duration=6.0,
    ws_clients=[1, 100, 1000],
    ws_updates=30,
    idle_sockets=1000,
    two_write_levels=[1, 8, 32, 64],
    two_ws_clients=[1, 100, 1000],
    alt_topologies=["uvicorn", "gthread"],
    alt_write_levels=[8, 32, 64],
    scale_sizes=[10_000, 100_000, 1_000_000],
    scale_reps=50,
)

TOPOLOGY_LABELS = {
    "daphne1": "1 Daphne process",
    "daphne2": "2 Daphne processes (a port each)",
    "uvicorn": "gunicorn + 2 uvicorn workers (ASGI)",
    "gthread": "gunicorn 2 gthread workers x 8 threads (WSGI)",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Run:
    """One benchmark run: holds the stack, the players and the results."""

    def __init__(self, plan: Plan, stack: Stack) -> None:
        self.plan = plan
        self.stack = stack
        self.players: dict = {}
        self.results: dict = {
            "meta": {},
            "write": {},
            "read": {},
            "ws": {},
            "no_waste": {},
            "burst": {},
            "memory": {},
            "scale": {},
            "anatomy": {},
            "errors": [],
        }

    # -- helpers ----------------------------------------------------------------------

    def tokens(self) -> dict:
        if time.time() - self.players.get("minted_at", 0) > 8 * 60:
            self.players = self.stack.djtask("tokens")
        return self.players

    def server_cpu(self, servers: list[Server]) -> float:
        total = 0.0
        for server in servers:
            for pid in server.pids():
                with contextlib.suppress(OSError):
                    total += cpu_seconds(pid)
        return total

    def redis_connections(self) -> int:
        """Connections the Redis server has accepted so far (all its clients: approximate)."""
        client = redis.Redis.from_url(self.stack.redis_url)
        try:
            return int(client.info("stats")["total_connections_received"])
        finally:
            client.close()

    def measured(self, servers: list[Server], coro_factory) -> dict:
        """Run a load; add the servers' CPU and new Redis connections per operation."""
        cpu0 = self.server_cpu(servers)
        connections0 = self.redis_connections()
        result = asyncio.run(coro_factory())
        cpu = self.server_cpu(servers) - cpu0
        connections = self.redis_connections() - connections0
        operations = result.get("n", 0) + result.get("errors", 0)
        if operations:
            result["server_cpu_ms_per_op"] = cpu * 1000 / operations
            result["redis_connects_per_op"] = connections / operations
        return result

    def anatomy(self) -> None:
        """SQL statements and Redis round trips of one request (bench.djtasks anatomy)."""
        answer = self.stack.djtask("anatomy", env={"ALLOWED_HOSTS": "testserver"})
        self.results["anatomy"] = answer
        for kind, row in answer.items():
            log(f"  {kind}: {row['sql']:.0f} SQL statements, {row['redis']:.0f} Redis round trips")

    def guarded(self, name: str, func) -> None:
        """Run one phase; a failure is recorded and the run goes on."""
        log(name)
        try:
            func()
        except Exception as exc:  # a broken phase must not lose the others' figures
            log(f"{name} FAILED: {exc}")
            self.results["errors"].append({"phase": name, "error": repr(exc)})
            traceback.print_exc()

    # -- phases -------------------------------------------------------------------------

    def setup(self) -> None:
        self.stack.create_database()
        self.stack.manage("migrate", "--noinput")
        answer = self.stack.djtask("setup", "--writers", str(self.plan.writers))
        self.players = answer["tokens"]
        self.board_bytes = len(json.dumps({"type": "leaderboard_update", **answer["board"]}))

    def writes(self, topology: str, servers: list[Server], levels: list[int]) -> None:
        urls = [server.base_url for server in servers]
        table = self.results["write"].setdefault(topology, {})
        for level in levels:
            players = self.tokens()
            result = self.measured(
                servers,
                lambda level=level, players=players: load.write_load(
                    urls,
                    players["writer"],
                    players["point_action"],
                    level,
                    self.plan.write_duration,
                    self.plan.warmup,
                ),
            )
            table[str(level)] = result
            log(
                f"  write {topology} c={level}: {result['ops_per_s']:.0f}/s "
                f"p50 {result['p50_ms']:.1f} ms p99 {result['p99_ms']:.1f} ms "
                f"errors {result['errors']}"
            )

    def sql_baseline(self, levels: list[int]) -> None:
        table = self.results["write"].setdefault("baseline_sql", {})
        for level in levels:
            result = asyncio.run(
                load.sql_baseline(
                    self.stack.database_url,
                    self.players["base"],
                    level,
                    self.plan.baseline_duration,
                    self.plan.warmup,
                )
            )
            table[str(level)] = result
            log(
                f"  bare SQL c={level} ({result['connections']} connections): "
                f"{result['ops_per_s']:.0f}/s p99 {result['p99_ms']:.1f} ms"
            )

    def reads(self, topology: str, servers: list[Server]) -> None:
        urls = [server.base_url for server in servers]
        level = self.plan.read_concurrency
        result = self.measured(
            servers,
            lambda: load.read_load(urls, level, self.plan.read_duration, self.plan.warmup),
        )
        self.results["read"][topology] = result
        log(
            f"  read {topology} c={level}: {result['ops_per_s']:.0f}/s "
            f"p99 {result['p99_ms']:.1f} ms"
        )

    def redis_read_baseline(self) -> None:
        key = f"{self.stack.cache_prefix}:board:top"
        result = asyncio.run(
            load.redis_read_baseline(
                self.stack.redis_url,
                key,
                self.plan.read_concurrency,
                self.plan.read_duration,
                self.plan.warmup,
            )
        )
        self.results["read"]["baseline_redis"] = result
        log(f"  bare Redis GET: {result['ops_per_s']:.0f}/s")

    def no_waste(self, server: Server) -> None:
        players = self.tokens()

        def run():
            return load.write_count(
                server.base_url,
                players["writer"],
                players["point_action"],
                8,
                self.plan.nowaste_writes,
            )

        result = asyncio.run(load.count_broadcasts(server.ws_url, run))
        result.pop("times")
        result["broadcasts_per_1000_writes"] = (
            result["broadcasts"] * 1000 / self.plan.nowaste_writes
        )
        self.results["no_waste"] = result
        log(f"  no-waste: {result['broadcasts']} broadcasts for {self.plan.nowaste_writes} writes")

    def burst(self, server: Server) -> None:
        players = self.tokens()
        elites = players["elite"][:8]

        def run():
            return load.write_load(
                [server.base_url],
                elites,
                players["point_action"],
                len(elites),
                self.plan.burst_duration,
                0.0,
            )

        result = asyncio.run(load.count_broadcasts(server.ws_url, run, settle=0.5))
        times = result.pop("times")
        result["load"].pop("cdf", None)
        elapsed = result["elapsed_s"]
        in_window = [t for t in times if t <= elapsed]
        result["broadcasts_per_s"] = len(in_window) / elapsed
        result["versions_per_s"] = result["versions_created"] / elapsed
        result["bound_per_s"] = 1000 / self.plan.broadcast_interval_ms
        gaps = [b - a for a, b in itertools.pairwise(in_window)]
        result["min_gap_ms"] = min(gaps) * 1000 if gaps else None
        self.results["burst"] = result
        log(
            f"  burst: {result['load']['ops_per_s']:.0f} top-ten writes/s -> "
            f"{result['broadcasts_per_s']:.1f} broadcasts/s (bound {result['bound_per_s']:.0f}/s)"
        )

    def update_to_screen(self, topology: str, servers: list[Server], counts: list[int]) -> None:
        table = self.results["ws"].setdefault(topology, {})
        ws_urls = [server.ws_url for server in servers]
        for clients in counts:
            players = self.tokens()
            updates = (
                self.plan.ws_updates if clients < 1000 else max(10, self.plan.ws_updates * 2 // 3)
            )
            spacing = 0.25 if clients < 1000 else 0.6
            result = asyncio.run(
                load.update_to_screen(
                    ws_urls,
                    f"{servers[0].base_url}/api/scores/update",
                    players["mover"][0],
                    players["point_action"],
                    clients,
                    updates,
                    spacing,
                )
            )
            table[str(clients)] = result
            log(
                f"  update-to-screen {topology} {clients} clients: p50 {result['p50_ms']} "
                f"p99 {result['p99_ms']} max {result['max_ms']} ms, "
                f"share {result['received_share_min']:.3f}"
            )

    def ws_baseline_server(self) -> tuple[subprocess.Popen, int]:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.ws_baseline", str(port)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout is not None
        process.stdout.readline()
        return process, port

    def ws_baseline(self, counts: list[int]) -> None:
        process, port = self.ws_baseline_server()
        try:
            table = self.results["ws"].setdefault("baseline_ws", {})
            for clients in counts:
                updates = (
                    self.plan.ws_updates
                    if clients < 1000
                    else max(10, self.plan.ws_updates * 2 // 3)
                )
                spacing = 0.25 if clients < 1000 else 0.6
                result = asyncio.run(
                    load.ws_baseline(
                        f"ws://127.0.0.1:{port}/",
                        f"ws://127.0.0.1:{port}/trigger",
                        clients,
                        updates,
                        spacing,
                        self.board_bytes,
                    )
                )
                table[str(clients)] = result
                log(f"  bare websockets {clients} clients: p99 {result['p99_ms']} ms")
        finally:
            process.terminate()
            process.wait(timeout=10)
        # Memory on a fresh process, like the Daphne figure.
        process, port = self.ws_baseline_server()
        try:
            memory = asyncio.run(
                load.idle_sockets(
                    f"ws://127.0.0.1:{port}/", self.plan.idle_sockets, lambda: rss_kib(process.pid)
                )
            )
            self.results["memory"]["baseline_ws"] = memory
        finally:
            process.terminate()
            process.wait(timeout=10)

    def memory(self, server: Server) -> None:
        """Idle sockets on a freshly started Daphne process."""
        result = asyncio.run(
            load.idle_sockets(server.ws_url, self.plan.idle_sockets, lambda: rss_kib(server.pid))
        )
        self.results["memory"]["daphne"] = result
        log(
            f"  memory: {result['sockets']} idle sockets, {result['per_socket_kib']:.1f} KiB each "
            f"(RSS {result['rss_before_kib']} -> {result['rss_after_kib']} KiB)"
        )

    def scale(self) -> None:
        sizes = ",".join(str(size) for size in self.plan.scale_sizes)
        answer = self.stack.djtask("scale", "--sizes", sizes, "--reps", str(self.plan.scale_reps))
        self.results["scale"] = answer
        for entry in answer["sizes"]:
            ranks = entry["ranks"]
            log(
                f"  scale {entry['players']}: top10 {entry['top10_orm_ms']:.2f} ms, "
                f"bottom rank COUNT {ranks['bottom']['db_count_ms']:.2f} ms, "
                f"Redis {ranks['bottom']['redis_ms']:.3f} ms"
            )

    # -- the whole run ------------------------------------------------------------------------

    def execute(self) -> dict:
        plan = self.plan
        started = time.time()
        self.results["meta"] = meta(plan)
        self.setup()

        self.guarded("anatomy of a request", self.anatomy)

        log("topology: 1 Daphne process")
        one = [self.stack.start("daphne")]
        self.guarded("write path, 1 Daphne", lambda: self.writes("daphne1", one, plan.write_levels))
        self.guarded("bare SQL baseline", lambda: self.sql_baseline(plan.write_levels))
        self.guarded("reads, 1 Daphne", lambda: self.reads("daphne1", one))
        self.guarded("bare Redis read baseline", self.redis_read_baseline)
        self.guarded("no waste", lambda: self.no_waste(one[0]))
        self.guarded("burst", lambda: self.burst(one[0]))
        self.guarded(
            "update to screen, 1 Daphne",
            lambda: self.update_to_screen("daphne1", one, plan.ws_clients),
        )
        self.guarded("bare websockets baseline", lambda: self.ws_baseline(plan.ws_clients))

        log("topology: 2 Daphne processes")
        two = [*one, self.stack.start("daphne")]
        self.guarded("memory, fresh Daphne", lambda: self.memory(two[1]))
        self.guarded(
            "write path, 2 Daphne", lambda: self.writes("daphne2", two, plan.two_write_levels)
        )
        self.guarded("reads, 2 Daphne", lambda: self.reads("daphne2", two))
        self.guarded(
            "update to screen, 2 Daphne",
            lambda: self.update_to_screen("daphne2", two, plan.two_ws_clients),
        )
        self.stack.stop_all()

        for kind in plan.alt_topologies:
            log(f"topology: {TOPOLOGY_LABELS[kind]}")
            try:
                servers = [self.stack.start(kind, workers=2)]
            except Exception as exc:
                self.results["errors"].append({"phase": kind, "error": repr(exc)})
                log(f"{kind} did not start: {exc}")
                continue
            self.guarded(
                f"write path, {kind}",
                lambda s=servers, k=kind: self.writes(k, s, plan.alt_write_levels),
            )
            self.guarded(f"reads, {kind}", lambda s=servers, k=kind: self.reads(k, s))
            self.stack.stop_all()

        self.guarded("scale", self.scale)
        self.results["meta"]["duration_s"] = round(time.time() - started, 1)
        self.results["meta"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        return self.results


def meta(plan: Plan) -> dict:
    memory_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory_kib = int(line.split()[1])
    cpu_model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "mode": plan.mode,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "nproc": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "cpu": cpu_model,
        "python": platform.python_version(),
        "commit": commit,
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        "plan": asdict(plan),
        "topologies": TOPOLOGY_LABELS,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, short runs (< 2 min)")
    parser.add_argument(
        "--output", default=str(RESULTS), help="directory for latest.json and latest.png"
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_SERVER
    if not database_url.startswith("postgres"):
        parser.error("DATABASE_URL must be a postgres:// URL (the benchmark needs PostgreSQL).")
    stack = Stack(
        database_server=database_url,
        redis_url=os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL,
    )
    log(f"{plan.mode} run; database {stack.tag}; server logs in {stack.logdir}")
    run = Run(plan, stack)
    try:
        results = run.execute()
    finally:
        stack.close()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    report.evaluate_targets(results)
    (output / "latest.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report.plot(results, output / "latest.png")
    print(report.table(results))
    log(f"wrote {output / 'latest.json'} and {output / 'latest.png'}")
    return 1 if results["errors"] else 0
