from django.contrib import admin

from webapp.rollouts.models import GenerationJob, Rollout


@admin.register(GenerationJob)
class GenerationJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "task", "status", "done", "total"]
    raw_id_fields = ["project", "task", "endpoint", "checkpoint"]


@admin.register(Rollout)
class RolloutAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "task", "source", "sample_index", "finish_reason"]
    raw_id_fields = ["project", "task", "example", "job", "run"]
