from django.contrib import admin

from webapp.endpoints.models import ModelEndpoint


@admin.register(ModelEndpoint)
class ModelEndpointAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "kind", "model"]
    raw_id_fields = ["project"]
