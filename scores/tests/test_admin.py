"""Staff tools through the real admin URLs (SPEC.md section 10, issue 8)."""

import re
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accounts.models import User
from realtime.consumers import LeaderboardConsumer
from scores.admin import SUSPICIOUS_LIMIT_HITS_PER_HOUR
from scores.management.commands.create_staff import GROUP_NAME, PERMISSIONS
from scores.models import LimitHit, Score, ScoreEvent
from scores.selectors import db_rank
from scores.services import score_award

PASSWORD = "correct-horse-battery-9"


def award(user: User, points: int) -> None:
    score_award(user=user, action_id=f"t:{uuid.uuid4()}", points=points, reason="test")


def staff_with(username: str, *codenames: str) -> User:
    user = User.objects.create_user(username=username, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return user


def logged_in(user: User, **kwargs) -> Client:
    client = Client(**kwargs)
    client.force_login(user)
    return client


def correct_url(user: User) -> str:
    return reverse("admin:scores_score_correct", args=[user.pk])


def hide_via_action(client: Client, users: list[User], reason: str):
    """The two steps of the "Hide from board" action: the reason page, then the confirmation."""
    changelist = reverse("admin:scores_score_changelist")
    selected = [str(user.pk) for user in users]
    first = client.post(
        changelist, {"action": "hide_players", "index": 0, "_selected_action": selected}
    )
    assert first.status_code == 200
    assert b'name="reason"' in first.content
    return client.post(
        changelist,
        {"action": "hide_players", "_selected_action": selected, "apply": "yes", "reason": reason},
    )


@pytest.fixture
async def release_db_thread():
    """Close the connection sync_to_async's thread opened, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser(username="root", password=PASSWORD)


@pytest.fixture
def moderator(db, monkeypatch):
    """A staff user made by the create_staff command."""
    monkeypatch.setenv("STAFF_PASSWORD", PASSWORD)
    call_command("create_staff", "moderator", "--noinput")
    return User.objects.get(username="moderator")


# -- create_staff --------------------------------------------------------------------------


def test_create_staff_grants_exactly_the_moderation_permissions(moderator):
    assert moderator.is_staff
    assert not moderator.is_superuser
    assert moderator.check_password(PASSWORD)
    group = moderator.groups.get()
    assert group.name == GROUP_NAME
    granted = {(p.content_type.app_label, p.codename) for p in group.permissions.all()}
    assert granted == set(PERMISSIONS)
    assert moderator.has_perm("scores.correct_score")
    assert moderator.has_perm("scores.hide_player")
    assert not moderator.has_perm("scores.award_points")
    assert not moderator.has_perm("scores.change_score")
    assert not moderator.has_perm("scores.delete_scoreevent")


# -- corrections --------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_admin_correction_changes_total_records_actor_and_pushes_update(
    make_user, moderator, release_db_thread
):
    leader, chaser = (
        await sync_to_async(make_user)("leader"),
        await sync_to_async(make_user)("chaser"),
    )
    await sync_to_async(award)(leader, 100)
    await sync_to_async(award)(chaser, 50)
    socket = WebsocketCommunicator(LeaderboardConsumer.as_asgi(), "/ws/leaderboard/")
    connected, _ = await socket.connect()
    assert connected
    snapshot = await socket.receive_json_from(timeout=3)
    assert [row["username"] for row in snapshot["leaderboard"]] == ["leader", "chaser"]

    client = await sync_to_async(logged_in)(moderator)
    response = await sync_to_async(client.post)(
        correct_url(chaser),
        {"points": "200", "reason": "Missed tournament prize", "token": str(uuid.uuid4())},
    )
    assert response.status_code == 302

    update = await socket.receive_json_from(timeout=3)
    assert update["type"] == "leaderboard_update"
    assert update["version"] > snapshot["version"]
    assert [(row["username"], row["score"]) for row in update["leaderboard"]] == [
        ("chaser", 250),
        ("leader", 100),
    ]
    await socket.disconnect()

    score = await Score.objects.aget(user=chaser)
    assert score.total == 250
    event = await ScoreEvent.objects.select_related("created_by").aget(
        user=chaser, kind=ScoreEvent.Kind.CORRECTION
    )
    assert (event.points, event.reason, event.created_by) == (
        200,
        "Missed tournament prize",
        moderator,
    )


def test_negative_correction_and_a_resubmitted_form_counts_once(player, moderator):
    award(player, 500)
    client = logged_in(moderator)
    form = {"points": "-120", "reason": "Exploit in level 3", "token": str(uuid.uuid4())}
    assert client.post(correct_url(player), form).status_code == 302
    assert client.post(correct_url(player), form).status_code == 302
    assert Score.objects.get(user=player).total == 380
    assert ScoreEvent.objects.filter(user=player, kind=ScoreEvent.Kind.CORRECTION).count() == 1
    assert LogEntry.objects.filter(object_id=str(player.pk), user=moderator).exists()


@pytest.mark.parametrize(
    ("points", "reason"), [("10", ""), ("10", "   "), ("0", "why"), ("ten", "why")]
)
def test_correction_needs_nonzero_points_and_a_reason(player, moderator, points, reason):
    award(player, 500)
    response = logged_in(moderator).post(
        correct_url(player), {"points": points, "reason": reason, "token": str(uuid.uuid4())}
    )
    assert response.status_code == 200
    assert response.context["form"].errors
    assert Score.objects.get(user=player).total == 500
    assert not ScoreEvent.objects.filter(kind=ScoreEvent.Kind.CORRECTION).exists()


def test_staff_without_correct_score_cannot_correct(player):
    award(player, 500)
    staff = staff_with("viewer", "view_score", "view_scoreevent", "hide_player")
    client = logged_in(staff)
    form = {"points": "1000", "reason": "gift", "token": str(uuid.uuid4())}
    assert client.get(correct_url(player)).status_code == 403
    assert client.post(correct_url(player), form).status_code == 403
    page = client.get(reverse("admin:scores_score_change", args=[player.pk]))
    assert page.status_code == 200
    assert correct_url(player).encode() not in page.content
    assert Score.objects.get(user=player).total == 500
    assert not ScoreEvent.objects.filter(kind=ScoreEvent.Kind.CORRECTION).exists()


def test_score_total_is_never_editable_in_admin(player, superuser):
    award(player, 500)
    client = logged_in(superuser)
    url = reverse("admin:scores_score_change", args=[player.pk])
    response = client.post(url, {"total": "999999", "is_hidden": "on"})
    assert response.status_code == 403
    assert client.post(reverse("admin:scores_score_delete", args=[player.pk])).status_code == 403
    score = Score.objects.get(user=player)
    assert (score.total, score.is_hidden) == (500, False)


# -- the ledger is read-only ---------------------------------------------------------------


@pytest.fixture(params=["superuser", "staff with every ledger permission"])
def auditor(request, db):
    if request.param == "superuser":
        return User.objects.create_superuser(username="root", password=PASSWORD)
    return staff_with(
        "auditor", "view_scoreevent", "add_scoreevent", "change_scoreevent", "delete_scoreevent"
    )


def test_nobody_can_add_edit_or_delete_ledger_rows(player, auditor):
    award(player, 500)
    event = ScoreEvent.objects.get(user=player)
    client = logged_in(auditor)
    change = reverse("admin:scores_scoreevent_change", args=[event.pk])
    delete = reverse("admin:scores_scoreevent_delete", args=[event.pk])
    changelist = reverse("admin:scores_scoreevent_changelist")

    assert client.get(change).status_code == 200  # view only
    assert client.post(change, {"points": "9999", "reason": "edited"}).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:scores_scoreevent_add")).status_code == 403
    bulk = client.post(
        changelist, {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert b"delete_selected" not in client.get(changelist).content

    event.refresh_from_db()
    assert (event.points, event.reason) == (500, "test")
    assert ScoreEvent.objects.count() == 1


def test_a_player_with_ledger_rows_cannot_be_deleted_through_admin(player, superuser):
    award(player, 500)
    response = logged_in(superuser).post(
        reverse("admin:accounts_user_delete", args=[player.pk]), {"post": "yes"}
    )
    assert response.status_code == 403
    assert ScoreEvent.objects.filter(user=player).count() == 1


def test_ledger_search_and_player_filter(make_user, superuser):
    alice, bob = make_user("alice"), make_user("bob")
    award(alice, 10)
    award(bob, 20)
    score_award(user=bob, action_id="match-42", points=5, reason="x", client_ip="203.0.113.9")
    client = logged_in(superuser)
    url = reverse("admin:scores_scoreevent_changelist")

    def found(query: dict) -> set[tuple[str, int]]:
        response = client.get(url, query)
        assert response.status_code == 200
        return {(e.user.username, e.points) for e in response.context["cl"].result_list}

    assert found({"q": "ALICE"}) == {("alice", 10)}
    assert found({"q": "match-42"}) == {("bob", 5)}
    assert found({"q": "203.0.113.9"}) == {("bob", 5)}
    assert found({"user": str(bob.pk)}) == {("bob", 20), ("bob", 5)}
    assert found({"kind__exact": "correction"}) == set()


# -- hiding ---------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_hiding_a_player_removes_them_from_api_page_and_socket_at_once(
    make_user, moderator, release_db_thread
):
    cheater = await sync_to_async(make_user)("cheater-carl")
    honest = await sync_to_async(make_user)("honest-hana")
    await sync_to_async(award)(cheater, 9000)
    await sync_to_async(award)(honest, 100)
    socket = WebsocketCommunicator(LeaderboardConsumer.as_asgi(), "/ws/leaderboard/")
    assert (await socket.connect())[0]
    snapshot = await socket.receive_json_from(timeout=3)
    assert snapshot["total_players"] == 2

    client = await sync_to_async(logged_in)(moderator)
    response = await sync_to_async(hide_via_action)(client, [cheater], "Impossible score")
    assert response.status_code == 302

    update = await socket.receive_json_from(timeout=3)
    assert update["type"] == "leaderboard_update"
    assert [row["username"] for row in update["leaderboard"]] == ["honest-hana"]
    assert update["total_players"] == 1
    await socket.disconnect()

    api = await sync_to_async(client.get)("/api/scores/leaderboard")
    assert [row["username"] for row in api.json()["leaderboard"]] == ["honest-hana"]
    assert api.json()["total_players"] == 1
    page = await sync_to_async(client.get)("/")
    assert b"honest-hana" in page.content
    assert b"cheater-carl" not in page.content
    score = await Score.objects.aget(user=cheater)
    assert (score.is_hidden, score.hidden_reason, score.total) == (True, "Impossible score", 9000)


def test_hide_asks_for_a_reason_and_unhide_brings_the_player_back(
    player, moderator, django_capture_on_commit_callbacks
):
    award(player, 100)
    client = logged_in(moderator)
    changelist = reverse("admin:scores_score_changelist")
    missing = client.post(
        changelist,
        {"action": "hide_players", "_selected_action": [player.pk], "apply": "yes", "reason": ""},
    )
    assert missing.status_code == 200
    assert missing.context["form"].errors
    assert not Score.objects.get(user=player).is_hidden

    with django_capture_on_commit_callbacks(execute=True):
        hide_via_action(client, [player], "Botting")
    assert client.get("/api/scores/leaderboard").json()["leaderboard"] == []
    hidden = Score.objects.get(user=player)
    assert (hidden.hidden_reason, hidden.hidden_by) == ("Botting", moderator)
    assert hidden.hidden_changed_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            changelist,
            {
                "action": "unhide_players",
                "_selected_action": [player.pk],
                "apply": "yes",
                "reason": "Appeal accepted",
            },
        )
    assert response.status_code == 302
    unhidden = Score.objects.get(user=player)
    assert not unhidden.is_hidden
    assert (unhidden.hidden_reason, unhidden.hidden_by) == ("Appeal accepted", moderator)
    board = client.get("/api/scores/leaderboard").json()["leaderboard"]
    assert [row["username"] for row in board] == [player.username]
    messages = LogEntry.objects.filter(object_id=str(player.pk)).values_list(
        "change_message", flat=True
    )
    assert {"Hidden (reason=Botting)", "Unhidden (reason=Appeal accepted)"} <= set(messages)


def test_staff_without_hide_player_cannot_hide(player):
    award(player, 100)
    client = logged_in(staff_with("viewer", "view_score"))
    changelist = reverse("admin:scores_score_changelist")
    assert b"hide_players" not in client.get(changelist).content
    client.post(
        changelist,
        {"action": "hide_players", "_selected_action": [player.pk], "apply": "yes", "reason": "x"},
    )
    hide = reverse("admin:scores_score_hide", args=[player.pk])
    assert client.post(hide, {"reason": "x"}).status_code == 403
    assert not Score.objects.get(user=player).is_hidden


# -- suspicious activity --------------------------------------------------------------------


def test_suspicious_list_shows_who_crossed_a_threshold_and_nobody_else(
    make_user, moderator, settings
):
    settings.SUSPICIOUS_POINTS_PER_HOUR = 1000
    farmer, honest, yesterday, hammerer = (
        make_user(name) for name in ("farmer", "honest", "yesterday", "hammerer")
    )
    for _ in range(3):
        award(farmer, 400)  # 1200 this hour
    award(honest, 1000)  # at the threshold, not over it
    award(yesterday, 5000)
    ScoreEvent.objects.filter(user=yesterday).update(created_at=timezone.now() - timedelta(hours=2))
    LimitHit.objects.bulk_create(
        [LimitHit(user=hammerer, code="rate_limited")] * SUSPICIOUS_LIMIT_HITS_PER_HOUR
    )
    LimitHit.objects.bulk_create(
        [LimitHit(user=honest, code="cooldown")] * (SUSPICIOUS_LIMIT_HITS_PER_HOUR - 1)
    )

    response = logged_in(moderator).get(reverse("admin:scores_score_suspicious"))

    assert response.status_code == 200
    rows = {row["user"].username: (row["points"], row["hits"]) for row in response.context["rows"]}
    assert rows == {"farmer": (1200, 0), "hammerer": (0, SUSPICIOUS_LIMIT_HITS_PER_HOUR)}
    assert f"?user={farmer.pk}".encode() in response.content  # link to the ledger
    assert reverse("admin:scores_score_hide", args=[farmer.pk]).encode() in response.content


def test_one_click_hide_from_the_suspicious_list(player, moderator, settings):
    settings.SUSPICIOUS_POINTS_PER_HOUR = 10
    award(player, 500)
    hide = reverse("admin:scores_score_hide", args=[player.pk])
    suspicious = reverse("admin:scores_score_suspicious")

    strict = logged_in(moderator, enforce_csrf_checks=True)
    assert strict.post(hide, {"reason": "x"}).status_code == 403  # no CSRF token
    assert strict.get(hide).status_code == 405
    assert not Score.objects.get(user=player).is_hidden

    client = logged_in(moderator)
    response = client.post(hide, {"reason": "Farming", "next": suspicious})
    assert response.status_code == 302
    assert response["Location"] == suspicious
    score = Score.objects.get(user=player)
    assert (score.is_hidden, score.hidden_reason) == (True, "Farming")
    assert b"Hidden: Farming" in client.get(suspicious).content


def test_index_links_the_suspicious_list(moderator):
    response = logged_in(moderator).get(reverse("admin:index"))
    assert reverse("admin:scores_score_suspicious").encode() in response.content


# -- players list ------------------------------------------------------------------------------


def test_player_list_shows_board_ranks_in_any_order(make_user, superuser):
    totals = [300, 100, 300, 50, 200, 100, 0]
    players = [make_user(f"p{i}") for i in range(len(totals))]
    for user, points in zip(players, totals, strict=True):
        if points:
            award(user, points)
        else:
            Score.objects.create(user=user, total=0, reached_at=timezone.now())
    Score.objects.filter(user=players[4]).update(is_hidden=True)
    client = logged_in(superuser)
    url = reverse("admin:scores_score_changelist")

    for query in ({}, {"o": "1"}, {"o": "-2"}, {"q": "p5"}):
        response = client.get(url, query)
        assert response.status_code == 200
        for score in response.context["cl"].result_list:
            expected = (
                None
                if score.is_hidden
                else db_rank(user_id=score.user_id, total=score.total, reached_at=score.reached_at)
            )
            assert score.board_rank == expected, (query, score.user.username)


# -- cost on a big ledger ---------------------------------------------------------------------


@pytest.fixture
def big_ledger(db, catalog, superuser):
    """10,000 ledger rows for 100 players, with consistent totals."""
    now = timezone.now()
    users = User.objects.bulk_create(
        [User(username=f"bulk{i:03d}", password="!") for i in range(100)]
    )
    kinds = [ScoreEvent.Kind.ACTION, ScoreEvent.Kind.AWARD, ScoreEvent.Kind.CORRECTION]
    events = []
    for u, user in enumerate(users):
        for n in range(100):
            kind = kinds[n % 3]
            events.append(
                ScoreEvent(
                    user=user,
                    action_id=f"bulk-{n}",
                    action_type=catalog["win"] if kind == ScoreEvent.Kind.ACTION else None,
                    points=-5 if kind == ScoreEvent.Kind.CORRECTION else 10 + u,
                    kind=kind,
                    reason="bulk" if kind != ScoreEvent.Kind.ACTION else "",
                    created_by=superuser if kind == ScoreEvent.Kind.CORRECTION else None,
                    client_ip=f"10.0.{u}.{n}",
                    created_at=now - timedelta(seconds=u * 100 + n),
                )
            )
    ScoreEvent.objects.bulk_create(events, batch_size=2000)
    totals = {}
    for event in events:
        totals[event.user_id] = totals.get(event.user_id, 0) + event.points
    Score.objects.bulk_create(
        [Score(user=user, total=totals[user.pk], reached_at=now) for user in users]
    )
    return users


MAX_QUERIES = 12


@pytest.mark.parametrize(
    ("name", "query"),
    [
        ("admin:scores_scoreevent_changelist", {}),
        ("admin:scores_scoreevent_changelist", {"p": "3"}),
        ("admin:scores_scoreevent_changelist", {"kind__exact": "award"}),
        ("admin:scores_scoreevent_changelist", {"created_at__gte": "2000-01-01 00:00:00+00:00"}),
        ("admin:scores_scoreevent_changelist", {"q": "bulk042"}),
        ("admin:scores_scoreevent_changelist", {"q": "bulk-7"}),
        ("admin:scores_score_changelist", {}),
        ("admin:scores_score_changelist", {"o": "1"}),
        ("admin:scores_score_suspicious", {}),
        ("admin:scores_limithit_changelist", {}),
    ],
)
def test_changelists_answer_in_bounded_queries_on_a_big_ledger(
    big_ledger, superuser, settings, django_assert_max_num_queries, name, query
):
    settings.SUSPICIOUS_POINTS_PER_HOUR = 100
    client = logged_in(superuser)
    with django_assert_max_num_queries(MAX_QUERIES):
        response = client.get(reverse(name), query)
    assert response.status_code == 200
    if name == "admin:scores_scoreevent_changelist" and not query:
        assert len(response.context["cl"].result_list) == 100
        assert response.context["cl"].result_count >= 5_001
        if settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
            assert re.search(rb"(about \d+|more than 5000) score events", response.content)
    if name == "admin:scores_score_suspicious":
        assert len(response.context["rows"]) == 36  # bulk000..bulk035 earned in the last hour
