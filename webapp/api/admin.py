from django.contrib import admin

from webapp.api.models import ApiToken


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Tokens can be listed and revoked (deleted) here, never read: only a digest is stored, and it is not shown."""

    list_display = ["user", "prefix", "created_at"]
    fields = ["user", "prefix", "created_at"]
    readonly_fields = fields
    search_fields = ["user__username"]

    def has_add_permission(self, request) -> bool:
        return False  # a key is made by its owner on the token page or by `manage.py api_token`

    def has_change_permission(self, request, obj=None) -> bool:
        return False
