from django.apps import AppConfig


class RolloutsConfig(AppConfig):
    name = "webapp.rollouts"
    label = "rollouts"

    def ready(self) -> None:
        from webapp.core.selectors import job_linker, job_linker_register, project_counter_register
        from webapp.rollouts.selectors import rollouts_project_counts

        project_counter_register(rollouts_project_counts)
        from webapp.rollouts.models import GenerationJob

        job_linker_register("generation", job_linker(GenerationJob, "rollouts:job_detail"))  # the workers page links running jobs
