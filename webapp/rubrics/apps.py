from django.apps import AppConfig


class RubricsConfig(AppConfig):
    name = "webapp.rubrics"
    label = "rubrics"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.rubrics.selectors import rubrics_project_counts

        project_counter_register(rubrics_project_counts)
