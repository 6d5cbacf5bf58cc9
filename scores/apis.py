"""The scores HTTP API (SPEC.md section 6, "Scores"): thin views over services and selectors."""

from datetime import timedelta

from django.conf import settings
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from leaderboard.errors import ApiError, error_responses
from leaderboard.limits import client_ip, hit, rate_limited
from leaderboard.parsers import parse_strict
from scores import selectors
from scores.board import leaderboard_snapshot, player_rank
from scores.models import ActionType, LimitHit, Score, ScoreEvent
from scores.services import score_award, score_record_action

ACTION_ID = r"^[A-Za-z0-9._:-]{1,100}$"
FUTURE_SKEW = timedelta(minutes=5)


class StrictStringMixin:
    """Refuse numbers and booleans where a string is expected (DRF would coerce them)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a string.")
        return super().to_internal_value(data)


class ActionIdField(StrictStringMixin, serializers.RegexField):
    def __init__(self, **kwargs) -> None:
        super().__init__(ACTION_ID, max_length=100, **kwargs)


class ActionCodeField(StrictStringMixin, serializers.SlugField):
    pass


class StrictIntegerField(serializers.IntegerField):
    """Only a JSON integer: no strings, floats or booleans."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            raise serializers.ValidationError("Must be an integer.")
        return super().to_internal_value(data)


def _limit(request: Request, user: User) -> None:
    wait = hit("score", str(user.pk), settings.SCORE_RATE_LIMIT)
    if wait is not None:
        raise rate_limited(wait, "Too many score updates; slow down.")


def _record_limit_hit(user: User, exc: ApiError) -> None:
    if exc.status_code == 429:
        LimitHit.objects.create(user=user, code=exc.code)


def _single_values(request: Request) -> None:
    """Refuse a query parameter given twice: which one counts would be a guess."""
    repeated = [name for name, values in request.query_params.lists() if len(values) > 1]
    if repeated:
        raise ApiError(
            "invalid",
            "A query parameter was given more than once.",
            fields={name[:50]: ["Give this parameter once."] for name in repeated[:20]},
        )


class ReceiptSerializer(serializers.Serializer):
    success = serializers.BooleanField()
    replayed = serializers.BooleanField()
    action_id = serializers.CharField()
    user_id = serializers.UUIDField()
    points_awarded = serializers.IntegerField()
    new_total_score = serializers.IntegerField()
    leaderboard_position = serializers.IntegerField(allow_null=True)


class ScoreUpdateApi(APIView):
    """A player reports a completed action; the server decides what it is worth."""

    permission_classes = [IsAuthenticated]

    class ScoreUpdateInputSerializer(serializers.Serializer):
        action_id = ActionIdField()
        action = ActionCodeField(max_length=50)
        timestamp = serializers.DateTimeField(required=False)
        user_id = serializers.UUIDField(required=False)

        def validate_timestamp(self, value):
            if value > timezone.now() + FUTURE_SKEW:
                raise serializers.ValidationError("Must not be more than 5 minutes in the future.")
            return value

    @extend_schema(
        request=ScoreUpdateInputSerializer,
        responses={200: ReceiptSerializer, **error_responses(400, 401, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        user = request.user
        _limit(request, user)
        data = parse_strict(self.ScoreUpdateInputSerializer, request.data)
        if "user_id" in data and data["user_id"] != user.pk:
            raise ApiError("forbidden", "You can only add to your own score.", status_code=403)
        try:
            receipt = score_record_action(
                user=user,
                action_id=data["action_id"],
                action=data["action"],
                client_ip=client_ip(request),
                client_timestamp=data.get("timestamp"),
            )
        except ApiError as exc:
            _record_limit_hit(user, exc)
            raise
        return Response(receipt.as_dict())


class CanAwardPoints(IsAuthenticated):
    def has_permission(self, request, view) -> bool:
        return super().has_permission(request, view) and request.user.has_perm(
            "scores.award_points"
        )


class ScoreAwardApi(APIView):
    """A trusted game server awards points it computed itself."""

    permission_classes = [CanAwardPoints]

    class ScoreAwardInputSerializer(serializers.Serializer):
        user_id = serializers.UUIDField()
        action_id = ActionIdField()
        points = StrictIntegerField(min_value=1, max_value=1_000_000)
        reason = serializers.CharField(max_length=500)

    @extend_schema(
        request=ScoreAwardInputSerializer,
        responses={200: ReceiptSerializer, **error_responses(400, 401, 403, 409, 429)},
    )
    def post(self, request: Request) -> Response:
        _limit(request, request.user)
        data = parse_strict(self.ScoreAwardInputSerializer, request.data)
        player = User.objects.filter(pk=data["user_id"], is_active=True).first()
        if player is None:
            raise ApiError("invalid", "Unknown player.", fields={"user_id": ["No such player."]})
        receipt = score_award(
            user=player,
            action_id=data["action_id"],
            points=data["points"],
            reason=data["reason"],
            created_by=request.user,
            client_ip=client_ip(request),
        )
        return Response(receipt.as_dict())


class BoardRowSerializer(serializers.Serializer):
    rank = serializers.IntegerField()
    user_id = serializers.UUIDField()
    username = serializers.CharField()
    score = serializers.IntegerField()
    last_updated = serializers.DateTimeField()


class LeaderboardSerializer(serializers.Serializer):
    leaderboard = BoardRowSerializer(many=True)
    total_players = serializers.IntegerField()
    last_refresh = serializers.DateTimeField()
    version = serializers.IntegerField()


class LeaderboardApi(APIView):
    """The top ten, from the cache (or the database when Redis is down)."""

    authentication_classes: list = []

    @extend_schema(responses={200: LeaderboardSerializer})
    def get(self, request: Request) -> Response:
        board = leaderboard_snapshot()
        return Response({key: board[key] for key in LeaderboardSerializer().fields})


class PlayerSerializer(serializers.Serializer):
    user_id = serializers.UUIDField()
    username = serializers.CharField()
    score = serializers.IntegerField()
    rank = serializers.IntegerField(allow_null=True)
    last_updated = serializers.DateTimeField(allow_null=True)
    neighbors = BoardRowSerializer(many=True, required=False)


class PlayerApi(APIView):
    """One player's score and rank; `?around=N` adds the N players above and below."""

    authentication_classes: list = []

    class PlayerQuerySerializer(serializers.Serializer):
        # Digits only: DRF's IntegerField would also take "0.0" or " 5".
        around = serializers.RegexField(
            r"^(10|[0-9])$",
            required=False,
            trim_whitespace=False,
            error_messages={"invalid": "Must be 0..10."},
        )

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "around",
                {"type": "integer", "minimum": 0, "maximum": 10},
                description="0..10 neighbours each side",
            )
        ],
        responses={200: PlayerSerializer, **error_responses(400, 404)},
    )
    def get(self, request: Request, user_id) -> Response:
        _single_values(request)
        query = parse_strict(self.PlayerQuerySerializer, request.query_params.dict())
        player = get_object_or_404(User, pk=user_id, is_active=True)
        score = Score.objects.filter(user=player).first()
        if score is not None and score.is_hidden:
            raise ApiError("not_found", "Not found.", status_code=404)
        body = {
            "user_id": str(player.pk),
            "username": player.username,
            "score": score.total if score else 0,
            "rank": player_rank(score) if score else None,
            "last_updated": score.reached_at if score else None,
        }
        around = int(query["around"]) if "around" in query else None
        if around is not None:
            body["neighbors"] = (
                selectors.neighbors(score=score, rank=body["rank"], count=around) if score else []
            )
        return Response(PlayerSerializer(body).data)


