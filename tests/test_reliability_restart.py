"""A Daphne process restarts under connected sockets while writes continue through another."""

import random
import threading
import time

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
def deployment():
    from accounts.models import User
    from scores.models import ActionType

    ActionType.objects.create(code="win", name="Win", points=100)
    ActionType.objects.create(code="kill", name="Kill", points=7)
    users = [User.objects.create(username=f"s{i:02d}", password="!") for i in range(15)]
    redis_server = RedisServer().start()
    first = Daphne(redis_server.url).start()
    second = Daphne(redis_server.url).start()
    yield first, second, users
    first.stop()
    second.stop()
    redis_server.kill()


def test_restart_under_connected_sockets(deployment):
    from scores.models import Score, ScoreEvent

    first, second, users = deployment
    tokens = {user.pk: access_token(user) for user in users}
    on_first = [WsClient(first.ws_url, reconnect=True).start() for _ in range(6)]
    on_second = [WsClient(second.ws_url, reconnect=True).start() for _ in range(2)]

    stop = threading.Event()
    done: list[str] = []
    rng = random.Random(7)

    def writer() -> None:
        client = httpx.Client(base_url=second.base, timeout=10)
        while not stop.is_set():
            user = rng.choice(users)
            action_id = new_action_id()
            for _attempt in range(50):
                try:
                    response = client.post(
                        "/api/scores/update",
                        json={"action_id": action_id, "action": rng.choice(["win", "kill"])},
                        headers={"Authorization": f"Bearer {tokens[user.pk]}"},
                    )
                except httpx.TransportError:
                    time.sleep(0.05)
                    continue
                if response.status_code == 200:
                    done.append(action_id)
                    break
                assert response.status_code >= 500, response.text
                time.sleep(0.05)
            time.sleep(0.01)
        client.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        time.sleep(1.5)
        first.stop()  # SIGTERM under six connected sockets
        time.sleep(0.5)
        first.start()  # same port
        for client in on_first:
            client.wait_state(lambda c: c.connects >= 2, 15, "reconnect after restart")
        time.sleep(1.5)  # writes go on after the restart
    finally:
        stop.set()
        thread.join(30)

    assert len(done) > 20
    assert ScoreEvent.objects.count() == len(done)
    # Every client, reconnected or not, converges on the exact board.
    expected = db_top()
    for client in on_first + on_second:
        wait_until(lambda c=client: c.rows == expected, 10, what="socket converges")
    assert api_top(first.base) == expected
    assert api_top(second.base) == expected
    assert sum(Score.objects.values_list("total", flat=True)) == sum(
        ScoreEvent.objects.values_list("points", flat=True)
    )
    assert "All totals match the ledger." in check_scores_clean()
    for client in on_first + on_second:
        client.close()
