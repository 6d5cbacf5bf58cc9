"""Redis vanishes and comes back under a live Daphne (SPEC.md section 8, "When Redis is down")."""

import httpx
import pytest

from tests.faults import (
    LIVE_SERVER_MARKS,
    Daphne,
    RedisServer,
    WsClient,
    access_token,
    api_top,
    check_scores_clean,
    db_top,
    new_action_id,
    wait_until,
)

pytestmark = LIVE_SERVER_MARKS


@pytest.fixture
def players():
    from accounts.models import User
    from scores.models import ActionType

    ActionType.objects.create(code="win", name="Win", points=100)
    ActionType.objects.create(code="kill", name="Kill", points=7)
    return [User.objects.create(username=f"r{i:02d}", password="!") for i in range(12)]


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.kill()


@pytest.fixture
def daphne(redis_server, players):
    server = Daphne(redis_server.url).start()
    yield server
    server.stop()
    print(server.output())


def post_action(client: httpx.Client, token: str, action: str, action_id: str | None = None):
    return client.post(
        "/api/scores/update",
        json={"action_id": action_id or new_action_id(), "action": action},
        headers={"Authorization": f"Bearer {token}"},
    )


def player_rank(base: str, user) -> int:
    return httpx.get(f"{base}/api/scores/players/{user.pk}", timeout=10).json()["rank"]


def test_redis_outage_and_return(daphne, redis_server, players):
    from scores.models import Score, ScoreEvent
    from scores.selectors import db_rank

    tokens = {user.pk: access_token(user) for user in players}
    client = httpx.Client(base_url=daphne.base, timeout=10)

    # Before: a working board and a live socket.
    for index, user in enumerate(players[:6]):
        for _ in range(index + 1):
            assert post_action(client, tokens[user.pk], "win").status_code == 200
    early = WsClient(daphne.ws_url, reconnect=True).start()
    assert client.get("/readyz").status_code == 200

    # Redis dies.
    redis_server.kill()
    ready = client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["failed"] == ["redis"]

    sent: list[tuple[object, str]] = []
    for index, user in enumerate(players):
        for _ in range(12 - index):
            action_id = new_action_id()
            response = post_action(client, tokens[user.pk], "kill", action_id)
            assert response.status_code == 200, response.text
            assert response.json()["new_total_score"] == Score.objects.get(user=user).total
            sent.append((user.pk, action_id))
    # Every update is in the ledger, once.
    for user_id, action_id in sent:
        assert ScoreEvent.objects.filter(user_id=user_id, action_id=action_id).count() == 1
    # A retry during the outage is still a replay, not a second count.
    replay = post_action(client, tokens[players[0].pk], "kill", sent[0][1])
    assert replay.status_code == 200
    assert replay.json()["replayed"] is True

    # The board and ranks come from the database, exactly.
    assert api_top(daphne.base) == db_top()
    board = client.get("/api/scores/leaderboard").json()
    assert board["total_players"] == Score.objects.filter(is_hidden=False).count()
    for user in players:
        score = Score.objects.get(user=user)
        expected = db_rank(user_id=score.user_id, total=score.total, reached_at=score.reached_at)
        assert player_rank(daphne.base, user) == expected
    assert client.get("/readyz").status_code == 503

    # A socket opened during the outage sees the exact board, then is told to come back.
    during = WsClient(daphne.ws_url).start()
    assert [(r["user_id"], r["score"]) for r in during.messages[0]["leaderboard"]] == db_top()
    during.wait_state(lambda c: c.closed_code is not None, 10, "close during outage")
    assert during.closed_code == 4013
    during.close()

    # Redis returns on the same port, empty; Daphne is not restarted.
    redis_server.start()
    wait_until(lambda: client.get("/readyz").status_code == 200, 15, what="readyz 200")

    # The cache is rebuilt from the database on the next read, with a newer version.
    before = board["version"]
    assert api_top(daphne.base) == db_top()
    rebuilt = client.get("/api/scores/leaderboard").json()
    assert rebuilt["version"] > before
    assert redis_server.client().keys("rel:board:top") == ["rel:board:top"]

    # A new socket's snapshot is exact; live updates resume on it and on the old one.
    fresh = WsClient(daphne.ws_url).start()
    snapshot = fresh.messages[0]
    assert [(r["user_id"], r["score"]) for r in snapshot["leaderboard"]] == db_top()
    assert snapshot["total_players"] == Score.objects.filter(is_hidden=False).count()

    last = players[-1]
    start = len(fresh.messages)
    for _ in range(30):  # enough to take the last player to the top
        assert post_action(client, tokens[last.pk], "win").status_code == 200
    update = fresh.wait_for(
        lambda m: (
            m["type"] == "leaderboard_update" and m["leaderboard"][0]["user_id"] == str(last.pk)
        ),
        10,
        start,
    )
    assert update["version"] > snapshot["version"]
    wait_until(lambda: fresh.rows == db_top(), 10, what="fresh socket converges")
    wait_until(lambda: early.rows == db_top(), 15, what="socket from before the outage converges")

    # The rank index was rebuilt too: ranks from Redis agree with the database.
    wait_until(lambda: redis_server.client().exists("rel:board:ready"), 10, what="index rebuilt")
    for user in players:
        score = Score.objects.get(user=user)
        expected = db_rank(user_id=score.user_id, total=score.total, reached_at=score.reached_at)
        assert player_rank(daphne.base, user) == expected

    assert "All totals match the ledger." in check_scores_clean()
    assert daphne.server_errors() == []
    fresh.close()
    early.close()
    client.close()


def test_redis_hangs_then_resumes_with_its_data(daphne, redis_server, players):
    """A frozen Redis (SIGSTOP) keeps its stale board; when it resumes, the board is repaired."""
    import signal

    from scores.models import ScoreEvent

    tokens = {user.pk: access_token(user) for user in players}
    client = httpx.Client(base_url=daphne.base, timeout=10)
    for user in players[:10]:
        assert post_action(client, tokens[user.pk], "win").status_code == 200
    wait_until(lambda: api_top(daphne.base) == db_top(), 5, what="board before the freeze")

    redis_server.proc.send_signal(signal.SIGSTOP)
    try:
        # Writes time out on Redis (0.5 s) but are accepted; the last player takes the lead.
        last = players[-1]
        for _ in range(3):
            response = post_action(client, tokens[last.pk], "win")
            assert response.status_code == 200, response.text
        assert response.json()["leaderboard_position"] == 1
        assert api_top(daphne.base) == db_top()
    finally:
        redis_server.proc.send_signal(signal.SIGCONT)

    # Redis still holds the board from before the freeze; it must not be served.
    assert ScoreEvent.objects.filter(user=last).count() == 3
    assert api_top(daphne.base) == db_top()
    fresh = WsClient(daphne.ws_url).start()
    assert [(r["user_id"], r["score"]) for r in fresh.messages[0]["leaderboard"]] == db_top()
    assert player_rank(daphne.base, last) == 1
    assert "All totals match the ledger." in check_scores_clean()
    fresh.close()
    client.close()
