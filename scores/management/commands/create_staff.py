import getpass
import os

from django.contrib.auth import password_validation
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import User

GROUP_NAME = "Score staff"

# Exactly what a score moderator needs: see players, the ledger, the catalog and refused
# updates; correct scores; hide players. No add, change or delete of any row, no awards.
PERMISSIONS = [
    ("scores", "view_score"),
    ("scores", "view_scoreevent"),
    ("scores", "view_actiontype"),
    ("scores", "view_limithit"),
    ("scores", "correct_score"),
    ("scores", "hide_player"),
]

PASSWORD_ENV = "STAFF_PASSWORD"  # noqa: S105 - the name of a variable, not a password


def staff_group() -> Group:
    """The "Score staff" group, its permissions reset to exactly PERMISSIONS."""
    group, _ = Group.objects.get_or_create(name=GROUP_NAME)
    permissions = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in PERMISSIONS
    ]
    group.permissions.set(permissions)
    return group


class Command(BaseCommand):
    help = (
        f"Create a staff user in the {GROUP_NAME!r} group: view players and the ledger, "
        "correct scores, hide players. An existing user is made staff and added to the group. "
        f"With --noinput the password is read from ${PASSWORD_ENV}."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--noinput", "--no-input", action="store_false", dest="interactive")

    def handle(self, *args, username: str, email: str, interactive: bool, **options) -> None:
        user = User.objects.filter(username__iexact=username).first()
        password = None
        if user is None:
            password = self._password(User(username=username, email=email), interactive)
        with transaction.atomic():
            if user is None:
                user = User.objects.create_user(username=username, email=email, password=password)
                verb = "Created"
            else:
                verb = "Updated"
            user.is_staff = True
            user.save(update_fields=["is_staff"])
            user.groups.add(staff_group())
        self.stdout.write(f"{verb} staff user {user.username!r} in group {GROUP_NAME!r}.")

    def _password(self, user: User, interactive: bool) -> str:
        if not interactive:
            password = os.environ.get(PASSWORD_ENV, "")
            if not password:
                raise CommandError(f"Set ${PASSWORD_ENV} to use --noinput.")
        else:
            password = getpass.getpass("Password: ")
            if password != getpass.getpass("Password (again): "):
                raise CommandError("The passwords do not match.")
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from None
        return password
