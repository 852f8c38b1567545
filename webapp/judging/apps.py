from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "webapp.judging"
    label = "judging"

    def ready(self) -> None:
        from webapp.core.selectors import job_linker, job_linker_register, project_counter_register
        from webapp.judging.selectors import judging_project_counts

        project_counter_register(judging_project_counts)
        from webapp.judging.models import JudgeJob

        job_linker_register("judge", job_linker(JudgeJob, "judging:detail"))  # the workers page links running jobs
