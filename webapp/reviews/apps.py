from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReviewsConfig(AppConfig):
    name = "webapp.reviews"
    label = "reviews"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.core.visibility import scores_page_guard_register
        from webapp.judging.signals import judge_job_scored
        from webapp.reviews.blind import request_blindness
        from webapp.reviews.label_writes import sqlite_triggers_install
        from webapp.reviews.selectors import reviews_project_counts, rollout_filter_labels
        from webapp.rollouts.selectors import rollout_filter_register

        project_counter_register(reviews_project_counts)
        # Apps below reviews (judging, rollouts) reach the review rules through these three inversions.
        judge_job_scored.connect(_warm_agreement, dispatch_uid="reviews.agreement_cache_warm")
        scores_page_guard_register(lambda request: request_blindness(request).check_scores_page())
        rollout_filter_register(rollout_filter_labels)
        post_migrate.connect(sqlite_triggers_install, sender=self, dispatch_uid="reviews.label_writes_sqlite")


def _warm_agreement(sender: object, *, judge_job_id: int, **kwargs: object) -> None:
    """New scores move judge–human agreement: compute the dashboard once when a judge job ends."""
    from webapp.reviews.dashboard import agreement_cache_warm

    agreement_cache_warm(judge_job_id=judge_job_id)
