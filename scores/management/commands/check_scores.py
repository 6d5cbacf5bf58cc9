from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import F, OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce

from scores.board import get_store
from scores.models import Score, ScoreEvent


class Command(BaseCommand):
    help = "Report drift between Score.total and the ledger; --repair fixes it from the ledger."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--repair", action="store_true", help="Set each drifting total to its ledger sum."
        )

    def handle(self, *args, repair: bool = False, **options) -> None:
        ledger_sum = (
            ScoreEvent.objects.filter(user_id=OuterRef("user_id"))
            .order_by()
            .values("user_id")
            .annotate(total=Sum("points"))
            .values("total")
        )
        drift = list(
            Score.objects.annotate(ledger=Coalesce(Subquery(ledger_sum), Value(0)))
            .exclude(total=F("ledger"))
            .select_related("user")
            .values_list("user_id", "user__username", "total", "ledger")
        )
        missing = list(
            ScoreEvent.objects.filter(user__score__isnull=True)
            .order_by()
            .values("user_id")
            .annotate(ledger=Sum("points"))
            .values_list("user_id", "ledger")
        )
        for user_id, username, total, ledger in drift:
            self.stdout.write(f"drift: {username} ({user_id}) total={total} ledger={ledger}")
        for user_id, ledger in missing:
            self.stdout.write(f"missing score row: {user_id} ledger={ledger}")
        if not drift and not missing:
            self.stdout.write(self.style.SUCCESS("All totals match the ledger."))
            return
        if not repair:
            raise CommandError(f"{len(drift) + len(missing)} player(s) drift from the ledger.")
        self._repair(drift, missing)

    def _repair(self, drift: list, missing: list) -> None:
        from django.utils import timezone

        from realtime.broadcast import board_changed

        with transaction.atomic():
            for user_id, _username, _total, ledger in drift:
                Score.objects.filter(user_id=user_id).update(
                    total=ledger, revision=F("revision") + 1
                )
            for user_id, ledger in missing:
                Score.objects.create(user_id=user_id, total=ledger, reached_at=timezone.now())
        for user_id, *_ in [*drift, *missing]:
            board_changed(user_id=user_id)
        get_store().rebuild()
        self.stdout.write(self.style.SUCCESS(f"Repaired {len(drift) + len(missing)} player(s)."))
