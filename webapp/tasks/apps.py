from django.apps import AppConfig


class TasksConfig(AppConfig):
    name = "webapp.tasks"
    label = "tasks"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.tasks.selectors import tasks_project_counts

        project_counter_register(tasks_project_counts)
