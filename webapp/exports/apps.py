from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "webapp.exports"
    label = "exports"

    def ready(self) -> None:
        from webapp.core.selectors import job_linker, job_linker_register, project_counter_register
        from webapp.exports.selectors import exports_project_counts

        project_counter_register(exports_project_counts)
        from webapp.exports.models import Export

        job_linker_register("export", job_linker(Export, "exports:list", with_id=False))  # the workers page links running jobs
