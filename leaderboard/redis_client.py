"""One Redis client per process for the hot path (rate limits, board state).

Django's `caches` hands each ASGI request context its own cache object, and with
it a new connection pool: under Daphne that meant a new Redis connection for
almost every request. This client and its pool live as long as the process.
"""

import threading

import redis
from django.conf import settings

# What an unreachable or dying Redis raises: redis-py errors, or socket errors.
REDIS_ERRORS = (redis.RedisError, OSError)

_client: redis.Redis | None = None
_client_url = ""
_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """The process's Redis client for `REDIS_URL` (strings decoded, short timeouts)."""
    global _client, _client_url
    with _lock:
        if _client is None or _client_url != settings.REDIS_URL:
            _client_url = settings.REDIS_URL
            _client = redis.Redis.from_url(
                settings.REDIS_URL,
                decode_responses=True,
                max_connections=100,
                **settings.REDIS_CLIENT_OPTIONS,
            )
        return _client


def key_prefix() -> str:
    """The prefix of every key this deployment writes (shared Redis, tests)."""
    return settings.CACHES["default"].get("KEY_PREFIX", "lb")
