from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "webapp.rollouts"
    label = "rollouts"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.rollouts.selectors import rollouts_project_counts

        project_counter_register(rollouts_project_counts)
