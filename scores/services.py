"""Every write to the ledger and the board: players, trusted servers and staff use these.

Each write is one transaction: the ledger row, the limits that depend on the
ledger, and the atomic increment of `Score.total` commit together or not at
all. The player's score row is locked first, which serialises one player's
writes (cooldowns and daily limits hold under concurrency) and costs nothing
extra: the increment takes that lock anyway. Under the lock a known
`action_id` is answered with the original receipt (or 409); the unique
`(user, action_id)` constraint stays as the backstop for any writer that
bypasses these functions. The board refresh is scheduled on commit by
`scores.signals`.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from accounts.models import User
from leaderboard.errors import ApiError
from scores.board import player_rank
from scores.models import ActionType, Score, ScoreEvent

MAX_AWARD_POINTS = 1_000_000
MAX_CORRECTION_POINTS = 1_000_000_000


@dataclass(frozen=True)
class Receipt:
    """What a score write answers: SPEC.md section 6, POST /api/scores/update."""

    action_id: str
    user_id: uuid.UUID
    points_awarded: int
    new_total_score: int
    leaderboard_position: int | None
    replayed: bool = False

    def as_dict(self) -> dict:
        return {
            "success": True,
            "replayed": self.replayed,
            "action_id": self.action_id,
            "user_id": str(self.user_id),
            "points_awarded": self.points_awarded,
            "new_total_score": self.new_total_score,
            "leaderboard_position": self.leaderboard_position,
        }


def _conflict(action_id: str) -> ApiError:
    return ApiError(
        "action_id_conflict",
        f"action_id {action_id!r} was already used for a different action.",
        status_code=409,
    )


def _forbidden_hidden() -> ApiError:
    return ApiError("forbidden", "This player is not allowed on the board.", status_code=403)


def _rank_for(user_id: uuid.UUID) -> int | None:
    score = Score.objects.filter(user_id=user_id).first()
    return player_rank(score) if score is not None else None


def _replay(event: ScoreEvent) -> Receipt:
    return Receipt(
        action_id=event.action_id,
        user_id=event.user_id,
        points_awarded=event.points,
        new_total_score=event.total_after,
        leaderboard_position=_rank_for(event.user_id),
        replayed=True,
    )


def _locked_score(user: User, now: datetime) -> Score:
    """The player's score row, created at zero if new, locked until the transaction ends."""
    score = Score.objects.select_for_update().filter(user=user).first()
    if score is None:
        # First event: create the row; a concurrent first event may win, so no error.
        new = Score(user=user, total=0, reached_at=now)
        Score.objects.bulk_create([new], ignore_conflicts=True)
        score = Score.objects.select_for_update().get(user=user)
    return score


def _append(*, score: Score, event: ScoreEvent) -> Score:
    """Insert the ledger row and apply its points to the total, atomically at the database.

    Returns the player's row as it is after the change (the caller holds its lock).
    """
    event.total_after = score.total + event.points
    # No savepoint: every write for this player holds the row lock and has just
    # checked the action_id, so the unique constraint can only fire on a writer
    # that bypassed the services; its IntegrityError rolls back the transaction.
    event.save(force_insert=True)
    Score.objects.filter(pk=score.pk).update(
        total=F("total") + event.points, reached_at=event.created_at, revision=F("revision") + 1
    )
    score.total = event.total_after
    score.reached_at = event.created_at
    score.revision += 1
    return score


class _Duplicate(Exception):
    """The action_id was taken between our check and our insert."""


def _existing(user: User, action_id: str) -> ScoreEvent | None:
    return (
        ScoreEvent.objects.select_related("action_type")
        .filter(user=user, action_id=action_id)
        .first()
    )


def _check_limits(*, user: User, action: ActionType, now: datetime) -> None:
    """Cooldown and daily limit, read from the ledger under the player's row lock."""
    events = ScoreEvent.objects.filter(user=user, action_type=action, kind=ScoreEvent.Kind.ACTION)
    if action.cooldown_seconds:
        last = events.order_by("-created_at").values_list("created_at", flat=True).first()
        if last is not None:
            ready_at = last + timedelta(seconds=action.cooldown_seconds)
            if ready_at > now:
                wait = max(int((ready_at - now).total_seconds() + 0.999), 1)
                raise ApiError(
                    "cooldown",
                    f"{action.code!r} is cooling down; try again in {wait} s.",
                    status_code=429,
                    headers={"Retry-After": str(wait)},
                )
    if action.daily_limit is not None:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        done_today = events.filter(created_at__gte=day_start).count()
        if done_today >= action.daily_limit:
            wait = max(int((day_start + timedelta(days=1) - now).total_seconds()), 1)
            raise ApiError(
                "daily_limit",
                f"{action.code!r} can be completed {action.daily_limit} time(s) per UTC day.",
                status_code=429,
                headers={"Retry-After": str(wait)},
            )


