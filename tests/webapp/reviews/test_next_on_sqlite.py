"""`item_next` is written-out SQL that must also run on the embedded mode's SQLite (no row locks there): the same
reservation rules, checked in a fresh SQLite database by a child process with the embedded mode's settings."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # this file also runs as the child, outside pytest


def test_reservations_follow_the_same_rules_on_sqlite(tmp_path):
    # Imported here, not at the top: the child runs this file as a script, before tests/ is on its path.
    from tests.support.embedded_sqlite import run_scenario

    done = run_scenario(__file__, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vendor sqlite, every rule held" in done.stdout
    assert (tmp_path / "rubricon.sqlite3").exists()


def scenario() -> None:
    import django

    django.setup()
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from webapp.core.models import Project
    from webapp.reviews import services
    from webapp.reviews.models import AssignmentStatus, ReviewAssignment
    from webapp.rollouts.models import Rollout
    from webapp.rubrics.models import Rubric, RubricVersion
    from webapp.tasks.models import Task

    call_command("migrate", verbosity=0)
    users = get_user_model()
    project = Project.objects.create(name="p", slug="p")
    task = Task.objects.create(project=project, name="t")
    spec = {"criteria": [{"key": "c", "title": "C", "kind": "match", "extract": "answer_tag", "mode": "numeric"}]}
    version = RubricVersion.objects.create(rubric=Rubric.objects.create(project=project, name="r"), number=1, spec=spec)
    Rollout.objects.bulk_create(Rollout(project=project, task=task, group_key=f"g{i}", completion="x") for i in range(3))
    ann1, ann2, editor = (users.objects.create_user(name) for name in ("ann1", "ann2", "editor"))

    queue = services.review_queue_create(project=project, name="one seat", rubric_version=version, size=2,
                                         reviewers_per_item=1)
    one = services.item_next(queue=queue, annotator=ann1)
    two = services.item_next(queue=queue, annotator=ann2)
    assert one.pk != two.pk and one.queue_id == queue.pk
    assert services.item_next(queue=queue, annotator=ann1).pk == one.pk  # resumes its reservation
    assert services.item_next(queue=queue, annotator=editor) is None  # both seats taken
    ReviewAssignment.objects.filter(annotator=ann2).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert services.item_next(queue=queue, annotator=editor).pk == two.pk  # an expired reservation frees its seat
    services.item_skip(item=one, annotator=ann1)
    assert services.item_next(queue=queue, annotator=ann1) is None  # skipped items don't come back to you
    # An expired reservation is renewed in place when its holder comes back and the seat is still free.
    renew = services.review_queue_create(project=project, name="renew", rubric_version=version, size=1,
                                         reviewers_per_item=1)
    held = services.item_next(queue=renew, annotator=ann1)
    ReviewAssignment.objects.filter(item=held).update(reserved_until=timezone.now() - timedelta(seconds=1))
    assert services.item_next(queue=renew, annotator=ann1).pk == held.pk
    renewed = ReviewAssignment.objects.get(item=held)
    assert renewed.status == AssignmentStatus.RESERVED and renewed.reserved_until > timezone.now()

    double = services.review_queue_create(project=project, name="two seats", rubric_version=version, size=1,
                                          reviewers_per_item=2)
    a = services.item_next(queue=double, annotator=ann1)
    b = services.item_next(queue=double, annotator=ann2)
    assert a.pk == b.pk
    assert services.item_next(queue=double, annotator=editor) is None
    print(f"vendor {connection.vendor}, every rule held")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    scenario()
