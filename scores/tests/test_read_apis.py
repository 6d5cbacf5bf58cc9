"""Leaderboard, player, history, actions and award endpoints."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework_simplejwt.tokens import RefreshToken

from scores.models import ScoreEvent
from scores.services import player_set_hidden, score_award

# Committed writes: the on-commit board refresh and rank index run as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def bearer(client, user):
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {RefreshToken.for_user(user).access_token}")
    return client


@pytest.fixture
def ranked(make_user):
    """Fifteen players with distinct scores: p00 has 1500 ... p14 has 100."""
    users = []
    for i in range(15):
        user = make_user(f"p{i:02d}")
        score_award(user=user, action_id="seed", points=(15 - i) * 100, reason="seed")
        users.append(user)
    return users


def test_leaderboard_has_the_top_ten_in_order(api_client, ranked):
    body = api_client.get("/api/scores/leaderboard").json()
    assert set(body) == {"leaderboard", "total_players", "last_refresh", "version"}
    assert [row["username"] for row in body["leaderboard"]] == [f"p{i:02d}" for i in range(10)]
    assert [row["rank"] for row in body["leaderboard"]] == list(range(1, 11))
    assert body["leaderboard"][0]["score"] == 1500
    assert set(body["leaderboard"][0]) == {"rank", "user_id", "username", "score", "last_updated"}
    assert body["total_players"] == 15


def test_hidden_players_are_not_on_the_board_nor_counted(api_client, ranked):
    player_set_hidden(user=ranked[0], hidden=True, reason="cheat")
    body = api_client.get("/api/scores/leaderboard").json()
    assert body["leaderboard"][0]["username"] == "p01"
    assert body["total_players"] == 14
    assert api_client.get(f"/api/scores/players/{ranked[0].pk}").status_code == 404
    assert api_client.get(f"/api/scores/players/{ranked[1].pk}").json()["rank"] == 1


def test_ties_rank_who_reached_the_score_first_higher(api_client, make_user):
    first, second = make_user("first"), make_user("second")
    score_award(user=first, action_id="a", points=50, reason="r")
    score_award(user=second, action_id="a", points=50, reason="r")
    rows = api_client.get("/api/scores/leaderboard").json()["leaderboard"]
    assert [(row["username"], row["rank"]) for row in rows] == [("first", 1), ("second", 2)]


def test_player_with_neighbors(api_client, ranked):
    body = api_client.get(f"/api/scores/players/{ranked[7].pk}?around=2").json()
    assert (body["username"], body["score"], body["rank"]) == ("p07", 800, 8)
    assert [(n["username"], n["rank"]) for n in body["neighbors"]] == [
        ("p05", 6),
        ("p06", 7),
        ("p08", 9),
        ("p09", 10),
    ]


def test_neighbors_at_the_edges(api_client, ranked):
    top = api_client.get(f"/api/scores/players/{ranked[0].pk}?around=2").json()
    assert [n["rank"] for n in top["neighbors"]] == [2, 3]
    bottom = api_client.get(f"/api/scores/players/{ranked[14].pk}?around=3").json()
    assert [n["rank"] for n in bottom["neighbors"]] == [12, 13, 14]


@pytest.mark.parametrize("around", ["11", "-1", "abc", "0.0", " 5", "5&around=6", ""])
def test_around_out_of_range_is_400(api_client, ranked, around):
    response = api_client.get(f"/api/scores/players/{ranked[0].pk}?around={around}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_player_without_score_has_zero_and_no_rank(api_client, make_user):
    user = make_user("newbie")
    body = api_client.get(f"/api/scores/players/{user.pk}").json()
    assert (body["score"], body["rank"]) == (0, None)


def test_history_is_own_ledger_newest_first_with_cursor(api_client, make_user, settings):
    user, other = make_user("me"), make_user("other")
    for i in range(5):
        score_award(user=user, action_id=f"h-{i}", points=i + 1, reason="r")
    score_award(user=other, action_id="x", points=9, reason="r")
    bearer(api_client, user)
    page = api_client.get("/api/scores/history?page_size=2").json()
    assert [row["action_id"] for row in page["results"]] == ["h-4", "h-3"]
    seen = [row["action_id"] for row in page["results"]]
    while page["next"]:
        page = api_client.get(page["next"]).json()
        seen += [row["action_id"] for row in page["results"]]
    assert seen == ["h-4", "h-3", "h-2", "h-1", "h-0"]


def test_history_needs_a_token(api_client, db):
    assert api_client.get("/api/scores/history").status_code == 401


def test_actions_lists_the_active_catalog(api_client, catalog):
    body = api_client.get("/api/actions").json()
    assert [a["code"] for a in body] == ["daily-login", "quest", "win"]
    assert body[2] == {
        "code": "win",
        "name": "Win a match",
        "points": 100,
        "cooldown_seconds": 0,
        "daily_limit": None,
    }


def test_award_needs_the_permission(api_client, make_user):
    server, player = make_user("server"), make_user("target")
    body = {"user_id": str(player.pk), "action_id": "g-1", "points": 40, "reason": "boss"}
    bearer(api_client, server)
    response = api_client.post("/api/scores/award", body, format="json")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    server.user_permissions.add(Permission.objects.get(codename="award_points"))
    response = api_client.post("/api/scores/award", body, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["points_awarded"] == 40
    event = ScoreEvent.objects.get(user=player)
    assert (event.kind, event.created_by, event.reason) == ("award", server, "boss")
    replay = api_client.post("/api/scores/award", body, format="json").json()
    assert replay["replayed"] is True
    conflict = api_client.post("/api/scores/award", {**body, "points": 41}, format="json")
    assert conflict.status_code == 409


@pytest.mark.parametrize("points", [0, -1, 1_000_001, 2**63, "10", 1.5, None, True])
def test_award_points_out_of_range_are_400(api_client, make_user, points):
    server, player = make_user("server"), make_user("target")
    server.user_permissions.add(Permission.objects.get(codename="award_points"))
    bearer(api_client, server)
    body = {"user_id": str(player.pk), "action_id": "g-1", "points": points, "reason": "x"}
    response = api_client.post("/api/scores/award", body, format="json")
    assert response.status_code == 400
    assert not ScoreEvent.objects.exists()


@pytest.mark.parametrize("query", ["page_size=0", "page_size=201", "page_size=abc", "x=1"])
def test_history_refuses_bad_query_parameters(api_client, make_user, query):
    bearer(api_client, make_user("me"))
    response = api_client.get(f"/api/scores/history?{query}")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid"


def test_history_with_a_forged_cursor_is_404_in_the_error_shape(api_client, make_user):
    bearer(api_client, make_user("me"))
    response = api_client.get("/api/scores/history?cursor=not-a-cursor")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
