# Load the Celery app with Django, so tasks sent from web code go to the configured broker.
from workers.celery import app as celery_app

__all__ = ["celery_app"]
