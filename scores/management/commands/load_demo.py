from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Load a demo catalog and players (idempotent)."

    def handle(self, *args, **options) -> None:
        self.stdout.write("demo data: not yet")
