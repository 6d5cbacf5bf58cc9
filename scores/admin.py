"""Staff tools (SPEC.md section 10): the read-only ledger, players, corrections, the catalog.

Every change a staff member makes goes through `scores.services`, so the ledger,
`Score.total` and the live board cannot drift apart: `Score` and `ScoreEvent`
are never saved by the admin itself (its plain save would overwrite concurrent
increments). Hide, unhide and corrections are also written to the admin log.
"""

import contextlib
import ipaddress
import json
import logging
import uuid
from datetime import timedelta
from functools import cached_property

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import DatabaseError, connections
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Lower
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.models import User
from leaderboard.errors import ApiError
from scores.models import ActionType, LimitHit, Score, ScoreEvent
from scores.selectors import db_rank
from scores.services import MAX_CORRECTION_POINTS, player_set_hidden, score_correct

logger = logging.getLogger(__name__)

# Refused updates (rate limit, cooldown, daily limit) in one hour that make a player suspicious.
SUSPICIOUS_LIMIT_HITS_PER_HOUR = settings.SUSPICIOUS_LIMIT_HITS_PER_HOUR
SUSPICIOUS_WINDOW = timedelta(hours=1)


# -- ledger -------------------------------------------------------------------------------


class LargeTablePaginator(Paginator):
    """Counts exactly up to `exact_limit` rows; beyond that, PostgreSQL's planner estimates.

    `COUNT(*)` over a million-row ledger costs a full scan on every page view. Past
    the limit the count is approximate (`count_label` says so on the page); a filter
    (date, kind, player) narrows the list to an exact count again.
    """

    exact_limit = 5_000
    count_label = ""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list.order_by()
        counted = queryset[: self.exact_limit + 1].count()
        if counted <= self.exact_limit:
            return counted
        if connections[queryset.db].vendor != "postgresql":
            return queryset.count()  # development databases are small
        estimate = _planner_estimate(queryset)
        if estimate > counted:
            self.count_label = f"about {estimate}"
            return estimate
        self.count_label = f"more than {self.exact_limit}"
        return counted


def _planner_estimate(queryset: QuerySet) -> int:
    try:
        plan = json.loads(queryset.explain(format="json"))
        return int(plan[0]["Plan"]["Plan Rows"])
    except (DatabaseError, ValueError, LookupError, TypeError) as exc:
        logger.warning("row estimate unavailable: %s", exc)
        return 0


def ledger_url(user_id) -> str:
    """The ledger changelist filtered to one player."""
    return f"{reverse('admin:scores_scoreevent_changelist')}?user={user_id}"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Viewable, never added, changed or deleted through the admin, superusers included."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ScoreEvent)
class ScoreEventAdmin(ReadOnlyAdmin):
    """The append-only ledger: an audit view that nobody, superusers included, can change."""

    list_display = (
        "created_at",
        "player",
        "kind",
        "points",
        "total_after",
        "action_type__code",
        "action_id",
        "actor",
        "client_ip",
        "short_reason",
    )
    list_filter = ("kind", "action_type", ("created_at", admin.DateFieldListFilter))
    list_select_related = ("user", "action_type", "created_by")
    search_fields = ("action_id",)  # shows the box; get_search_results does the matching
    search_help_text = "Exact username, action_id or client IP."
    ordering = ("-created_at",)
    sortable_by = ("created_at",)  # the only indexed order on a table of millions
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = LargeTablePaginator
    actions = None
    fields = (
        "id",
        "created_at",
        "user",
        "kind",
        "points",
        "total_after",
        "action_type",
        "action_id",
        "reason",
        "created_by",
        "client_ip",
        "client_timestamp",
    )

    def get_search_results(self, request: HttpRequest, queryset: QuerySet, search_term: str):
        """Exact matches only: each uses an index instead of scanning the ledger for a substring."""
        term = search_term.strip()
        if not term:
            return queryset, False
        players = User.objects.annotate(lower=Lower("username")).filter(lower=term.lower())
        match = Q(user__in=players.values("pk")) | Q(action_id=term)
        with contextlib.suppress(ValueError):
            match |= Q(client_ip=str(ipaddress.ip_address(term)))
        return queryset.filter(match), False

    @admin.display(description="Player", ordering="user__username")
    def player(self, event: ScoreEvent) -> str:
        return format_html('<a href="{}">{}</a>', ledger_url(event.user_id), event.user.username)

    @admin.display(description="Actor")
    def actor(self, event: ScoreEvent) -> str:
        return event.created_by.username if event.created_by else "-"

    @admin.display(description="Reason")
    def short_reason(self, event: ScoreEvent) -> str:
        return event.reason if len(event.reason) <= 60 else f"{event.reason[:59]}…"


