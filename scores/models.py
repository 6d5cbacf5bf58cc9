import uuid

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class ActionType(models.Model):
    """An action a player can complete, and what it is worth. The server decides points."""

    code = models.SlugField(max_length=50, unique=True)
    name = models.CharField(max_length=100)
    points = models.PositiveIntegerField(
        validators=[MinValueValidator(1), MaxValueValidator(1_000_000)]
    )
    cooldown_seconds = models.PositiveIntegerField(
        default=0, help_text="Minimum time between two completions by one player."
    )
    daily_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Maximum completions per player per UTC day."
    )
    is_active = models.BooleanField(default=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(points__gte=1, points__lte=1_000_000),
                name="scores_actiontype_points_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.points})"


class Score(models.Model):
    """A player's place on the board: the running total of their ledger."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="score"
    )
    total = models.BigIntegerField(default=0)
    reached_at = models.DateTimeField(help_text="When the current total was reached.")
    is_hidden = models.BooleanField(default=False)
    hidden_reason = models.CharField(max_length=200, blank=True)
    hidden_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who last hid or unhid the player.",
    )
    hidden_changed_at = models.DateTimeField(null=True, blank=True)
    # Bumped with every change of the row; the Redis rank index applies a change
    # only if it is newer than the one it holds, so late writers cannot regress it.
    revision = models.BigIntegerField(default=0)

    class Meta:
        indexes = [
            models.Index(
                models.F("total").desc(),
                models.F("reached_at").asc(),
                models.F("user_id").asc(),
                name="scores_score_rank_idx",
                condition=models.Q(is_hidden=False),
            ),
        ]
        permissions = [
            ("award_points", "Can award points as a trusted game server"),
            ("correct_score", "Can correct a player's score"),
            ("hide_player", "Can hide or unhide a player from the board"),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.total}"


class ScoreEvent(models.Model):
    """One line of the append-only ledger: every point has one."""

    class Kind(models.TextChoices):
        ACTION = "action", "Action"
        AWARD = "award", "Award"
        CORRECTION = "correction", "Correction"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="score_events"
    )
    action_id = models.CharField(max_length=100, help_text="The client's idempotency key.")
    action_type = models.ForeignKey(
        ActionType, on_delete=models.PROTECT, null=True, blank=True, related_name="events"
    )
    points = models.BigIntegerField()
    total_after = models.BigIntegerField(
        null=True, editable=False, help_text="The player's total once this entry applied."
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    client_ip = models.GenericIPAddressField(null=True, blank=True)
    client_timestamp = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "action_id"], name="scores_event_user_action_id"
            ),
        ]
        indexes = [
            models.Index(fields=["user", "created_at"], name="scores_event_user_created"),
            models.Index(
                fields=["user", "action_type", "created_at"], name="scores_event_user_type_time"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.points:+d} for {self.user_id} ({self.action_id})"


class LimitHit(models.Model):
    """A refused score update (rate limit, cooldown, daily limit), for the suspicious list."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="limit_hits"
    )
    code = models.CharField(max_length=20)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        indexes = [models.Index(fields=["user", "created_at"], name="scores_limithit_user_time")]

    def __str__(self) -> str:
        return f"{self.code} by {self.user_id}"
