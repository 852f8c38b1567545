from django.contrib import admin

from webapp.rubrics.models import Rubric, RubricVersion


@admin.register(Rubric)
class RubricAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "created_at"]
    raw_id_fields = ["project", "task"]


@admin.register(RubricVersion)
class RubricVersionAdmin(admin.ModelAdmin):
    list_display = ["id", "rubric", "number", "note", "created_at"]
    raw_id_fields = ["rubric", "author"]
