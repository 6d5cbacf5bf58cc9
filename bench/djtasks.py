"""The Django side of the benchmark, run as `python -m bench.djtasks COMMAND` in its own process.

- `setup`: the catalog and the benchmark's players, their access tokens, the rank index.
- `tokens`: fresh access tokens for the same players.
- `scale`: bulk-load players with COPY and time the top ten and single ranks.

Each command prints one JSON line (the last line of stdout).
"""

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import timedelta

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leaderboard.settings")
django.setup()

from django.contrib.auth.hashers import make_password  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402
from rest_framework_simplejwt.tokens import AccessToken  # noqa: E402

from accounts.models import User  # noqa: E402
from scores import selectors  # noqa: E402
from scores.board import get_store, leaderboard_snapshot, player_rank  # noqa: E402
from scores.models import ActionType, Score  # noqa: E402
from scores.selectors import db_rank, ranked_scores, top_rows_from_db  # noqa: E402
from scores.services import score_award, score_correct  # noqa: E402

POINT = "bench-point"  # 1 point: never enough to reach the top ten
GROUPS = ("writer", "base", "elite", "mover")


def _players(group: str) -> list[User]:
    return list(User.objects.filter(username__startswith=f"bench-{group}-").order_by("username"))


def _make_players(group: str, count: int) -> list[User]:
    unusable = make_password(None)
    users = [
        User(username=f"bench-{group}-{index:04d}", password=unusable) for index in range(count)
    ]
    User.objects.bulk_create(users)
    return _players(group)


def _tokens() -> dict:
    answer = {}
    for group in GROUPS:
        answer[group] = [
            {"id": str(user.pk), "access": str(AccessToken.for_user(user))}
            for user in _players(group)
        ]
    answer["point_action"] = POINT
    answer["minted_at"] = time.time()
    return answer


def setup(args) -> dict:
    ActionType.objects.update_or_create(
        code=POINT,
        defaults={
            "name": "Benchmark point",
            "points": 1,
            "cooldown_seconds": 0,
            "daily_limit": None,
        },
    )
    _make_players("writer", args.writers)
    base = _make_players("base", args.writers)
    elites = _make_players("elite", args.elites)
    (mover,) = _make_players("mover", 1)
    # Elites hold the top ten at a million points and more; writers start at zero and
    # add one point a time, so a writer's update never changes the top ten.
    for index, user in enumerate(elites):
        score_award(user=user, action_id="bench-seed", points=1_000_000 - index, reason="bench")
    # The mover sits far above everyone: each of its one-point updates changes the top ten.
    score_correct(user=mover, points=1_000_000_000, reason="bench mover", created_by=None)
    # Baseline players get a score row directly: only the bare-SQL client writes for them.
    now = timezone.now()
    Score.objects.bulk_create([Score(user=user, total=0, reached_at=now) for user in base])
    get_store().rebuild()
    return {"tokens": _tokens(), "board": leaderboard_snapshot()}


def tokens(args) -> dict:
    return _tokens()


# -- scale -------------------------------------------------------------------------


