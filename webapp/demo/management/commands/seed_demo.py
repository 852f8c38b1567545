from django.core.management.base import BaseCommand

from webapp.demo.seed import DEMO_PASSWORD, DEMO_USERNAME, seed_demo


class Command(BaseCommand):
    help = "Create the demo user, project, arithmetic task, rubric and bundled-model endpoint (idempotent)."

    def handle(self, *args, **options):
        project = seed_demo()
        self.stdout.write(f"Demo project {project.name!r} ready (id {project.pk}); log in as {DEMO_USERNAME} / {DEMO_PASSWORD}.")
