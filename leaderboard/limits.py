"""Client IPs and fixed-window rate limits over the shared cache, with a per-process fallback."""

import ipaddress
import logging
import threading
import time

from django.conf import settings
from django.core.cache import caches
from django.http import HttpRequest
from django_ratelimit.core import _get_window, _make_cache_key, _split_rate
from rest_framework import status

from leaderboard.errors import ApiError
from leaderboard.redis_client import REDIS_ERRORS, key_prefix, redis_client

logger = logging.getLogger(__name__)

# Stands in for a client whose address cannot be known (e.g. a Unix-socket front end):
# all such clients share one rate-limit bucket, which errs on the side of limiting.
UNKNOWN_IP = "0.0.0.0"  # noqa: S104

# One attacker usually owns a whole IPv6 /64, as django-ratelimit assumes too.
IPV6_BUCKET_PREFIX = 64


# django-ratelimit keeps counters a few seconds past the window end; so do we.
_EXPIRY_FUDGE = 5

_LOCAL_MAX_KEYS = 10_000
_WARN_EVERY_SECONDS = 60


def _parse_ip(raw: str) -> str | None:
    """Return `raw` as a normalised IP address, or None; tolerates a port suffix."""
    candidate = raw.strip()
    if candidate.startswith("[") and "]" in candidate:  # "[v6]" or "[v6]:port"
        candidate = candidate[1 : candidate.index("]")]
    elif candidate.count(":") == 1:  # "v4:port"
        candidate = candidate.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return str(address)


def client_ip(request: HttpRequest) -> str:
    """The client's IP: REMOTE_ADDR, or the address the TRUSTED_PROXY_COUNT-th proxy saw."""
    remote = _parse_ip(request.META.get("REMOTE_ADDR") or "") or UNKNOWN_IP
    trusted = getattr(settings, "TRUSTED_PROXY_COUNT", 0)
    if trusted <= 0:
        # Without a trusted proxy, X-Forwarded-For is whatever the client chose to send.
        return remote
    header = request.META.get("HTTP_X_FORWARDED_FOR", "")
    hops = [hop.strip() for hop in header.split(",") if hop.strip()]
    if len(hops) < trusted:
        return remote
    # Each trusted proxy appends the address it saw; anything further left is client-made.
    # This holds only if clients cannot bypass the proxies and write the whole header.
    return _parse_ip(hops[-trusted]) or remote


def ip_bucket(ip: str) -> str:
    """The rate-limit key for an IP: itself for IPv4, its /64 network for IPv6."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{ip}/{IPV6_BUCKET_PREFIX}", strict=False))
    return ip


class _LocalCounter:
    """A thread-safe fixed-window counter in process memory, used while the cache is down."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}

    def incr(self, key: str, window_end: int) -> int:
        with self._lock:
            if len(self._counts) >= _LOCAL_MAX_KEYS:
                self._prune()
            end, count = self._counts.get(key, (window_end, 0))
            count = count + 1 if end == window_end else 1
            self._counts[key] = (window_end, count)
            return count

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()

    def _prune(self) -> None:
        now = int(time.time())
        self._counts = {k: v for k, v in self._counts.items() if v[0] >= now}
        if len(self._counts) >= _LOCAL_MAX_KEYS:
            # Still full of live windows: forgetting them is safer than growing without bound.
            self._counts.clear()


_local = _LocalCounter()
_last_warning = 0.0


def _warn_cache_down(exc: Exception) -> None:
    # Once a minute per process is enough: every request would otherwise log the same outage.
    global _last_warning
    now = time.monotonic()
    if now - _last_warning >= _WARN_EVERY_SECONDS:
        _last_warning = now
        logger.warning("Rate-limit cache unreachable (%s); using per-process limits.", exc)


def _cache_incr(cache_key: str, period: int) -> int:
    timeout = period + _EXPIRY_FUDGE
    if settings.REDIS_URL:
        # One round trip on the process-wide client (see leaderboard.redis_client).
        pipe = redis_client().pipeline(transaction=False)
        key = f"{key_prefix()}:rl:{cache_key}"
        pipe.incr(key)
        pipe.expire(key, timeout, nx=True)
        count, _ = pipe.execute()
        return int(count)
    cache = caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]
    if cache.add(cache_key, 1, timeout):
        return 1
    try:
        return cache.incr(cache_key)
    except ValueError:
        # The key expired between add() and incr(): this request opens a new window.
        cache.add(cache_key, 1, timeout)
        return 1


def hit(group: str, key: str, rate: str) -> int | None:
    """Count one request for (group, key); None if allowed, else seconds until the window ends."""
    limit, period = _split_rate(rate)
    window_end = _get_window(key, period)
    cache_key = _make_cache_key(group, window_end, rate, key, None)
    try:
        count = _cache_incr(cache_key, period)
    except REDIS_ERRORS as exc:
        _warn_cache_down(exc)
        count = _local.incr(cache_key, window_end)
    if count <= limit:
        return None
    return max(1, window_end - int(time.time()))


def rate_limited(wait: int, detail: str = "Too many requests; try again later.") -> ApiError:
    """The 429 `rate_limited` error, with Retry-After set to `wait` seconds."""
    return ApiError(
        "rate_limited",
        detail,
        status_code=status.HTTP_429_TOO_MANY_REQUESTS,
        headers={"Retry-After": str(wait)},
    )


def enforce(group: str, key: str, rate: str) -> None:
    """Count one request and raise the 429 error when (group, key) is over `rate`."""
    wait = hit(group, key, rate)
    if wait is not None:
        raise rate_limited(wait)
