"""The Redis rank index agrees with the database order, survives loss, and never regresses."""

import random
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from scores.board import get_store, player_rank, total_players
from scores.models import Score, ScoreEvent
from scores.selectors import db_rank
from scores.services import player_set_hidden, score_award

pytestmark = [pytest.mark.needs_redis, pytest.mark.django_db(transaction=True)]


def _seed(make_user, count=40):
    rng = random.Random(7)
    users = []
    for i in range(count):
        user = make_user(f"r{i:03d}")
        # Few distinct totals: plenty of ties, ordered by who reached them first.
        score_award(user=user, action_id="seed", points=rng.choice([10, 20, 30, 40]), reason="s")
        users.append(user)
    return users


def _db_order():
    return list(Score.objects.filter(is_hidden=False).order_by("-total", "reached_at", "user_id"))


def test_index_ranks_match_the_database_with_ties(make_user):
    _seed(make_user)
    assert get_store().is_ready() or get_store().rebuild()
    for position, score in enumerate(_db_order(), start=1):
        assert get_store().rank(score) == position
        assert (
            db_rank(user_id=score.user_id, total=score.total, reached_at=score.reached_at)
            == position
        )
    assert total_players() == 40


def test_index_rebuilds_after_redis_lost_its_data(make_user):
    users = _seed(make_user, 15)
    store = get_store()
    if store._rebuild_thread is not None:
        store._rebuild_thread.join(timeout=30)
    store.flush()  # as if Redis restarted empty
    assert not store.client.exists(store.k_rank)
    expected = _db_order().index(Score.objects.get(user=users[0])) + 1
    assert player_rank(Score.objects.get(user=users[0])) == expected  # from the database
    store._rebuild_thread.join(timeout=30)
    assert store.is_ready()
    assert store.client.zcard(store.k_rank) == 15
    for position, score in enumerate(_db_order(), start=1):
        assert player_rank(score) == position


def test_a_stale_write_cannot_regress_the_index(make_user):
    user = make_user("racer")
    score_award(user=user, action_id="a", points=50, reason="r")
    score_award(user=user, action_id="b", points=50, reason="r")
    current = Score.objects.get(user=user)
    stale = Score(
        user=user,
        total=50,
        reached_at=timezone.now() - timedelta(hours=1),
        revision=current.revision - 1,
    )
    get_store().apply(stale)  # a late on-commit call from the first write
    assert player_rank(current) == 1
    assert get_store().rank(current) == 1


def test_hidden_players_leave_the_index(make_user):
    users = _seed(make_user, 5)
    order = _db_order()
    player_set_hidden(user=order[0].user, hidden=True, reason="x")
    assert total_players() == 4
    assert player_rank(Score.objects.get(user=order[1].user)) == 1
    assert player_rank(Score.objects.get(user=order[0].user)) is None
    player_set_hidden(user=order[0].user, hidden=False)
    assert player_rank(Score.objects.get(user=order[0].user)) == 1
    assert len(users) == 5


def test_check_scores_reports_drift_and_repairs_from_the_ledger(make_user, capsys):
    users = _seed(make_user, 3)
    call_command("check_scores")
    Score.objects.filter(user=users[0]).update(total=999_999)  # drift, as a bad edit would
    with pytest.raises(CommandError, match="1 player"):
        call_command("check_scores")
    assert "drift" in capsys.readouterr().out
    call_command("check_scores", "--repair")
    ledger = sum(ScoreEvent.objects.filter(user=users[0]).values_list("points", flat=True))
    assert Score.objects.get(user=users[0]).total == ledger
    call_command("check_scores")