# -- players ------------------------------------------------------------------------------


def _ahead(score: Score) -> Q:
    """Visible rows ranked above `score` (total desc, reached_at asc, user id asc)."""
    return (
        Q(total__gt=score.total)
        | Q(total=score.total, reached_at__lt=score.reached_at)
        | Q(total=score.total, reached_at=score.reached_at, user_id__lt=score.user_id)
    )


def page_ranks(scores: list[Score]) -> dict:
    """Board ranks of one page of players in two queries, whatever the page's order.

    The best-placed row is counted like `db_rank`; every other row's rank is that
    plus the visible rows between the two, counted in one pass over the page's span
    of totals. On the default (board-ordered) page that span is the page itself.
    """
    rows = sorted(
        (score for score in scores if not score.is_hidden),
        key=lambda score: (-score.total, score.reached_at, score.user_id),
    )
    if not rows:
        return {}
    first, others = rows[0], rows[1:]
    ranks = {
        first.pk: db_rank(user_id=first.user_id, total=first.total, reached_at=first.reached_at)
    }
    if others:
        between = (
            Score.objects.filter(is_hidden=False)
            .filter(total__lte=first.total, total__gte=others[-1].total)
            .exclude(_ahead(first))
            .aggregate(**{f"r{i}": Count("pk", filter=_ahead(row)) for i, row in enumerate(others)})
        )
        for i, row in enumerate(others):
            ranks[row.pk] = ranks[first.pk] + between[f"r{i}"]
    return ranks


