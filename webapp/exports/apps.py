from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "webapp.exports"
    label = "exports"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.exports.selectors import exports_project_counts

        project_counter_register(exports_project_counts)