def _median_ms(func, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        func()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _copy_players(count: int, start_index: int) -> float:
    """Append `count` players (users and their score rows) with COPY; return seconds."""
    user_fields = [f for f in User._meta.concrete_fields]
    score_fields = [f for f in Score._meta.concrete_fields]
    unusable = make_password(None)
    now = timezone.now()
    rng = random.Random(start_index)
    ids = [uuid.uuid4() for _ in range(count)]
    user_values = {
        "id": None,
        "password": unusable,
        "username": None,
        "date_joined": now,
        "is_active": True,
        "is_staff": False,
        "is_superuser": False,
    }

    def user_row(index: int, user_id: uuid.UUID) -> list:
        row = []
        for f in user_fields:
            if f.name == "id":
                row.append(user_id)
            elif f.name == "username":
                row.append(f"scale-{start_index + index:07d}")
            elif f.name in user_values:
                row.append(user_values[f.name])
            elif f.has_default():
                row.append(f.get_default())
            elif f.null:
                row.append(None)
            else:
                row.append("")
        return row

    def score_row(user_id: uuid.UUID) -> list:
        values = {
            "user": user_id,
            "total": rng.randint(0, 900_000),
            "reached_at": now - timedelta(seconds=rng.randint(0, 86_400 * 30)),
            "is_hidden": False,
            "hidden_reason": "",
            "revision": 1,
        }
        row = []
        for f in score_fields:
            if f.name in values:
                row.append(values[f.name])
            elif f.has_default():
                row.append(f.get_default())
            else:
                row.append(None)
        return row

    start = time.perf_counter()
    with connection.cursor() as wrapper:
        cursor = wrapper.cursor
        user_columns = ", ".join(f'"{f.column}"' for f in user_fields)
        with cursor.copy(f"COPY {User._meta.db_table} ({user_columns}) FROM STDIN") as copy:
            for index, user_id in enumerate(ids):
                copy.write_row(user_row(index, user_id))
        score_columns = ", ".join(f'"{f.column}"' for f in score_fields)
        with cursor.copy(f"COPY {Score._meta.db_table} ({score_columns}) FROM STDIN") as copy:
            for user_id in ids:
                copy.write_row(score_row(user_id))
        wrapper.execute(f"VACUUM ANALYZE {User._meta.db_table}")
        wrapper.execute(f"VACUUM ANALYZE {Score._meta.db_table}")
    return time.perf_counter() - start


def _score_at(position: int) -> Score:
    return ranked_scores()[position - 1 : position].get()


def _raw_ms(sql: str, params, reps: int) -> float:
    with connection.cursor() as cursor:

        def run():
            cursor.execute(sql, params)
            cursor.fetchall()

        return _median_ms(run, reps)


def scale(args) -> dict:
    store = get_store()
    results = []
    loaded = 0
    for size in [int(part) for part in args.sizes.split(",")]:
        have = Score.objects.filter(is_hidden=False).count()
        load_s = _copy_players(size - have, loaded) if size > have else 0.0
        loaded += max(size - have, 0)
        players = Score.objects.filter(is_hidden=False).count()
        top_sql, top_params = ranked_scores().select_related("user")[:10].query.sql_with_params()
        entry = {
            "players": players,
            "load_s": round(load_s, 2),
            "top10_orm_ms": _median_ms(top_rows_from_db, args.reps),
            "top10_sql_ms": _raw_ms(top_sql, top_params, args.reps),
            "ranks": {},
        }
        start = time.perf_counter()
        store.rebuild()
        entry["index_rebuild_s"] = round(time.perf_counter() - start, 2)
        entry["top10_cached_ms"] = _median_ms(leaderboard_snapshot, args.reps)
        for label, position in (("top", 1), ("middle", players // 2), ("bottom", players)):
            score = _score_at(position)
            reps_db = args.reps if label == "top" else max(3, args.reps // 10)

            def count_rank(score=score):
                return db_rank(
                    user_id=score.user_id, total=score.total, reached_at=score.reached_at
                )

            assert count_rank() == position, (label, count_rank(), position)
            assert player_rank(score) == position, (label, player_rank(score), position)
            entry["ranks"][label] = {
                "position": position,
                "db_count_ms": _median_ms(count_rank, reps_db),
                "redis_ms": _median_ms(lambda score=score: player_rank(score), args.reps),
                "neighbors_ms": _median_ms(
                    lambda score=score, position=position: selectors.neighbors(
                        score=score, rank=position, count=5
                    ),
                    max(3, args.reps // 10),
                ),
            }
        results.append(entry)
        print(json.dumps({"progress": entry}), file=sys.stderr, flush=True)
    return {"sizes": results}


def anatomy(args) -> dict:
    """Round trips of one request through the real ASGI handler: SQL, Redis, new connections.

    Counted by wrapping the client classes in this process, so every thread's calls
    count (sync views run in asgiref's executor thread).
    """
    import asyncio

    import redis
    from django.db.backends import utils as db_utils
    from django.test import AsyncClient

    counts = {"sql": 0, "redis": 0, "redis_connects": 0}
    sql_log: list[str] = []
    original_execute = db_utils.CursorWrapper._execute
    original_command = redis.Redis.execute_command
    original_pipeline = redis.client.Pipeline.execute
    original_connect = redis.connection.Connection._connect

    def count_sql(self, sql, *rest, **kwargs):
        counts["sql"] += 1
        sql_log.append(sql.split(" WHERE ")[0][:90])
        return original_execute(self, sql, *rest, **kwargs)

    def count_command(self, *command_args, **kwargs):
        counts["redis"] += 1
        return original_command(self, *command_args, **kwargs)

    def count_pipeline(self, *pipeline_args, **kwargs):
        counts["redis"] += 1
        return original_pipeline(self, *pipeline_args, **kwargs)

    def count_connect(self, *connect_args, **kwargs):
        counts["redis_connects"] += 1
        return original_connect(self, *connect_args, **kwargs)

    db_utils.CursorWrapper._execute = count_sql
    redis.Redis.execute_command = count_command
    redis.client.Pipeline.execute = count_pipeline
    redis.connection.Connection._connect = count_connect

    writer = _players("writer")[0]
    elite = _players("elite")[0]
    client = AsyncClient()  # host "testserver": run with ALLOWED_HOSTS including it

    async def request(kind: str, user=None, index: int = 0):
        if kind == "read":
            return await client.get("/api/scores/leaderboard")
        token = str(AccessToken.for_user(user))
        return await client.post(
            "/api/scores/update",
            {"action_id": f"anatomy-{kind}-{index}", "action": POINT},
            content_type="application/json",
            headers={"authorization": f"Bearer {token}"},
        )

    async def measure(kind: str, user=None) -> dict:
        await request(kind, user, 0)  # warm: imports, pools, prepared state
        before = dict(counts)
        del sql_log[:]
        reps = 3
        for index in range(1, reps + 1):
            answer = await request(kind, user, index)
            assert answer.status_code == 200, answer.content
        row = {key: (counts[key] - before[key]) / reps for key in counts}
        row["sql_statements"] = sql_log[: int(row["sql"])]
        return row

    async def all_kinds() -> dict:
        return {
            "write, top ten unchanged": await measure("write", writer),
            "write, top ten changed": await measure("write-top", elite),
            "read leaderboard": await measure("read"),
        }

    return asyncio.run(all_kinds())


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.djtasks")
    sub = parser.add_subparsers(dest="command", required=True)
    p_setup = sub.add_parser("setup")
    p_setup.add_argument("--writers", type=int, default=64)
    p_setup.add_argument("--elites", type=int, default=12)
    sub.add_parser("tokens")
    sub.add_parser("anatomy")
    p_scale = sub.add_parser("scale")
    p_scale.add_argument("--sizes", default="10000")
    p_scale.add_argument("--reps", type=int, default=50)
    args = parser.parse_args()
    answer = {"setup": setup, "tokens": tokens, "scale": scale, "anatomy": anatomy}[args.command](
        args
    )
    print(json.dumps(answer, default=str))


if __name__ == "__main__":
    main()
