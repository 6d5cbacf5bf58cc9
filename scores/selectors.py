"""Reads shared by the API, the page and the realtime payload: one source for the row shape."""

from datetime import datetime
from typing import TypedDict
from uuid import UUID

from django.db.models import Q

from scores.models import Score

TOP_N = 10


class BoardRow(TypedDict):
    rank: int
    user_id: str
    username: str
    score: int
    last_updated: str


def ranked_scores():
    """Visible scores in board order: total desc, reached_at asc, user id asc."""
    return Score.objects.filter(is_hidden=False).order_by("-total", "reached_at", "user_id")


def _row(*, rank: int, user_id, username: str, total: int, reached_at: datetime) -> BoardRow:
    return {
        "rank": rank,
        "user_id": str(user_id),
        "username": username,
        "score": total,
        "last_updated": reached_at.isoformat().replace("+00:00", "Z"),
    }


def board_row(rank: int, score: Score) -> BoardRow:
    """The public shape of one board row."""
    return _row(
        rank=rank,
        user_id=score.user_id,
        username=score.user.username,
        total=score.total,
        reached_at=score.reached_at,
    )


def top_rows_from_db(limit: int = TOP_N) -> list[BoardRow]:
    """The top ten from the indexed query (plain tuples: no model instances to build)."""
    rows = ranked_scores().values_list("user_id", "user__username", "total", "reached_at")
    return [
        _row(rank=index, user_id=user_id, username=username, total=total, reached_at=reached_at)
        for index, (user_id, username, total, reached_at) in enumerate(rows[:limit], start=1)
    ]


def db_rank(*, user_id: UUID | str, total: int, reached_at: datetime) -> int:
    """A visible player's 1-based rank, counted in the database (the slow, exact fallback)."""
    ahead = (
        Score.objects.filter(is_hidden=False)
        .filter(
            Q(total__gt=total)
            | Q(total=total, reached_at__lt=reached_at)
            | Q(total=total, reached_at=reached_at, user_id__lt=user_id)
        )
        .count()
    )
    return ahead + 1


def db_total_players() -> int:
    """Visible players counted in the database."""
    return Score.objects.filter(is_hidden=False).count()


def neighbors(*, score: Score, rank: int | None, count: int) -> list[BoardRow]:
    """The `count` visible players just above and just below a player, in board order.

    Each side is two index range scans (same total, then other totals), so the
    cost does not grow with the player's depth in the board.
    """
    if count <= 0 or rank is None:
        return []
    visible = Score.objects.filter(is_hidden=False).select_related("user")
    same = visible.filter(total=score.total)
    tie_before = Q(reached_at__lt=score.reached_at) | Q(
        reached_at=score.reached_at, user_id__lt=score.user_id
    )
    tie_after = Q(reached_at__gt=score.reached_at) | Q(
        reached_at=score.reached_at, user_id__gt=score.user_id
    )
    above = list(same.filter(tie_before).order_by("-reached_at", "-user_id")[:count])
    if len(above) < count:
        higher = visible.filter(total__gt=score.total).order_by("total", "-reached_at", "-user_id")
        above += list(higher[: count - len(above)])
    below = list(same.filter(tie_after).order_by("reached_at", "user_id")[:count])
    if len(below) < count:
        lower = visible.filter(total__lt=score.total).order_by("-total", "reached_at", "user_id")
        below += list(lower[: count - len(below)])
    rows = [board_row(rank - index, row) for index, row in enumerate(above, start=1)]
    rows.reverse()
    rows += [board_row(rank + index, row) for index, row in enumerate(below, start=1)]
    return rows
