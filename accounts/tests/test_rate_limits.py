"""Register and token are limited per client IP; a forged X-Forwarded-For cannot dodge it."""

import secrets

import pytest

from accounts.models import User
from accounts.tests.helpers import PASSWORD, error_of, post

pytestmark = pytest.mark.django_db

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def _random_ip() -> str:
    # The per-process fallback counter outlives a test; a fresh address keeps tests apart.
    return "10." + ".".join(str(secrets.randbelow(256)) for _ in range(3))


def _wrong_passwords(client, count: int, extra_for=None) -> list:
    """`count` sign-ins with a wrong password; extra_for(i) gives request i's extra META."""
    responses = []
    for i in range(count):
        extra = extra_for(i) if extra_for else {}
        body = {"username": "player1", "password": f"wrong-{i}"}
        responses.append(post(client, "token", body, **extra))
    return responses


def _assert_limited_after(responses, limit: int) -> None:
    """The first `limit` attempts are judged; later ones get 429 with a Retry-After."""
    statuses = [r.status_code for r in responses]
    assert statuses[:limit] == [401] * limit, statuses
    assert set(statuses) == {401, 429}, statuses
    # A window may end mid-run and admit one more batch, never more.
    assert statuses.count(429) >= len(statuses) - 2 * limit, statuses
    assert statuses[-1] == 429, statuses
    limited = [r for r in responses if r.status_code == 429]
    for response in limited:
        assert error_of(response) == "rate_limited"
        assert 1 <= int(response["Retry-After"]) <= 60


def test_sixty_wrong_passwords_from_one_ip_hit_429(api_client, player, settings):
    settings.AUTH_RATE_LIMIT = "20/m"
    _assert_limited_after(_wrong_passwords(api_client, 60), 20)


def test_a_new_x_forwarded_for_on_each_request_does_not_reset_the_limit(
    api_client, player, settings
):
    settings.AUTH_RATE_LIMIT = "20/m"
    settings.TRUSTED_PROXY_COUNT = 0
    responses = _wrong_passwords(
        api_client, 60, lambda i: {"HTTP_X_FORWARDED_FOR": f"198.51.100.{i}"}
    )
    _assert_limited_after(responses, 20)


def test_behind_one_proxy_client_chosen_hops_do_not_reset_the_limit(api_client, player, settings):
    settings.AUTH_RATE_LIMIT = "20/m"
    settings.TRUSTED_PROXY_COUNT = 1
    # The attacker writes the left part; the trusted proxy appends the address it saw.
    responses = _wrong_passwords(
        api_client, 60, lambda i: {"HTTP_X_FORWARDED_FOR": f"198.51.100.{i}, 203.0.113.7"}
    )
    _assert_limited_after(responses, 20)


def test_behind_one_proxy_each_client_has_its_own_budget(api_client, player, settings):
    settings.AUTH_RATE_LIMIT = "2/m"
    settings.TRUSTED_PROXY_COUNT = 1
    first = {"HTTP_X_FORWARDED_FOR": "203.0.113.1"}
    second = {"HTTP_X_FORWARDED_FOR": "203.0.113.2"}
    statuses = [r.status_code for r in _wrong_passwords(api_client, 3, lambda i: first)]
    assert statuses[-1] == 429
    assert _wrong_passwords(api_client, 1, lambda i: second)[0].status_code == 401


def test_other_ips_are_not_limited_by_one_attacker(api_client, player, settings):
    settings.AUTH_RATE_LIMIT = "3/m"
    _wrong_passwords(api_client, 5, lambda i: {"REMOTE_ADDR": "192.0.2.1"})
    response = post(
        api_client,
        "token",
        {"username": "player1", "password": "correct-horse-battery-9"},
        REMOTE_ADDR="192.0.2.2",
    )
    assert response.status_code == 200


def test_register_and_token_share_the_budget(api_client, player, settings):
    settings.AUTH_RATE_LIMIT = "3/m"
    _wrong_passwords(api_client, 3)
    response = post(api_client, "register", {"username": "newcomer", "password": PASSWORD})
    assert response.status_code == 429
    assert error_of(response) == "rate_limited"
    assert not User.objects.filter(username="newcomer").exists()


def test_even_malformed_requests_spend_the_budget(api_client, settings):
    settings.AUTH_RATE_LIMIT = "3/m"
    for _ in range(3):
        response = api_client.post("/api/auth/token", "{oops", content_type="application/json")
        assert response.status_code == 400
    response = api_client.post("/api/auth/token", "{oops", content_type="application/json")
    assert response.status_code == 429


def test_limits_still_hold_per_process_when_the_cache_is_down(api_client, player, settings):
    settings.CACHES = DEAD_REDIS
    settings.REDIS_URL = DEAD_REDIS["default"]["LOCATION"]
    settings.AUTH_RATE_LIMIT = "5/m"
    ip = _random_ip()
    responses = _wrong_passwords(api_client, 10, lambda i: {"REMOTE_ADDR": ip})
    _assert_limited_after(responses, 5)


def test_sign_in_works_when_the_cache_is_down(api_client, player, settings):
    settings.CACHES = DEAD_REDIS
    settings.REDIS_URL = DEAD_REDIS["default"]["LOCATION"]
    response = post(
        api_client,
        "token",
        {"username": "player1", "password": "correct-horse-battery-9"},
        REMOTE_ADDR=_random_ip(),
    )
    assert response.status_code == 200, response.content
