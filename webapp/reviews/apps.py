from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    name = "webapp.reviews"
    label = "reviews"

    def ready(self) -> None:
        from webapp.core.selectors import project_counter_register
        from webapp.reviews.selectors import reviews_project_counts

        project_counter_register(reviews_project_counts)
