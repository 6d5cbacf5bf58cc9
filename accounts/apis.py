"""Account endpoints: registration, JWT pair, rotation, verification, logout, profile."""

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.serializers import (
    CredentialsSerializer,
    EmptySerializer,
    MeSerializer,
    RefreshSerializer,
    RegisterSerializer,
    TokenPairSerializer,
    UserSerializer,
    VerifySerializer,
)
from leaderboard.errors import ApiError, error_responses
from leaderboard.limits import client_ip, enforce, ip_bucket
from leaderboard.parsers import parse_strict

TAGS = ["auth"]

ERROR_MEANINGS = {
    400: "`invalid`: malformed JSON, missing, invalid or unknown fields.",
    401: "`not_authenticated`, `token_invalid` or `invalid_credentials`.",
    403: "`forbidden`.",
    413: "`too_large`: the body is over the size limit.",
    415: "`unsupported_media_type`: the body is not JSON.",
    429: "`rate_limited`: too many requests from this IP; see Retry-After.",
}
RETRY_AFTER = OpenApiParameter(
    "Retry-After",
    int,
    OpenApiParameter.HEADER,
    response=[429],
    description="Seconds until the limit resets.",
)


def _errors(*codes: int) -> dict[int, OpenApiResponse]:
    return error_responses(*codes, descriptions=ERROR_MEANINGS)


def _limit_by_ip(request: Request) -> None:
    # Counted before the body is parsed, so malformed attempts spend the budget too.
    enforce("auth", ip_bucket(client_ip(request)), settings.AUTH_RATE_LIMIT)


class PublicApi(APIView):
    """An endpoint that ignores any Authorization header: a stale token must not block login."""

    authentication_classes = []
    permission_classes = [AllowAny]


class RegisterApi(PublicApi):
    @extend_schema(
        tags=TAGS,
        summary="Create a player account",
        request=RegisterSerializer,
        parameters=[RETRY_AFTER],
        responses={201: UserSerializer, **_errors(400, 413, 415, 429)},
    )
    def post(self, request: Request) -> Response:
        """Create a player from a username, password and optional email."""
        _limit_by_ip(request)
        data = parse_strict(RegisterSerializer, request.data)
        user = services.user_create(**data)
        return Response(UserSerializer(user).data, status=status.HTTP_201_CREATED)


class TokenApi(PublicApi):
    @extend_schema(
        tags=TAGS,
        summary="Exchange credentials for an access and refresh token",
        request=CredentialsSerializer,
        parameters=[RETRY_AFTER],
        responses={200: TokenPairSerializer, **_errors(400, 401, 413, 415, 429)},
    )
    def post(self, request: Request) -> Response:
        """Sign in: a token pair for valid credentials of an active user."""
        _limit_by_ip(request)
        data = parse_strict(CredentialsSerializer, request.data)
        username = selectors.username_canonical(data["username"])
        user = authenticate(request, username=username, password=data["password"])
        if user is None:
            raise ApiError(
                "invalid_credentials",
                "No active account matches these credentials.",
                status_code=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": 'Bearer realm="api"'},
            )
        return Response(services.token_pair(user=user))


class TokenRefreshApi(PublicApi):
    @extend_schema(
        tags=TAGS,
        summary="Rotate a refresh token",
        description="Returns a new pair; the refresh token sent is blacklisted.",
        request=RefreshSerializer,
        responses={200: TokenPairSerializer, **_errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        """Spend a refresh token for a new pair."""
        data = parse_strict(RefreshSerializer, request.data)
        return Response(services.token_rotate(refresh=data["refresh"]))


class TokenVerifyApi(PublicApi):
    @extend_schema(
        tags=TAGS,
        summary="Check that a token is valid",
        request=VerifySerializer,
        responses={200: EmptySerializer, **_errors(400, 401, 413, 415)},
    )
    def post(self, request: Request) -> Response:
        """200 with an empty object for a live token; 401 otherwise."""
        data = parse_strict(VerifySerializer, request.data)
        selectors.token_verify(token=data["token"])
        return Response({})


class LogoutApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="Log out: blacklist a refresh token",
        request=RefreshSerializer,
        responses={
            205: OpenApiResponse(description="The refresh token is dead."),
            **_errors(400, 401, 403, 413, 415),
        },
    )
    def post(self, request: Request) -> Response:
        """Blacklist the caller's refresh token."""
        data = parse_strict(RefreshSerializer, request.data)
        services.token_revoke(user=request.user, refresh=data["refresh"])
        return Response(status=status.HTTP_205_RESET_CONTENT)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=TAGS,
        summary="The caller's account, score and rank",
        responses={200: MeSerializer, **_errors(401)},
    )
    def get(self, request: Request) -> Response:
        """The caller's id, username, score and overall rank (null before the first event)."""
        return Response(MeSerializer(selectors.user_standing(user=request.user)).data)
