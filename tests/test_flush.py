"""The flush after a transactional test (tests/support/postgres): every table ends empty, as with Django's TRUNCATE,
but only the tables with rows are touched — the others keep their files (TRUNCATE gives every table a new one)."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

from tests.factories import RolloutFactory, RubricVersionFactory, UserFactory
from webapp.core.models import WorkerHeartbeat
from webapp.reviews.models import HumanLabel, LabelWrites, PairwiseLabel

pytestmark = pytest.mark.django_db(transaction=True)


def files() -> dict[str, int]:
    tables = connection.introspection.django_table_names(only_existing=True, include_views=False)
    with connection.cursor() as cursor:
        cursor.execute("SELECT relname, relfilenode FROM pg_class WHERE relname = ANY(%s)", [tables])
        return dict(cursor.fetchall())


# Written at any moment, flush or not, by a Celery worker an earlier test of this xdist worker left running on this
# database (the session's worker: its heartbeat thread, workers/system.py); a row there says nothing about the flush.
WRITTEN_IN_THE_BACKGROUND = {WorkerHeartbeat._meta.db_table}


def rows() -> dict[str, int]:
    """Rows per table, but for the tables other processes write in the background."""
    counts = {}
    with connection.cursor() as cursor:
        for table in connection.introspection.django_table_names(only_existing=True, include_views=False):
            if table in WRITTEN_IN_THE_BACKGROUND:
                continue
            cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(table)}")
            counts[table] = cursor.fetchone()[0]
    return counts


def flush(*, reset_sequences: bool = False) -> None:
    """As TransactionTestCase does after a test (with reset_sequences=False unless a test asks for it)."""
    call_command("flush", verbosity=0, interactive=False, reset_sequences=reset_sequences, allow_cascade=False,
                 inhibit_post_migrate=True)


def test_flush_empties_every_table_and_leaves_the_untouched_ones_alone():
    assert connection.vendor == "postgresql" and connection.settings_dict["ENGINE"] == "tests.support.postgres"
    rollout = RolloutFactory()
    version = RubricVersionFactory(rubric__project=rollout.project)
    HumanLabel.objects.create(rollout=rollout, rubric_version=version, criterion_key="polite",
                              annotator=UserFactory(), choice="yes", value=1.0)
    assert LabelWrites.objects.exists()  # written by the label tables' triggers (reviews/migrations/0008)
    before = files()
    full = {table for table, count in rows().items() if count}
    assert {"reviews_humanlabel", "reviews_labelwrites", "rollouts_rollout"} <= full

    flush()

    assert not any(rows().values()), {table: count for table, count in rows().items() if count}
    after = files()
    untouched = set(before) - full
    assert untouched and all(after[table] == before[table] for table in untouched)  # no TRUNCATE: same files


def test_deleting_labels_writes_counters_that_the_next_pass_deletes():
    """Deleting label rows fires the counting trigger, which writes a counter row: the flush goes round again. The
    pairwise tables come after the counters' table in the flush's (alphabetical) order, so one pass would leave a
    counter behind."""
    rollout = RolloutFactory()
    other = RolloutFactory(project=rollout.project, task=rollout.task)
    version = RubricVersionFactory(rubric__project=rollout.project)
    PairwiseLabel.objects.create(rollout_a=rollout, rollout_b=other, rubric_version=version,
                                 annotator=UserFactory(), preferred="a", shown_a_first=True)
    LabelWrites.objects.all().delete()  # only the label itself left: its delete writes the counter
    flush()
    assert not LabelWrites.objects.exists() and not PairwiseLabel.objects.exists()


def test_reset_sequences_still_truncates_and_restarts_identities():
    RolloutFactory()
    before = files()
    flush(reset_sequences=True)
    left = {table for table, count in rows().items() if count}
    assert left == {"reviews_labelwrites"}  # only what the TRUNCATE triggers count: version 0 of each label table
    assert set(LabelWrites.objects.values_list("rubric_version_id", flat=True)) == {0}
    assert files()["rollouts_rollout"] != before["rollouts_rollout"]  # Django's TRUNCATE … RESTART IDENTITY
    assert UserFactory().pk == 1
