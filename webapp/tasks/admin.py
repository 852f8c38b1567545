from django.contrib import admin

from webapp.tasks.models import Example, Task


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "name", "kind", "created_at"]
    raw_id_fields = ["project"]


@admin.register(Example)
class ExampleAdmin(admin.ModelAdmin):
    list_display = ["id", "task", "external_id", "split"]
    raw_id_fields = ["task"]
