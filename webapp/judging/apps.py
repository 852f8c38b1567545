from django.apps import AppConfig


class JudgingConfig(AppConfig):
    name = "webapp.judging"
    label = "judging"

    def ready(self) -> None:
        from webapp.core.selectors import job_linker, job_linker_register, project_counter_register
        from webapp.judging.models import JudgeJob
        from webapp.judging.selectors import judging_project_counts, rollout_filter_scores
        from webapp.rollouts.selectors import rollout_filter_register

        project_counter_register(judging_project_counts)
        rollout_filter_register(rollout_filter_scores)  # rollouts sits below judging: the score filter is ours
        job_linker_register("judge", job_linker(JudgeJob, "judging:detail"))  # the workers page links running jobs
