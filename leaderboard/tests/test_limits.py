import threading
import uuid

import pytest
from django.test import RequestFactory

from leaderboard.limits import UNKNOWN_IP, client_ip, hit, ip_bucket

DEAD_REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:1/0",
        "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
    }
}


def _request(remote: str = "192.0.2.10", forwarded: str | None = None):
    extra = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def _key() -> str:
    return uuid.uuid4().hex


@pytest.mark.parametrize(
    ("proxies", "forwarded", "expected"),
    [
        (0, None, "192.0.2.10"),
        (0, "203.0.113.5", "192.0.2.10"),
        (0, "203.0.113.5, 198.51.100.1", "192.0.2.10"),
        (1, "203.0.113.5, 198.51.100.1", "198.51.100.1"),
        (2, "203.0.113.5, 198.51.100.1", "203.0.113.5"),
        (2, "1.1.1.1, 203.0.113.5, 198.51.100.1", "203.0.113.5"),
        (3, "203.0.113.5, 198.51.100.1", "192.0.2.10"),
        (1, None, "192.0.2.10"),
        (1, "", "192.0.2.10"),
        (1, "not-an-ip", "192.0.2.10"),
        (1, "203.0.113.5:4711", "203.0.113.5"),
        (1, "[2001:db8::1]:4711", "2001:db8::1"),
        (1, "::ffff:203.0.113.5", "203.0.113.5"),
    ],
)
def test_client_ip_trusts_only_the_configured_proxies(settings, proxies, forwarded, expected):
    settings.TRUSTED_PROXY_COUNT = proxies
    assert client_ip(_request(forwarded=forwarded)) == expected


def test_client_ip_without_a_usable_remote_addr_is_the_shared_unknown_bucket(settings):
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(_request(remote="")) == UNKNOWN_IP
    assert client_ip(_request(remote="garbage", forwarded="203.0.113.5")) == UNKNOWN_IP


def test_ip_bucket_groups_an_ipv6_slash_64():
    assert ip_bucket("2001:db8:1:2:aaaa::1") == ip_bucket("2001:db8:1:2:bbbb::2")
    assert ip_bucket("2001:db8:1:2::1") != ip_bucket("2001:db8:1:3::1")
    assert ip_bucket("203.0.113.5") == "203.0.113.5"


def test_hit_allows_the_rate_then_reports_seconds_until_the_window_ends():
    key = _key()
    results = [hit("test", key, "3/m") for _ in range(5)]
    assert results[:3] == [None, None, None]
    assert all(1 <= wait <= 60 for wait in results[3:])


def test_hit_counts_each_group_and_key_apart():
    key = _key()
    assert [hit("a", key, "1/m"), hit("a", key, "1/m")][1] is not None
    assert hit("b", key, "1/m") is None
    assert hit("a", _key(), "1/m") is None


def test_hit_falls_back_to_a_per_process_counter_when_the_cache_is_down(settings):
    settings.CACHES = DEAD_REDIS
    settings.REDIS_URL = DEAD_REDIS["default"]["LOCATION"]
    key = _key()
    results = [hit("test", key, "3/h") for _ in range(5)]
    assert results[:3] == [None, None, None]
    assert all(1 <= wait <= 3600 for wait in results[3:])


def test_the_fallback_counter_is_exact_under_threads(settings):
    settings.CACHES = DEAD_REDIS
    settings.REDIS_URL = DEAD_REDIS["default"]["LOCATION"]
    key = _key()
    allowed: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(50):
            result = hit("threads", key, "120/h") is None
            with lock:
                allowed.append(result)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 200
    assert allowed.count(True) == 120
