import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DJANGO_SETTINGS_MODULE": "leaderboard.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_healthz_answers(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_checks_database_cache_and_channel_layer(client):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["checks"] == {
        "database": "ok",
        "cache": "ok",
        "channel_layer": "ok",
    }


def test_readyz_is_503_naming_redis_when_redis_does_not_answer(tmp_path):
    port = _free_port()  # nothing listens here
    code = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/readyz'); print(r.status_code); print(r.content.decode())"
    )
    result = _run(code, REDIS_URL=f"redis://127.0.0.1:{port}/0", DEBUG="1")
    assert result.returncode == 0, result.stderr
    status, body = result.stdout.strip().splitlines()[-2:]
    assert status == "503"
    assert '"failed": ["redis"]' in body
    assert '"database": "ok"' in body


@pytest.mark.needs_postgres
@pytest.mark.django_db
def test_database_url_selects_postgresql_through_the_pool():
    assert connection.vendor == "postgresql"
    assert settings.DATABASES["default"]["OPTIONS"]["pool"]["max_size"] >= 2
    assert connection.pool is not None


@pytest.mark.needs_redis
def test_redis_url_selects_redis_cache_and_channel_layer():
    from channels.layers import get_channel_layer
    from channels_redis.core import RedisChannelLayer
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    assert isinstance(get_channel_layer(), RedisChannelLayer)
    assert isinstance(caches["default"], RedisCache)
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert host["socket_timeout"] is None


@pytest.mark.parametrize(
    ("env", "sentence"),
    [
        ({"DEBUG": "0", "SECRET_KEY": ""}, "SECRET_KEY must be set when DEBUG is off."),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL is not a valid database URL"),
        ({"REDIS_URL": "http://example.com"}, "REDIS_URL must be a redis://"),
        ({"ACCESS_TOKEN_MINUTES": "60"}, "ACCESS_TOKEN_MINUTES must be between 1 and 15"),
    ],
)
def test_bad_configuration_fails_at_start_with_one_sentence(env, sentence):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert sentence in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.django_db
def test_no_missing_migrations():
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_static_assets_are_served_by_the_app(client):
    response = client.get("/static/scoreboard.js")
    assert response.status_code == 200


def test_api_docs_are_served_without_a_cdn(client):
    response = client.get("/api/docs/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui-bundle.js" in html
    assert "cdn." not in html
    assert "https://" not in html


@pytest.mark.django_db
def test_schema_describes_every_endpoint(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    paths = set(response.json()["paths"])
    assert {
        "/api/auth/register",
        "/api/auth/token",
        "/api/auth/token/refresh",
        "/api/auth/token/verify",
        "/api/auth/logout",
        "/api/auth/me",
        "/api/actions",
        "/api/scores/update",
        "/api/scores/award",
        "/api/scores/leaderboard",
        "/api/scores/players/{user_id}",
        "/api/scores/history",
    } <= paths
