from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Q
from django.http import HttpRequest

from accounts.models import User
from scores.models import ScoreEvent


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    """Django's user admin, UUID-keyed; anyone in the ledger is deactivated, not deleted."""

    list_display = ("username", "email", "is_staff", "is_active", "date_joined")
    readonly_fields = ("id", "last_login", "date_joined")
    fieldsets = ((None, {"fields": ("id",)}), *DjangoUserAdmin.fieldsets)

    def has_delete_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        # Deleting a player would cascade through their ledger rows, and deleting a
        # staff member would erase the actor of their corrections.
        if obj is not None and ScoreEvent.objects.filter(Q(user=obj) | Q(created_by=obj)).exists():
            return False
        return super().has_delete_permission(request, obj)
