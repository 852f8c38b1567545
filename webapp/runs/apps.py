from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "webapp.runs"
    label = "runs"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.runs.selectors import runs_project_counts

        project_counter_register(runs_project_counts)
