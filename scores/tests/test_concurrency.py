"""Real concurrency against real connections: threads, each with its own database connection."""

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import RefreshToken

from leaderboard.errors import ApiError
from scores.models import Score, ScoreEvent
from scores.services import score_award, score_correct, score_record_action

pytestmark = [pytest.mark.needs_postgres, pytest.mark.django_db(transaction=True)]


def _post_all(user, bodies, workers=30):
    token = str(RefreshToken.for_user(user).access_token)
    barrier = threading.Barrier(min(workers, len(bodies)), timeout=30)

    def send(body):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        try:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait()
            response = client.post("/api/scores/update", body, format="json")
            return response.status_code, response.json()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(send, bodies))


def test_sixty_concurrent_requests_with_one_action_id_apply_once(player, catalog, settings):
    settings.SCORE_RATE_LIMIT = "10000/m"
    results = _post_all(player, [{"action_id": "same-1", "action": "win"}] * 60)
    assert all(status == 200 for status, _ in results), results
    assert sum(1 for _, body in results if not body["replayed"]) == 1
    assert {body["new_total_score"] for _, body in results} == {100}
    assert ScoreEvent.objects.filter(user=player).count() == 1
    assert Score.objects.get(user=player).total == 100


def test_two_hundred_concurrent_distinct_actions_on_one_hot_row_are_exact(
    player, catalog, settings
):
    settings.SCORE_RATE_LIMIT = "10000/m"
    results = _post_all(player, [{"action_id": f"hot-{i}", "action": "win"} for i in range(200)])
    assert [status for status, _ in results] == [200] * 200
    assert sorted(body["new_total_score"] for _, body in results) == list(range(100, 20_001, 100))
    assert Score.objects.get(user=player).total == 20_000
    assert ScoreEvent.objects.filter(user=player).count() == 200


def test_concurrent_cooldown_admits_exactly_one(player, catalog, settings):
    settings.SCORE_RATE_LIMIT = "10000/m"
    results = _post_all(player, [{"action_id": f"q-{i}", "action": "quest"} for i in range(20)])
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [429] * 19
    assert Score.objects.get(user=player).total == 25


operation = st.one_of(
    st.tuples(
        st.just("action"),
        st.sampled_from(["a1", "a2", "a3", "a4"]),
        st.sampled_from(["win", "retry"]),
    ),
    st.tuples(
        st.just("award"), st.sampled_from(["a1", "a2", "w1", "w2"]), st.integers(1, 1_000_000)
    ),
    st.tuples(st.just("correct"), st.none(), st.integers(-5000, 5000).filter(bool)),
)


_names = itertools.count()
POINTS = {"win": 100, "retry": 7}


@hsettings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(ops=st.lists(operation, min_size=1, max_size=12))
def test_any_sequence_keeps_total_equal_to_ledger_and_never_applies_twice(
    make_user, catalog, staff_user, ops
):
    from scores.models import ActionType

    ActionType.objects.get_or_create(code="retry", defaults={"name": "Retry", "points": 7})
    user = make_user(f"prop-{next(_names)}")
    first_use: dict[str, tuple] = {}
    expected_total = 0
    for kind, action_id, value in ops:
        conflict = action_id in first_use and first_use[action_id] != (kind, value)
        try:
            if kind == "action":
                receipt = score_record_action(user=user, action_id=action_id, action=value)
            elif kind == "award":
                receipt = score_award(user=user, action_id=action_id, points=value, reason="p")
            else:
                receipt = score_correct(
                    user=user, points=value, reason="fix", created_by=staff_user
                )
        except ApiError as exc:
            error = exc.code
        else:
            error = None
        if error is not None:
            assert (error, conflict) == ("action_id_conflict", True)
            continue
        assert not conflict
        if kind != "correct":
            assert receipt.replayed == (action_id in first_use)
            first_use.setdefault(action_id, (kind, value))
        if not receipt.replayed:
            expected_total += POINTS[value] if kind == "action" else value
        ledger = sum(ScoreEvent.objects.filter(user=user).values_list("points", flat=True))
        assert Score.objects.get(user=user).total == ledger == expected_total
    ids = list(ScoreEvent.objects.filter(user=user).values_list("action_id", flat=True))
    assert len(ids) == len(set(ids))
    assert set(first_use) <= set(ids)


@pytest.fixture
def staff_user(make_user):
    return make_user("staff", is_staff=True)
