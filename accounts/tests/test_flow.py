import threading

import jwt
import pytest
from django.conf import settings
from django.db import connection
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.helpers import PASSWORD, bearer, error_of, post

pytestmark = pytest.mark.usefixtures("roomy_limits")


@pytest.mark.django_db
def test_register_token_me_refresh_verify_logout_flow(api_client):
    response = post(
        api_client,
        "register",
        {"username": "Alice", "password": PASSWORD, "email": "alice@example.com"},
    )
    assert response.status_code == 201, response.content
    user = User.objects.get(username="Alice")
    assert response.json() == {"id": str(user.pk), "username": "Alice"}
    assert user.check_password(PASSWORD)
    assert user.email == "alice@example.com"

    # Sign-in ignores case, as username uniqueness does.
    response = post(api_client, "token", {"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.content
    pair = response.json()
    assert set(pair) == {"access", "refresh"}

    response = api_client.get("/api/auth/me", **bearer(pair["access"]))
    assert response.status_code == 200, response.content
    assert response.json() == {"id": str(user.pk), "username": "Alice", "score": 0, "rank": None}

    response = post(api_client, "token/refresh", {"refresh": pair["refresh"]})
    assert response.status_code == 200, response.content
    rotated = response.json()
    assert set(rotated) == {"access", "refresh"}
    assert rotated["refresh"] != pair["refresh"]
    assert api_client.get("/api/auth/me", **bearer(rotated["access"])).status_code == 200

    # The rotated-out refresh token is dead, for refreshing and for verifying.
    response = post(api_client, "token/refresh", {"refresh": pair["refresh"]})
    assert response.status_code == 401
    assert error_of(response) == "token_invalid"
    response = post(api_client, "token/verify", {"token": pair["refresh"]})
    assert response.status_code == 401
    assert error_of(response) == "token_invalid"

    for token in (rotated["access"], rotated["refresh"]):
        response = post(api_client, "token/verify", {"token": token})
        assert response.status_code == 200, response.content
        assert response.json() == {}

    response = post(
        api_client, "logout", {"refresh": rotated["refresh"]}, **bearer(rotated["access"])
    )
    assert response.status_code == 205, response.content
    assert response.content == b""

    for path, body in (
        ("token/refresh", {"refresh": rotated["refresh"]}),
        ("token/verify", {"token": rotated["refresh"]}),
        ("logout", {"refresh": rotated["refresh"]}),
    ):
        response = post(api_client, path, body, **bearer(rotated["access"]))
        assert response.status_code == 401, path
        assert error_of(response) == "token_invalid"


@pytest.mark.django_db
def test_me_reports_score_and_overall_rank(make_user):
    from scores.services import score_award

    leader, runner_up = make_user("leader"), make_user("runner-up")
    score_award(user=leader, action_id="a-1", points=500, reason="test")
    score_award(user=runner_up, action_id="a-2", points=200, reason="test")
    client = APIClient()
    response = post(
        client, "token", {"username": "runner-up", "password": "correct-horse-battery-9"}
    )
    response = client.get("/api/auth/me", **bearer(response.json()["access"]))
    assert response.status_code == 200, response.content
    assert response.json() == {
        "id": str(runner_up.pk),
        "username": "runner-up",
        "score": 200,
        "rank": 2,
    }


@pytest.mark.django_db
def test_access_token_is_hs256_and_lives_access_token_minutes(api_client, player):
    response = post(
        api_client, "token", {"username": "player1", "password": "correct-horse-battery-9"}
    )
    access = response.json()["access"]
    assert jwt.get_unverified_header(access)["alg"] == "HS256"
    claims = jwt.decode(access, settings.SIMPLE_JWT["SIGNING_KEY"], algorithms=["HS256"])
    assert claims["exp"] - claims["iat"] == settings.ACCESS_TOKEN_MINUTES * 60
    assert settings.ACCESS_TOKEN_MINUTES <= 15
    assert claims["user_id"] == str(player.pk)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "player1", "password": "wrong-password-1"},
        {"username": "nobody-here", "password": "correct-horse-battery-9"},
        {"username": "player1", "password": " correct-horse-battery-9"},
    ],
    ids=["wrong-password", "unknown-user", "password-not-trimmed"],
)
def test_bad_credentials_are_401_invalid_credentials(api_client, player, credentials):
    response = post(api_client, "token", credentials)
    assert response.status_code == 401
    assert error_of(response) == "invalid_credentials"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.django_db
def test_inactive_user_cannot_sign_in(api_client, make_user):
    make_user("sleeper", is_active=False)
    response = post(
        api_client, "token", {"username": "sleeper", "password": "correct-horse-battery-9"}
    )
    assert response.status_code == 401
    assert error_of(response) == "invalid_credentials"


@pytest.mark.django_db
def test_sign_in_ignores_a_stale_authorization_header(api_client, player):
    response = post(
        api_client,
        "token",
        {"username": "player1", "password": "correct-horse-battery-9"},
        HTTP_AUTHORIZATION="Bearer expired.or.garbage",
    )
    assert response.status_code == 200, response.content


@pytest.mark.django_db
@pytest.mark.parametrize("change", ["delete", "deactivate"])
def test_refresh_of_a_deleted_or_inactive_user_is_401(api_client, player, change):
    pair = post(
        api_client, "token", {"username": "player1", "password": "correct-horse-battery-9"}
    ).json()
    if change == "delete":
        player.delete()
    else:
        player.is_active = False
        player.save(update_fields=["is_active"])
    response = post(api_client, "token/refresh", {"refresh": pair["refresh"]})
    assert response.status_code == 401
    assert error_of(response) == "token_invalid"


@pytest.mark.django_db
def test_logout_needs_a_bearer_token(api_client, player):
    pair = post(
        api_client, "token", {"username": "player1", "password": "correct-horse-battery-9"}
    ).json()
    response = post(api_client, "logout", {"refresh": pair["refresh"]})
    assert response.status_code == 401
    assert error_of(response) == "not_authenticated"
    # Nothing was revoked.
    assert post(api_client, "token/refresh", {"refresh": pair["refresh"]}).status_code == 200


@pytest.mark.django_db
def test_logout_cannot_revoke_another_players_refresh_token(api_client, player, make_user):
    make_user("victim")
    victim = post(
        api_client, "token", {"username": "victim", "password": "correct-horse-battery-9"}
    ).json()
    mine = post(
        api_client, "token", {"username": "player1", "password": "correct-horse-battery-9"}
    ).json()
    response = post(api_client, "logout", {"refresh": victim["refresh"]}, **bearer(mine["access"]))
    assert response.status_code == 403
    assert error_of(response) == "forbidden"
    assert post(api_client, "token/refresh", {"refresh": victim["refresh"]}).status_code == 200


@pytest.mark.needs_postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_of_one_token_mint_exactly_one_pair(player):
    pair = post(
        APIClient(), "token", {"username": "player1", "password": "correct-horse-battery-9"}
    ).json()
    barrier = threading.Barrier(6)
    statuses: list[int] = []

    def refresh() -> None:
        try:
            barrier.wait()
            statuses.append(
                post(APIClient(), "token/refresh", {"refresh": pair["refresh"]}).status_code
            )
        finally:
            connection.close()

    threads = [threading.Thread(target=refresh) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200, 401, 401, 401, 401, 401]
