from django.contrib import admin

from webapp.exports.models import Export


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "kind", "format", "status", "done"]
    raw_id_fields = ["project"]
