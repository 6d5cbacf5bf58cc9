"""Writes for accounts: creating players and issuing, rotating and revoking their tokens."""

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from rest_framework import serializers
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import User
from leaderboard.errors import ApiError


def user_create(*, username: str, password: str, email: str = "") -> User:
    """Create a player; a concurrent registration of the same name loses with a 400."""
    try:
        with transaction.atomic():
            return User.objects.create_user(username=username, password=password, email=email)
    except IntegrityError:
        # The case-insensitive unique constraint caught a race the serializer could not see.
        raise serializers.ValidationError(
            {"username": ["A user with that username already exists."]}
        ) from None


def token_pair(*, user: User) -> dict[str, str]:
    """A fresh access and refresh token for `user`."""
    refresh = RefreshToken.for_user(user)
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


def _refresh_token(raw: str) -> RefreshToken:
    try:
        return RefreshToken(raw)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from None


def _token_user(token: RefreshToken) -> User:
    user_id = token.get(api_settings.USER_ID_CLAIM)
    user = get_user_model().objects.filter(**{api_settings.USER_ID_FIELD: user_id}).first()
    if user is None or not user.is_active:
        raise InvalidToken("No active account found for the given token.")
    return user


def _spend(token: RefreshToken) -> None:
    # The blacklist row is unique per token, so of two concurrent uses exactly one creates it;
    # the other is refused rather than minting a second token family.
    _, created = token.blacklist()
    if not created:
        raise InvalidToken("Token is blacklisted")


@transaction.atomic
def token_rotate(*, refresh: str) -> dict[str, str]:
    """Spend a refresh token and return a new pair; the old refresh token is dead after this."""
    token = _refresh_token(refresh)
    user = _token_user(token)
    _spend(token)
    return token_pair(user=user)


@transaction.atomic
def token_revoke(*, user: User, refresh: str) -> None:
    """Blacklist one of `user`'s refresh tokens (logout)."""
    token = _refresh_token(refresh)
    if str(token.get(api_settings.USER_ID_CLAIM)) != str(user.pk):
        raise ApiError("forbidden", "That refresh token belongs to another user.", status_code=403)
    _spend(token)
