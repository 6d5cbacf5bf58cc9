"""Schemathesis against /api/schema/ on a live Daphne: no 5xx, every response as documented."""

import os
import subprocess
from pathlib import Path

import pytest

from tests.faults import BIN, LIVE_SERVER_MARKS, Daphne, RedisServer, access_token

pytestmark = LIVE_SERVER_MARKS

# A budget per run; the whole test stays well under three minutes.
MAX_SECONDS = os.environ.get("FUZZ_SECONDS", "40")
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
        "ignored_auth",
        "use_after_free",
        "ensure_resource_availability",
    ]
)


@pytest.fixture
def live():
    from accounts.models import User
    from scores.models import ActionType

    ActionType.objects.create(code="win", name="Win", points=100)
    player = User.objects.create(username="fuzzer", password="!")
    redis_server = RedisServer().start()
    daphne = Daphne(redis_server.url).start()
    yield daphne, player
    daphne.stop()
    redis_server.kill()


def schemathesis(daphne: Daphne, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    command = [
        str(BIN / "st"),
        "run",
        f"{daphne.base}/api/schema/",
        "--checks",
        CHECKS,
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--max-time",
        MAX_SECONDS,
        # One worker: with several, CPython 3.11's ast module (used by hypothesis) can
        # fail with "AST constructor recursion depth mismatch" inside schemathesis.
        "--workers",
        "1",
        "--request-timeout",
        "10",
        "--max-failures",
        "20",
        "--suppress-health-check",
        "all",
        "--seed",
        "20261123",
        *extra,
    ]
    return subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=int(MAX_SECONDS) * 2 + 60,
        env={**os.environ, "NO_COLOR": "1", "SCHEMATHESIS_HOOKS": ""},
        check=False,
    )


def test_fuzz_without_token(live, tmp_path):
    daphne, _player = live
    result = schemathesis(daphne, tmp_path)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert daphne.server_errors() == [], daphne.output()[-5000:]


def test_fuzz_with_a_valid_token(live, tmp_path):
    daphne, player = live
    result = schemathesis(daphne, tmp_path, "-H", f"Authorization: Bearer {access_token(player)}")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert daphne.server_errors() == [], daphne.output()[-5000:]
