"""API keys in the admin.

Creation keeps the library's save_model: it assigns the key and shows it once in
a message, and the admin form has already validated what api_key_create would.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from accounts.models import ApiKey

# The library registers its own unscoped APIKey model; its keys would never
# authenticate here, so offering them would only confuse.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    list_display = (*APIKeyModelAdmin.list_display, "scope", "last_used_at")
    list_filter = ("scope", "revoked", "created")
    fields = ("name", "scope", "expiry_date", "revoked", "prefix", "last_used_at")
    actions = ("revoke_selected",)

    def get_readonly_fields(
        self, request: HttpRequest, obj: ApiKey | None = None
    ) -> tuple[str, ...]:
        fields = (*super().get_readonly_fields(request, obj), "last_used_at")
        if obj is not None and obj.revoked:
            fields = (*fields, "scope")
        return fields

    def get_actions(self, request: HttpRequest) -> dict:
        # Revoking keeps the row (and its prefix) for the record; bulk delete
        # would lose it, so it is not offered.
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    @admin.action(description="Revoke selected API keys", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet) -> None:
        count = queryset.filter(revoked=False).update(revoked=True)
        self.message_user(request, f"Revoked {count} API key(s).", messages.SUCCESS)