class PlayerChangeList(ChangeList):
    """Attaches each row's board rank, computed for the whole page at once."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        self.result_list = list(self.result_list)
        ranks = page_ranks(self.result_list)
        for score in self.result_list:
            score.board_rank = ranks.get(score.pk)


class ReasonForm(forms.Form):
    reason = forms.CharField(max_length=200, strip=True)


class CorrectionForm(forms.Form):
    points = forms.IntegerField(
        min_value=-MAX_CORRECTION_POINTS,
        max_value=MAX_CORRECTION_POINTS,
        help_text="Signed: negative to take points away.",
    )
    reason = forms.CharField(max_length=500, strip=True, widget=forms.Textarea(attrs={"rows": 3}))
    # Sent with the form and used as the correction's action_id: a resubmitted
    # form replays the first correction instead of applying it twice.
    token = forms.UUIDField(widget=forms.HiddenInput)

    def clean_points(self) -> int:
        points = self.cleaned_data["points"]
        if points == 0:
            raise forms.ValidationError("A correction must change the score.")
        return points


def suspicious_players(*, now=None) -> list[dict]:
    """Players who earned more than the hourly threshold, or hit limits repeatedly, this hour."""
    since = (now or timezone.now()) - SUSPICIOUS_WINDOW
    earned = dict(
        ScoreEvent.objects.filter(
            created_at__gte=since, kind__in=[ScoreEvent.Kind.ACTION, ScoreEvent.Kind.AWARD]
        )
        .order_by()
        .values("user")
        .annotate(points=Sum("points"))
        .filter(points__gt=settings.SUSPICIOUS_POINTS_PER_HOUR)
        .values_list("user", "points")
    )
    hits = dict(
        LimitHit.objects.filter(created_at__gte=since)
        .order_by()
        .values("user")
        .annotate(hits=Count("pk"))
        .filter(hits__gte=SUSPICIOUS_LIMIT_HITS_PER_HOUR)
        .values_list("user", "hits")
    )
    players = User.objects.filter(pk__in=earned.keys() | hits.keys()).select_related("score")
    rows = [
        {
            "user": user,
            "score": getattr(user, "score", None),
            "points": earned.get(user.pk, 0),
            "hits": hits.get(user.pk, 0),
            "ledger_url": ledger_url(user.pk),
        }
        for user in players
    ]
    rows.sort(key=lambda row: (-row["points"], -row["hits"], row["user"].username))
    return rows


@admin.register(Score)
class ScoreAdmin(ReadOnlyAdmin):
    """Players on the board. Nothing here is saved directly: staff act through the services."""

    list_display = ("player", "total", "rank", "last_activity", "is_hidden", "hidden_reason")
    list_filter = ("is_hidden",)
    list_select_related = ("user",)
    search_fields = ("=user__username",)
    search_help_text = "Exact username."
    ordering = ("-total", "reached_at", "user_id")
    sortable_by = ("player", "total", "last_activity")
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    actions = ("hide_players", "unhide_players")
    fields = (
        "user",
        "total",
        "reached_at",
        "is_hidden",
        "hidden_reason",
        "hidden_by",
        "hidden_changed_at",
        "revision",
    )

    def has_hide_player_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scores.hide_player")

    def has_correct_score_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("scores.correct_score")

    def get_changelist(self, request: HttpRequest, **kwargs):
        return PlayerChangeList

    @admin.display(description="Player", ordering="user__username")
    def player(self, score: Score) -> str:
        return score.user.username

    @admin.display(description="Rank")
    def rank(self, score: Score) -> int | str:
        rank = getattr(score, "board_rank", None)
        return "-" if rank is None else rank

    @admin.display(description="Last activity", ordering="reached_at")
    def last_activity(self, score: Score):
        return score.reached_at

    # -- views ---------------------------------------------------------------------------

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("suspicious/", view(self.suspicious_view), name="scores_score_suspicious"),
            path("<uuid:user_id>/correct/", view(self.correct_view), name="scores_score_correct"),
            path("<uuid:user_id>/hide/", view(self.hide_view), name="scores_score_hide"),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "has_view_permission": self.has_view_permission(request),
            **extra,
        }

    def change_view(self, request: HttpRequest, object_id: str, form_url="", extra_context=None):
        extra = {
            "can_correct": self.has_correct_score_permission(request),
            "ledger_url": ledger_url(object_id),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, extra_context=extra)

    def correct_view(self, request: HttpRequest, user_id: uuid.UUID) -> HttpResponse:
        """A staff correction: signed points and a reason, through `score_correct`."""
        if not self.has_correct_score_permission(request):
            raise PermissionDenied
        player = get_object_or_404(User, pk=user_id)
        if request.method == "POST":
            form = CorrectionForm(request.POST)
            if form.is_valid():
                data = form.cleaned_data
                try:
                    receipt = score_correct(
                        user=player,
                        points=data["points"],
                        reason=data["reason"],
                        created_by=request.user,
                        action_id=f"correction:{data['token']}",
                    )
                except ApiError as exc:
                    form.add_error(None, str(exc.detail))
                else:
                    self._log(request, self._scores_of(player), "Corrected", data)
                    self.message_user(
                        request,
                        f"{player.username}: {data['points']:+d} points, "
                        f"total now {receipt.new_total_score}.",
                        messages.SUCCESS,
                    )
                    return HttpResponseRedirect(
                        reverse("admin:scores_score_change", args=[player.pk])
                    )
        else:
            form = CorrectionForm(initial={"token": uuid.uuid4()})
        score = Score.objects.filter(pk=player.pk).first()
        return TemplateResponse(
            request,
            "admin/scores/score/correct.html",
            self._context(
                request, title=f"Correct {player.username}", player=player, score=score, form=form
            ),
        )

    def hide_view(self, request: HttpRequest, user_id: uuid.UUID) -> HttpResponse:
        """One-click hide (from the suspicious list): POST only, CSRF-checked by admin_view."""
        return require_POST(self._hide_view)(request, user_id)

    def _hide_view(self, request: HttpRequest, user_id: uuid.UUID) -> HttpResponse:
        if not self.has_hide_player_permission(request):
            raise PermissionDenied
        player = get_object_or_404(User, pk=user_id)
        reason = request.POST.get("reason", "").strip() or "Suspicious activity"
        player_set_hidden(user=player, hidden=True, reason=reason, by=request.user)
        self._log(request, self._scores_of(player), "Hidden", {"reason": reason})
        self.message_user(request, f"{player.username} is hidden from the board.", messages.SUCCESS)
        target = request.POST.get("next", "")
        if not url_has_allowed_host_and_scheme(
            target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            target = reverse("admin:scores_score_suspicious")
        return HttpResponseRedirect(target)

    def suspicious_view(self, request: HttpRequest) -> HttpResponse:
        """Players over the hourly points threshold or with repeated refused updates."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        return TemplateResponse(
            request,
            "admin/scores/score/suspicious.html",
            self._context(
                request,
                title="Suspicious activity",
                rows=suspicious_players(),
                points_threshold=settings.SUSPICIOUS_POINTS_PER_HOUR,
                hits_threshold=SUSPICIOUS_LIMIT_HITS_PER_HOUR,
                can_hide=self.has_hide_player_permission(request),
            ),
        )

    # -- actions -------------------------------------------------------------------------

    @admin.action(description="Hide from board", permissions=["hide_player"])
    def hide_players(self, request: HttpRequest, queryset: QuerySet):
        return self._set_hidden(request, queryset, hidden=True)

    @admin.action(description="Unhide", permissions=["hide_player"])
    def unhide_players(self, request: HttpRequest, queryset: QuerySet):
        return self._set_hidden(request, queryset, hidden=False)

    def _set_hidden(self, request: HttpRequest, queryset: QuerySet, *, hidden: bool):
        """Ask for a reason on an intermediate page, then hide or unhide each player."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            scores = list(queryset.select_related("user"))
            for score in scores:
                player_set_hidden(user=score.user, hidden=hidden, reason=reason, by=request.user)
            self._log(request, scores, "Hidden" if hidden else "Unhidden", {"reason": reason})
            verb = "hidden from" if hidden else "back on"
            self.message_user(request, f"{len(scores)} player(s) {verb} the board.")
            return None
        return TemplateResponse(
            request,
            "admin/scores/score/hide_confirm.html",
            self._context(
                request,
                title="Hide players from the board" if hidden else "Put players back on the board",
                form=form,
                hidden=hidden,
                action=request.POST.get("action"),
                scores=queryset.select_related("user")[:1000],
                action_checkbox_name=ACTION_CHECKBOX_NAME,
                select_across=request.POST.get("select_across", "0"),
            ),
        )

    def _scores_of(self, player: User) -> QuerySet:
        return Score.objects.filter(pk=player.pk).select_related("user")

    def _log(self, request: HttpRequest, scores, verb: str, data: dict) -> None:
        details = ", ".join(f"{key}={value}" for key, value in data.items() if key != "token")
        LogEntry.objects.log_actions(
            user_id=request.user.pk,
            queryset=scores,
            action_flag=CHANGE,
            change_message=f"{verb} ({details})",
        )


# -- catalog ------------------------------------------------------------------------------


@admin.register(ActionType)
class ActionTypeAdmin(admin.ModelAdmin):
    """The catalog: what each action is worth and how often it counts."""

    list_display = ("code", "name", "points", "cooldown_seconds", "daily_limit", "is_active")
    list_filter = ("is_active",)
    search_fields = ("code", "name")
    prepopulated_fields = {"code": ("name",)}


@admin.register(LimitHit)
class LimitHitAdmin(ReadOnlyAdmin):
    """Refused score updates, recorded by the API: read-only evidence for the suspicious list."""

    list_display = ("created_at", "user", "code")
    list_filter = (("created_at", admin.DateFieldListFilter),)
    list_select_related = ("user",)
    search_fields = ("=user__username",)
    ordering = ("-created_at",)
    sortable_by = ("created_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = LargeTablePaginator
    actions = None
