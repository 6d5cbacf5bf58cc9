import pytest


@pytest.fixture(autouse=True)
def _fast_hashing(settings):
    """MD5 hashing: these tests hash hundreds of passwords; the hasher is not under test."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def roomy_limits(settings):
    """Lift the auth rate limit for tests that are not about it."""
    settings.AUTH_RATE_LIMIT = "1000/m"
