from django.contrib import admin

from webapp.judging.models import CriterionScore, JudgeCache, JudgeJob, RolloutScore


@admin.register(JudgeJob)
class JudgeJobAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "rubric_version", "status", "done", "total"]
    raw_id_fields = ["project", "rubric_version", "endpoint"]


@admin.register(CriterionScore)
class CriterionScoreAdmin(admin.ModelAdmin):
    list_display = ["id", "rollout", "criterion_key", "score", "judge_fingerprint"]
    raw_id_fields = ["rollout", "rubric_version", "job"]


@admin.register(RolloutScore)
class RolloutScoreAdmin(admin.ModelAdmin):
    list_display = ["id", "rollout", "total", "judge_fingerprint"]
    raw_id_fields = ["rollout", "rubric_version", "job"]


@admin.register(JudgeCache)
class JudgeCacheAdmin(admin.ModelAdmin):
    list_display = ["key", "created_at"]
