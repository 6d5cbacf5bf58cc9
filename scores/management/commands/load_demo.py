from django.conf import settings
from django.core.management.base import BaseCommand

from accounts.models import User
from scores.models import ActionType
from scores.services import score_award

CATALOG = [
    # code, name, points, cooldown_seconds, daily_limit
    ("win-match", "Win a match", 100, 0, None),
    ("finish-quest", "Finish a quest", 25, 30, None),
    ("find-treasure", "Find a treasure", 10, 0, 50),
    ("daily-login", "Daily login", 5, 0, 1),
]

PLAYERS = [
    ("ada", 1250),
    ("grace", 1100),
    ("linus", 980),
    ("margaret", 870),
    ("alan", 760),
    ("barbara", 640),
    ("dennis", 510),
    ("ken", 420),
    ("frances", 300),
    ("edsger", 150),
    ("radia", 90),
    ("guido", 40),
]

DEMO_PASSWORD = "demo-password-123"  # noqa: S105 - demo players, printed by `make run`
ADMIN_PASSWORD = "admin-demo-password"  # noqa: S105 - created only with DEBUG on


class Command(BaseCommand):
    help = "Load a demo catalog and players with scores. Running it twice changes nothing."

    def handle(self, *args, **options) -> None:
        for code, name, points, cooldown, daily in CATALOG:
            ActionType.objects.update_or_create(
                code=code,
                defaults={
                    "name": name,
                    "points": points,
                    "cooldown_seconds": cooldown,
                    "daily_limit": daily,
                    "is_active": True,
                },
            )
        for username, points in PLAYERS:
            user = User.objects.filter(username=username).first()
            if user is None:
                user = User.objects.create_user(username=username, password=DEMO_PASSWORD)
            # A fixed action_id makes the award idempotent: a rerun is a replay.
            score_award(user=user, action_id="demo-seed", points=points, reason="Demo data")
        if settings.DEBUG and not User.objects.filter(username="admin").exists():
            User.objects.create_superuser("admin", "admin@example.com", ADMIN_PASSWORD)
        self.stdout.write(
            f"Demo data ready: {len(CATALOG)} actions, {len(PLAYERS)} players "
            f"(password {DEMO_PASSWORD!r})."
        )
