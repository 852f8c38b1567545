"""Indexes for the comparison's pairing (webapp.compare): a run's or an import's newest rollout of an example and
sample is one index lookup. Built CONCURRENTLY on Postgres, so a large rollout table keeps taking writes meanwhile
(hence `atomic = False`); the import index it replaces is dropped once the new one exists."""

from django.contrib.postgres.operations import AddIndexConcurrently, RemoveIndexConcurrently
from django.db import migrations, models


class OnPostgresConcurrently:
    """The concurrent operation on Postgres; the plain one elsewhere (SQLite, the embedded mode)."""

    def database_forwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_forwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_forwards(self, app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label, schema_editor, from_state, to_state):
        if schema_editor.connection.vendor == "postgresql":
            return super().database_backwards(app_label, schema_editor, from_state, to_state)
        return self.plain.database_backwards(self, app_label, schema_editor, from_state, to_state)


class AddIndex(OnPostgresConcurrently, AddIndexConcurrently):
    plain = migrations.AddIndex


class RemoveIndex(OnPostgresConcurrently, RemoveIndexConcurrently):
    plain = migrations.RemoveIndex


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('core', '0006_jobchunk_evaluation_chain'),
        ('rollouts', '0005_rollout_import_record'),
        ('runs', '0004_runs_job_lifecycle'),
        ('tasks', '0001_initial'),
    ]

    operations = [
        AddIndex(
            model_name='rollout',
            index=models.Index(condition=models.Q(('run__isnull', False)), fields=['run', 'example', 'sample_index', 'id'], name='rollout_run_example'),
        ),
        AddIndex(
            model_name='rollout',
            index=models.Index(condition=models.Q(('import_record__isnull', False)), fields=['import_record', 'example', 'sample_index', 'id'], name='rollout_import_example'),
        ),
        RemoveIndex(
            model_name='rollout',
            name='rollout_import_record',
        ),
    ]
