from django.contrib import admin

from webapp.reviews.models import HumanLabel, PairwiseLabel, ReviewAssignment, ReviewItem, ReviewQueue


@admin.register(ReviewQueue)
class ReviewQueueAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "strategy", "mode"]
    raw_id_fields = ["project", "rubric_version"]


@admin.register(ReviewItem)
class ReviewItemAdmin(admin.ModelAdmin):
    list_display = ["id", "queue", "position", "completed_count"]
    raw_id_fields = ["queue", "rollout", "rollout_b"]


@admin.register(HumanLabel)
class HumanLabelAdmin(admin.ModelAdmin):
    list_display = ["id", "rollout", "criterion_key", "annotator", "value"]
    raw_id_fields = ["rollout", "rubric_version", "annotator", "queue"]


@admin.register(PairwiseLabel)
class PairwiseLabelAdmin(admin.ModelAdmin):
    list_display = ["id", "rollout_a", "rollout_b", "annotator", "preferred"]
    raw_id_fields = ["rollout_a", "rollout_b", "rubric_version", "annotator", "queue"]


@admin.register(ReviewAssignment)
class ReviewAssignmentAdmin(admin.ModelAdmin):
    list_display = ["id", "item", "annotator", "status", "reserved_until"]
    raw_id_fields = ["item", "annotator"]
