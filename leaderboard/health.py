"""Liveness and readiness probes."""

import asyncio
import logging
import uuid

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """The process answers."""
    return JsonResponse({"status": "ok"})


def _check_database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


def _check_cache() -> None:
    key = f"readyz:{uuid.uuid4().hex}"
    cache.set(key, "1", timeout=5)
    if cache.get(key) != "1":
        raise RuntimeError("cache did not return what was stored")
    cache.delete(key)


async def _layer_roundtrip() -> None:
    await asyncio.wait_for(_layer_echo(), timeout=3)


async def _layer_echo() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "readyz.ping"})
    message = await layer.receive(channel)
    if message.get("type") != "readyz.ping":
        raise RuntimeError("channel layer returned another message")


def _check_channel_layer() -> None:
    async_to_sync(_layer_roundtrip)()


def _redis_name() -> str:
    from django.conf import settings

    return "redis" if settings.REDIS_URL else "local"


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    """Database, cache and channel layer each checked; 503 names what failed."""
    checks = {
        "database": _check_database,
        "cache": _check_cache,
        "channel_layer": _check_channel_layer,
    }
    results: dict[str, str] = {}
    failed: list[str] = []
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            logger.warning("readiness check %s failed: %s", name, exc)
            results[name] = "error"
            failed.append(name)
    body: dict = {"status": "ok" if not failed else "unavailable", "checks": results}
    if failed:
        # Cache and channel layer both live in Redis when REDIS_URL is set.
        body["failed"] = sorted(
            {
                ("redis" if name != "database" and _redis_name() == "redis" else name)
                for name in failed
            }
        )
    return JsonResponse(body, status=503 if failed else 200)
