"""Reads for accounts."""

from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken
from rest_framework_simplejwt.tokens import UntypedToken

from accounts.models import User
from scores.board import player_rank
from scores.models import Score


def user_standing(*, user: User) -> dict:
    """A player's id, name, score and rank; 0 and None before their first event."""
    score = Score.objects.filter(user=user).first()
    return {
        "id": user.pk,
        "username": user.username,
        "score": score.total if score else 0,
        "rank": player_rank(score) if score else None,
    }


def username_canonical(username: str) -> str:
    """The stored spelling of `username`, so sign-in ignores case like uniqueness does."""
    stored = User.objects.filter(username__iexact=username).values_list("username", flat=True)
    return stored.first() or username


def token_verify(*, token: str) -> None:
    """Raise InvalidToken unless `token` is ours, unexpired and not blacklisted."""
    try:
        validated = UntypedToken(token)
    except TokenError as exc:
        raise InvalidToken(str(exc)) from None
    if BlacklistedToken.objects.filter(token__jti=validated.get(api_settings.JTI_CLAIM)).exists():
        raise InvalidToken("Token is blacklisted")