def _write(*, user: User, event: ScoreEvent, matches, limits=None, allow_hidden=False) -> Receipt:
    """The shared write: under the player's row lock, replay or refuse a known action_id,
    else check the limits and append."""
    try:
        with transaction.atomic():
            score = _locked_score(user, event.created_at)
            existing = _existing(user, event.action_id)
            if existing is not None:
                raise _Duplicate
            if score.is_hidden and not allow_hidden:
                raise _forbidden_hidden()
            if limits is not None:
                limits()
            score = _append(score=score, event=event)
    except (_Duplicate, IntegrityError):
        existing = _existing(user, event.action_id)
        if existing is None:
            raise
        if not matches(existing):
            raise _conflict(event.action_id) from None
        return _replay(existing)
    return Receipt(
        action_id=event.action_id,
        user_id=user.pk,
        points_awarded=event.points,
        new_total_score=event.total_after,
        # The index was brought up to date on commit; `score` is the committed row.
        leaderboard_position=player_rank(score),
    )


def score_record_action(
    *,
    user: User,
    action_id: str,
    action: str,
    client_ip: str | None = None,
    client_timestamp: datetime | None = None,
) -> Receipt:
    """Apply one completed action at most once, at the catalog's points; return the receipt."""
    action_type = ActionType.objects.filter(code=action, is_active=True).first()
    if action_type is None:
        raise ApiError(
            "invalid",
            "Unknown or inactive action.",
            fields={"action": [f"{action!r} is not an active action code."]},
        )
    now = timezone.now()
    event = ScoreEvent(
        user=user,
        action_id=action_id,
        action_type=action_type,
        points=action_type.points,
        kind=ScoreEvent.Kind.ACTION,
        client_ip=client_ip,
        client_timestamp=client_timestamp,
        created_at=now,
    )

    def matches(existing: ScoreEvent) -> bool:
        return existing.kind == ScoreEvent.Kind.ACTION and existing.action_type_id == action_type.pk

    return _write(
        user=user,
        event=event,
        matches=matches,
        limits=partial(_check_limits, user=user, action=action_type, now=now),
    )


def score_award(
    *,
    user: User,
    action_id: str,
    points: int,
    reason: str,
    created_by: User | None = None,
    client_ip: str | None = None,
) -> Receipt:
    """Award points computed by a trusted game server, at most once per action_id."""
    if not 1 <= points <= MAX_AWARD_POINTS:
        raise ApiError(
            "invalid", "Points out of range.", fields={"points": ["Must be 1..1000000."]}
        )
    event = ScoreEvent(
        user=user,
        action_id=action_id,
        points=points,
        kind=ScoreEvent.Kind.AWARD,
        reason=reason,
        created_by=created_by,
        client_ip=client_ip,
        created_at=timezone.now(),
    )

    def matches(existing: ScoreEvent) -> bool:
        return existing.kind == ScoreEvent.Kind.AWARD and existing.points == points

    return _write(user=user, event=event, matches=matches)


def score_correct(
    *,
    user: User,
    points: int,
    reason: str,
    created_by: User | None,
    action_id: str | None = None,
) -> Receipt:
    """A staff correction: a signed ledger entry recording who made it and why."""
    if points == 0 or abs(points) > MAX_CORRECTION_POINTS:
        raise ApiError("invalid", "A correction must be a non-zero number of points.")
    if not reason.strip():
        raise ApiError("invalid", "A correction needs a reason.", fields={"reason": ["Required."]})
    event = ScoreEvent(
        user=user,
        action_id=action_id or f"correction:{uuid.uuid4()}",
        points=points,
        kind=ScoreEvent.Kind.CORRECTION,
        reason=reason.strip(),
        created_by=created_by,
        created_at=timezone.now(),
    )

    def matches(existing: ScoreEvent) -> bool:
        return existing.kind == ScoreEvent.Kind.CORRECTION and existing.points == points

    return _write(user=user, event=event, matches=matches, allow_hidden=True)


def player_set_hidden(
    *, user: User, hidden: bool, reason: str = "", by: User | None = None
) -> Score:
    """Hide a player from the board (or bring them back); the board updates live."""
    from realtime.broadcast import board_changed

    with transaction.atomic():
        score = _locked_score(user, timezone.now())
        Score.objects.filter(pk=score.pk).update(
            is_hidden=hidden,
            hidden_reason=reason.strip()[:200],
            hidden_by=by,
            hidden_changed_at=timezone.now(),
            revision=F("revision") + 1,
        )
        transaction.on_commit(partial(board_changed, user_id=user.pk))
    score.refresh_from_db()
    return score
