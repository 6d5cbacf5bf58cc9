"""Every way a bad token reaches a protected endpoint ends in 401 in the one error shape."""

import base64
import json
from datetime import timedelta

import jwt
import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken

from accounts.tests.helpers import error_of, post

pytestmark = pytest.mark.django_db


def _claims(user) -> dict:
    return dict(AccessToken.for_user(user).payload)


def _signed(claims: dict, *, key: str | None = None, algorithm: str = "HS256") -> str:
    return jwt.encode(claims, key or settings.SIMPLE_JWT["SIGNING_KEY"], algorithm=algorithm)


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _alg_none(user) -> str:
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user))}."


def _other_key(user) -> str:
    return _signed(_claims(user), key="not-the-signing-key-but-long-enough-for-hs256")


def _other_algorithm(user) -> str:
    # The right key with another HMAC: the algorithm is pinned, so this is refused too.
    return _signed(_claims(user), algorithm="HS384")


def _expired(user) -> str:
    now = timezone.now()
    claims = _claims(user)
    claims["iat"] = int((now - timedelta(hours=1)).timestamp())
    claims["exp"] = int((now - timedelta(seconds=1)).timestamp())
    return _signed(claims)


def _refresh_as_access(user) -> str:
    return str(RefreshToken.for_user(user))


def _tampered(user) -> str:
    from accounts.models import User

    other = User.objects.create_user(username="someone-else", password="x-correct-horse-9")
    header, _payload, signature = str(AccessToken.for_user(user)).split(".")
    claims = _claims(user) | {"user_id": str(other.pk)}
    return f"{header}.{_b64(claims)}.{signature}"


def _garbage(user) -> str:
    return "not-a-jwt"


BAD_TOKENS = {
    "alg-none": _alg_none,
    "other-key": _other_key,
    "other-algorithm": _other_algorithm,
    "expired": _expired,
    "refresh-as-access": _refresh_as_access,
    "tampered-payload": _tampered,
    "garbage": _garbage,
}


def _assert_401(response, code: str) -> None:
    assert response.status_code == 401, response.content
    assert error_of(response) == code
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_no_token_is_401_not_authenticated(api_client):
    _assert_401(api_client.get("/api/auth/me"), "not_authenticated")


@pytest.mark.parametrize("make_token", BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
def test_bad_bearer_token_is_401_token_invalid(api_client, player, make_token):
    token = make_token(player)
    _assert_401(
        api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}"), "token_invalid"
    )


# A live refresh token is a valid token as far as verify is concerned.
BAD_FOR_VERIFY = {name: make for name, make in BAD_TOKENS.items() if name != "refresh-as-access"}


@pytest.mark.parametrize("make_token", BAD_FOR_VERIFY.values(), ids=BAD_FOR_VERIFY.keys())
def test_verify_refuses_bad_tokens(api_client, player, make_token):
    token = make_token(player)
    _assert_401(post(api_client, "token/verify", {"token": token}), "token_invalid")


def test_refresh_endpoint_refuses_an_access_token(api_client, player):
    token = str(AccessToken.for_user(player))
    response = post(api_client, "token/refresh", {"refresh": token})
    assert response.status_code == 401
    assert error_of(response) == "token_invalid"


@pytest.mark.parametrize(
    "header",
    ["Token {token}", "bearer{token}", "JWT {token}", "{token}"],
    ids=["token-scheme", "no-space", "jwt-scheme", "bare-token"],
)
def test_another_scheme_is_401_not_authenticated(api_client, player, header):
    token = AccessToken.for_user(player)
    response = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=header.format(token=token))
    # Not a Bearer credential at all, so the request carries no credentials.
    _assert_401(response, "not_authenticated")


@pytest.mark.parametrize("header", ["Bearer", "Bearer a b"], ids=["empty", "two-parts"])
def test_malformed_bearer_header_is_401_token_invalid(api_client, header):
    _assert_401(api_client.get("/api/auth/me", HTTP_AUTHORIZATION=header), "token_invalid")


def test_token_of_a_deleted_user_is_401(api_client, player):
    token = AccessToken.for_user(player)
    player.delete()
    response = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    _assert_401(response, "token_invalid")


def test_token_of_an_inactive_user_is_401(api_client, player):
    token = AccessToken.for_user(player)
    player.is_active = False
    player.save(update_fields=["is_active"])
    response = api_client.get("/api/auth/me", HTTP_AUTHORIZATION=f"Bearer {token}")
    _assert_401(response, "token_invalid")


def test_a_valid_token_passes(auth_client):
    # The control for the cases above: the same request with a good token succeeds.
    assert auth_client.get("/api/auth/me").status_code == 200
