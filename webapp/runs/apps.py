from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "webapp.runs"
    label = "runs"

    def ready(self) -> None:
        from webapp.core.selectors import job_linker, job_linker_register, project_counter_register
        from webapp.runs.selectors import runs_project_counts

        project_counter_register(runs_project_counts)
        from webapp.runs.models import TrainingRun

        job_linker_register("run", job_linker(TrainingRun, "runs:detail"))  # the workers page links running jobs
