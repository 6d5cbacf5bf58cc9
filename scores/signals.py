"""The hand-over from the write path to the realtime path (SPEC.md section 8)."""

from functools import partial

from django.db import transaction
from django.db.models.signals import post_save

from scores.models import ScoreEvent


def ledger_event_saved(sender, instance: ScoreEvent, created: bool, **kwargs) -> None:
    """Refresh the board once the event's transaction has committed."""
    if created:
        from realtime.broadcast import board_changed

        transaction.on_commit(partial(board_changed, user_id=instance.user_id))


def connect() -> None:
    """Connect the ledger receiver once."""
    post_save.connect(ledger_event_saved, sender=ScoreEvent, dispatch_uid="scores.ledger_saved")
