"""POST /api/scores/update: every row of SPEC.md's status table, and what must not change."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework_simplejwt.tokens import RefreshToken

from scores.models import LimitHit, Score, ScoreEvent

URL = "/api/scores/update"


def post(client, body, **extra):
    return client.post(URL, body, format="json", **extra)


def total(user) -> int:
    score = Score.objects.filter(user=user).first()
    return score.total if score else 0


@pytest.fixture(autouse=True)
def _generous_rate_limit(settings):
    settings.SCORE_RATE_LIMIT = "1000/m"


def test_action_is_worth_the_catalog_points_and_returns_a_receipt(auth_client, catalog):
    response = post(auth_client, {"action_id": "match-1", "action": "win"})
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "success": True,
        "replayed": False,
        "action_id": "match-1",
        "user_id": str(auth_client.user.pk),
        "points_awarded": 100,
        "new_total_score": 100,
        "leaderboard_position": 1,
    }
    event = ScoreEvent.objects.get(user=auth_client.user)
    assert (event.points, event.kind, event.action_type.code, event.client_ip) == (
        100,
        "action",
        "win",
        "127.0.0.1",
    )


def test_same_action_id_and_action_is_replayed_without_adding(auth_client, catalog):
    first = post(auth_client, {"action_id": "match-1", "action": "win"}).json()
    second = post(auth_client, {"action_id": "match-1", "action": "win"})
    assert second.status_code == 200
    assert second.json() == {**first, "replayed": True}
    assert total(auth_client.user) == 100
    assert ScoreEvent.objects.count() == 1


def test_reused_action_id_for_other_action_is_409(auth_client, catalog):
    post(auth_client, {"action_id": "a-1", "action": "win"})
    response = post(auth_client, {"action_id": "a-1", "action": "quest"})
    assert response.status_code == 409
    assert response.json()["error"] == "action_id_conflict"
    assert total(auth_client.user) == 100


@pytest.mark.parametrize(
    "extra",
    [
        {"points": 1_000_000},
        {"score": 999},
        {"score_increment": 50},
        {"user": "someone"},
        {"is_staff": True},
        {"total": 5},
    ],
)
def test_a_player_never_chooses_points(auth_client, catalog, extra):
    response = post(auth_client, {"action_id": "x-1", "action": "win", **extra})
    assert response.status_code == 400
    body = response.json()
    assert body["error"] == "invalid"
    assert set(body["fields"]) == set(extra)
    assert ScoreEvent.objects.count() == 0
    assert not Score.objects.exists()
    auth_client.user.refresh_from_db()
    assert not auth_client.user.is_staff


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"action": "win"},
        {"action_id": "ok-1"},
        {"action_id": "", "action": "win"},
        {"action_id": "x" * 101, "action": "win"},
        {"action_id": "has space", "action": "win"},
        {"action_id": "<script>", "action": "win"},
        {"action_id": 12345, "action": "win"},
        {"action_id": "ok-1", "action": "no-such-action"},
        {"action_id": "ok-1", "action": "retired"},
        {"action_id": "ok-1", "action": ["win"]},
        {"action_id": "ok-1", "action": "win", "timestamp": "yesterday"},
        {"action_id": "ok-1", "action": "win", "user_id": "not-a-uuid"},
        [{"action_id": "ok-1", "action": "win"}],
        "win",
    ],
)
def test_invalid_bodies_are_400_and_change_nothing(auth_client, catalog, body):
    response = post(auth_client, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid"
    assert ScoreEvent.objects.count() == 0


def test_malformed_json_is_400(auth_client, catalog):
    response = auth_client.post(URL, data=b'{"action_id": ', content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_timestamp_more_than_five_minutes_ahead_is_400(auth_client, catalog):
    ahead = (timezone.now() + timedelta(minutes=6)).isoformat()
    response = post(auth_client, {"action_id": "t-1", "action": "win", "timestamp": ahead})
    assert response.status_code == 400
    assert "timestamp" in response.json()["fields"]


def test_client_timestamp_is_stored_for_audit(auth_client, catalog):
    sent = timezone.now() - timedelta(seconds=30)
    response = post(
        auth_client, {"action_id": "t-2", "action": "win", "timestamp": sent.isoformat()}
    )
    assert response.status_code == 200
    assert ScoreEvent.objects.get().client_timestamp == sent


def test_no_token_is_401_not_authenticated(api_client, catalog):
    response = post(api_client, {"action_id": "a", "action": "win"})
    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_bad_token_is_401_token_invalid(api_client, catalog):
    api_client.credentials(HTTP_AUTHORIZATION="Bearer not.a.token")
    response = post(api_client, {"action_id": "a", "action": "win"})
    assert response.status_code == 401
    assert response.json()["error"] == "token_invalid"


def test_user_id_of_someone_else_is_403(auth_client, catalog, make_user):
    other = make_user("other")
    response = post(auth_client, {"action_id": "a", "action": "win", "user_id": str(other.pk)})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert ScoreEvent.objects.count() == 0


def test_own_user_id_is_accepted(auth_client, catalog):
    body = {"action_id": "a", "action": "win", "user_id": str(auth_client.user.pk)}
    assert post(auth_client, body).status_code == 200


def test_hidden_player_is_403(auth_client, catalog):
    from scores.services import player_set_hidden

    player_set_hidden(user=auth_client.user, hidden=True, reason="cheating")
    response = post(auth_client, {"action_id": "a", "action": "win"})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert total(auth_client.user) == 0


def test_cooldown_is_429_with_retry_after(auth_client, catalog):
    assert post(auth_client, {"action_id": "q-1", "action": "quest"}).status_code == 200
    response = post(auth_client, {"action_id": "q-2", "action": "quest"})
    assert response.status_code == 429
    assert response.json()["error"] == "cooldown"
    assert 1 <= int(response["Retry-After"]) <= 60
    assert total(auth_client.user) == 25
    assert LimitHit.objects.filter(user=auth_client.user, code="cooldown").count() == 1


def test_daily_limit_is_429_with_retry_after(auth_client, catalog):
    assert post(auth_client, {"action_id": "d-1", "action": "daily-login"}).status_code == 200
    response = post(auth_client, {"action_id": "d-2", "action": "daily-login"})
    assert response.status_code == 429
    assert response.json()["error"] == "daily_limit"
    assert 1 <= int(response["Retry-After"]) <= 86400
    assert total(auth_client.user) == 5


def test_per_player_rate_limit_is_429_rate_limited(auth_client, catalog, settings):
    settings.SCORE_RATE_LIMIT = "3/m"
    codes = [
        post(auth_client, {"action_id": f"r-{i}", "action": "win"}).status_code for i in range(5)
    ]
    assert codes == [200, 200, 200, 429, 429]
    response = post(auth_client, {"action_id": "r-9", "action": "win"})
    assert response.json()["error"] == "rate_limited"
    assert int(response["Retry-After"]) >= 1
    assert total(auth_client.user) == 300


def test_rank_in_receipt_is_the_overall_position(api_client, catalog, make_user):
    receipts = {}
    for name, wins in [("a", 3), ("b", 1), ("c", 2)]:
        user = make_user(name)
        api_client.credentials(
            HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}"
        )
        for i in range(wins):
            receipts[name] = post(api_client, {"action_id": f"{name}-{i}", "action": "win"}).json()
    assert receipts["a"]["leaderboard_position"] == 1
    assert receipts["b"]["leaderboard_position"] == 2  # b was second when it scored
    board = api_client.get("/api/scores/leaderboard").json()
    assert [row["username"] for row in board["leaderboard"]] == ["a", "c", "b"]
    assert [row["rank"] for row in board["leaderboard"]] == [1, 2, 3]


def test_unknown_player_is_404(api_client, db):
    assert api_client.get(f"/api/scores/players/{uuid.uuid4()}").status_code == 404
