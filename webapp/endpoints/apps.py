from django.apps import AppConfig


class EndpointsConfig(AppConfig):
    name = "webapp.endpoints"
    label = "endpoints"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.endpoints.selectors import endpoints_project_counts

        project_counter_register(endpoints_project_counts)
