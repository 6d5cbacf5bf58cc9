"""Registration rules and bad input: 400 or 413 in the error shape, and nothing created."""

import json

import pytest

from accounts.models import User
from accounts.tests.helpers import PASSWORD, error_of, post

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("roomy_limits")]


def _assert_invalid(response, *fields: str) -> dict:
    assert response.status_code == 400, response.content
    assert error_of(response) == "invalid"
    body = response.json()
    for name in fields:
        assert body["fields"][name], body
    return body


def test_username_is_unique_ignoring_case(api_client, make_user):
    make_user("Alice")
    response = post(api_client, "register", {"username": "aLICE", "password": PASSWORD})
    _assert_invalid(response, "username")
    assert User.objects.count() == 1


@pytest.mark.parametrize(
    "username",
    [
        "<script>alert(1)</script>",
        "<b>bold</b>",
        "ab",
        "a" * 31,
        "has space",
        "émile",
        "semi;colon",
        "quote'd",
        "",
    ],
)
def test_username_outside_the_safe_charset_or_length_is_refused(api_client, username):
    response = post(api_client, "register", {"username": username, "password": PASSWORD})
    _assert_invalid(response, "username")
    assert b"<script>" not in response.content
    assert not User.objects.exists()


@pytest.mark.parametrize("username", ["abc", "a" * 30, "Player.One_2-x"])
def test_username_inside_the_rules_is_accepted(api_client, username):
    response = post(api_client, "register", {"username": username, "password": PASSWORD})
    assert response.status_code == 201, response.content
    assert User.objects.filter(username=username).exists()


@pytest.mark.parametrize(
    "password",
    ["short1", "password123", "12345678901", "sunny-alice-99x"],
    ids=["too-short", "common", "numeric", "like-username"],
)
def test_weak_passwords_fail_djangos_validators(api_client, password):
    body = {"username": "sunny-alice", "password": password, "email": "sunny@example.com"}
    _assert_invalid(post(api_client, "register", body), "password")
    assert not User.objects.exists()


def test_email_is_optional_but_validated(api_client):
    response = post(
        api_client, "register", {"username": "mail", "password": PASSWORD, "email": "nope"}
    )
    _assert_invalid(response, "email")
    response = post(api_client, "register", {"username": "nomail", "password": PASSWORD})
    assert response.status_code == 201
    assert User.objects.get().email == ""


@pytest.mark.parametrize(
    "extra", [{"is_staff": True}, {"is_superuser": True}, {"id": "x"}, {"score": 10}]
)
def test_unknown_fields_are_refused(api_client, extra):
    body = {"username": "sneaky", "password": PASSWORD, **extra}
    _assert_invalid(post(api_client, "register", body), *extra)
    assert not User.objects.exists()


@pytest.mark.parametrize(
    ("path", "body", "fields"),
    [
        ("register", {}, ["username", "password"]),
        ("register", {"username": "someone"}, ["password"]),
        ("token", {"username": "someone"}, ["password"]),
        ("token", {}, ["username", "password"]),
        ("token/refresh", {}, ["refresh"]),
        ("token/verify", {}, ["token"]),
    ],
)
def test_missing_fields_are_400_with_fields(api_client, path, body, fields):
    _assert_invalid(post(api_client, path, body), *fields)
    assert not User.objects.exists()


@pytest.mark.parametrize("path", ["register", "token", "token/refresh", "token/verify"])
@pytest.mark.parametrize(
    "raw",
    ["{not json", "", "[1, 2]", '"a string"', "null", "NaN", "[" * 60_000],
    ids=["malformed", "empty", "array", "string", "null", "nan", "deeply-nested"],
)
def test_a_body_that_is_not_a_json_object_is_400(api_client, path, raw):
    response = api_client.post(f"/api/auth/{path}", raw, content_type="application/json")
    assert response.status_code == 400, response.content
    assert error_of(response) == "invalid"
    assert not User.objects.exists()


def test_a_form_encoded_body_is_415_in_the_error_shape(api_client):
    response = api_client.post(
        "/api/auth/register", {"username": "formy", "password": PASSWORD}, format="multipart"
    )
    assert response.status_code == 415
    assert error_of(response) == "unsupported_media_type"
    assert not User.objects.exists()


@pytest.mark.parametrize("path", ["register", "token", "token/refresh"])
def test_a_one_megabyte_body_is_413_in_the_error_shape(api_client, path):
    body = json.dumps({"username": "big", "password": PASSWORD, "padding": "x" * 1024 * 1024})
    response = api_client.post(f"/api/auth/{path}", body, content_type="application/json")
    assert response.status_code == 413, response.content[:200]
    assert error_of(response) == "too_large"
    assert not User.objects.exists()


def test_a_body_just_under_the_limit_is_parsed(api_client, settings):
    # The limit refuses big bodies, not ordinary ones: this one fails only on its fields.
    padding = "x" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 100)
    body = json.dumps({"username": "big", "password": PASSWORD, "padding": padding})
    response = api_client.post("/api/auth/register", body, content_type="application/json")
    _assert_invalid(response, "padding")


def test_overlong_password_is_refused_before_hashing(api_client):
    response = post(api_client, "register", {"username": "longpw", "password": "p" * 5000})
    _assert_invalid(response, "password")


def test_a_registration_race_on_one_name_is_a_400_not_a_500():
    # Two requests can both pass the serializer's check; the database constraint decides.
    from rest_framework.exceptions import ValidationError

    from accounts.services import user_create

    user_create(username="racer", password=PASSWORD)
    with pytest.raises(ValidationError) as caught:
        user_create(username="RACER", password=PASSWORD)
    assert "username" in caught.value.detail
    assert User.objects.count() == 1
