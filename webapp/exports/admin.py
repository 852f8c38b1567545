from django.contrib import admin

from webapp.exports.models import Export, HubPush


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "format", "status", "done"]
    raw_id_fields = ["project"]


@admin.register(HubPush)
class HubPushAdmin(admin.ModelAdmin):
    list_display = ["id", "export", "repo_id", "private", "status"]
    raw_id_fields = ["export"]
