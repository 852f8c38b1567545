from django.contrib import admin

from webapp.runs.models import Checkpoint, TrainingMetric, TrainingRun


@admin.register(TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "status", "created_at"]
    raw_id_fields = ["project", "task", "rubric_version", "judge_endpoint"]


@admin.register(TrainingMetric)
class TrainingMetricAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "step"]
    raw_id_fields = ["run"]


@admin.register(Checkpoint)
class CheckpointAdmin(admin.ModelAdmin):
    list_display = ["id", "run", "step", "path"]
    raw_id_fields = ["run"]