class ActionsApi(APIView):
    """The active catalog: what each action is worth and how often it counts."""

    authentication_classes: list = []

    class ActionSerializer(serializers.ModelSerializer):
        class Meta:
            model = ActionType
            fields = ["code", "name", "points", "cooldown_seconds", "daily_limit"]

    @extend_schema(responses={200: ActionSerializer(many=True)})
    def get(self, request: Request) -> Response:
        actions = ActionType.objects.filter(is_active=True).order_by("code")
        return Response(self.ActionSerializer(actions, many=True).data)


class HistoryPagination(CursorPagination):
    ordering = ("-created_at", "-id")
    page_size = 50
    max_page_size = 200
    page_size_query_param = "page_size"


class HistoryApi(APIView):
    """The caller's own ledger, newest first, cursor-paginated."""

    permission_classes = [IsAuthenticated]

    class HistoryEntrySerializer(serializers.ModelSerializer):
        action = serializers.SlugRelatedField(
            source="action_type", slug_field="code", read_only=True
        )

        class Meta:
            model = ScoreEvent
            fields = [
                "id",
                "action_id",
                "action",
                "kind",
                "points",
                "total_after",
                "reason",
                "client_timestamp",
                "created_at",
            ]

    class HistoryQuerySerializer(serializers.Serializer):
        cursor = serializers.CharField(required=False, max_length=500)
        page_size = serializers.RegexField(
            r"^([1-9][0-9]?|1[0-9][0-9]|200)$",
            required=False,
            trim_whitespace=False,
            error_messages={"invalid": "Must be 1..200."},
        )

    @extend_schema(
        parameters=[
            OpenApiParameter("cursor", str, description="From `next` or `previous`."),
            OpenApiParameter(
                "page_size",
                {"type": "integer", "minimum": 1, "maximum": 200},
                description="Entries per page (default 50).",
            ),
        ],
        responses={
            200: inline_serializer(
                "HistoryPage",
                {
                    "next": serializers.URLField(allow_null=True),
                    "previous": serializers.URLField(allow_null=True),
                    "results": HistoryEntrySerializer(many=True),
                },
            ),
            **error_responses(400, 401, 404),
        },
    )
    def get(self, request: Request) -> Response:
        _single_values(request)
        parse_strict(self.HistoryQuerySerializer, request.query_params.dict())
        events = ScoreEvent.objects.filter(user=request.user).select_related("action_type")
        paginator = HistoryPagination()
        page = paginator.paginate_queryset(events, request, view=self)
        return paginator.get_paginated_response(self.HistoryEntrySerializer(page, many=True).data)
