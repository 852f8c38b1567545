"""Counters of label writes per rubric version (`LabelWrites`), kept by the database itself (issue 20).

Postgres: statement-level AFTER triggers with transition tables on the three label tables add one upsert per
statement and version, whatever wrote the rows (the ORM, bulk writes, cascades, raw SQL); an UPDATE counts the rows
under their old and their new version; TRUNCATE (cascaded ones too) adds to version 0, which every signature reads.
The triggers fire ALWAYS, also under `session_replication_role = replica`, which the benchmarks' seeding sets to skip
the foreign-key checks: labels written that way still count.

SQLite (the embedded mode) gets row-level triggers from a post_migrate receiver instead
(`label_writes.sqlite_triggers_install`): Django rebuilds a SQLite table to alter it, which drops its triggers, so
they are put back after every migrate.
"""

from django.db import migrations, models

# (table, source): the tables the agreement dashboard and the bias diagnostics read.
TABLES = [("reviews_humanlabel", "label"), ("reviews_pairwiselabel", "pairwise"),
          ("reviews_pairwisejudgment", "judgment")]

FUNCTION = """
CREATE OR REPLACE FUNCTION reviews_label_writes_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Ordered by version, so two statements writing the same versions take the counter rows' locks in one order.
    IF TG_OP = 'INSERT' THEN
        INSERT INTO reviews_labelwrites (rubric_version_id, source, writes)
        SELECT rubric_version_id, TG_ARGV[0], count(*) FROM new_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (rubric_version_id, source) DO UPDATE SET writes = reviews_labelwrites.writes + EXCLUDED.writes;
    ELSIF TG_OP = 'UPDATE' THEN
        INSERT INTO reviews_labelwrites (rubric_version_id, source, writes)
        SELECT rubric_version_id, TG_ARGV[0], count(*)
        FROM (SELECT rubric_version_id FROM old_rows UNION ALL SELECT rubric_version_id FROM new_rows) AS touched
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (rubric_version_id, source) DO UPDATE SET writes = reviews_labelwrites.writes + EXCLUDED.writes;
    ELSIF TG_OP = 'DELETE' THEN
        INSERT INTO reviews_labelwrites (rubric_version_id, source, writes)
        SELECT rubric_version_id, TG_ARGV[0], count(*) FROM old_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (rubric_version_id, source) DO UPDATE SET writes = reviews_labelwrites.writes + EXCLUDED.writes;
    ELSE  -- TRUNCATE: no rows to look at; version 0 stands for the whole table
        INSERT INTO reviews_labelwrites (rubric_version_id, source, writes) VALUES (0, TG_ARGV[0], 1)
        ON CONFLICT (rubric_version_id, source) DO UPDATE SET writes = reviews_labelwrites.writes + 1;
    END IF;
    RETURN NULL;
END
$$
"""

# Postgres allows transition tables only on a trigger of one event, hence a trigger per event.
TRIGGERS = [
    ("insert", "AFTER INSERT", "REFERENCING NEW TABLE AS new_rows"),
    ("update", "AFTER UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
    ("delete", "AFTER DELETE", "REFERENCING OLD TABLE AS old_rows"),
    ("truncate", "AFTER TRUNCATE", ""),
]


def triggers_create(apps, schema_editor) -> None:
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    for table, source in TABLES:
        for event, when, referencing in TRIGGERS:
            name = f"label_writes_{event}"
            schema_editor.execute(f"CREATE TRIGGER {name} {when} ON {table} {referencing} FOR EACH STATEMENT"
                                  f" EXECUTE FUNCTION reviews_label_writes_count('{source}')")
            schema_editor.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {name}")


def triggers_drop(apps, schema_editor) -> None:
    if schema_editor.connection.vendor == "sqlite":
        # The post_migrate receiver's triggers: left in place, they would write to the table this drops.
        for table, _ in TABLES:
            for event in ("insert", "update", "delete"):
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_label_writes_{event}")
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, _ in TABLES:
        for event, *_ in TRIGGERS:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS label_writes_{event} ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS reviews_label_writes_count()")


class Migration(migrations.Migration):

    dependencies = [
        ('reviews', '0007_position_check_job'),
    ]

    operations = [
        migrations.CreateModel(
            name='LabelWrites',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('rubric_version_id', models.BigIntegerField(help_text="The labels' rubric version; 0 = the whole table (TRUNCATE).")),
                ('source', models.CharField(choices=[('label', 'Criterion labels (HumanLabel)'), ('pairwise', 'Pairwise labels (PairwiseLabel)'), ('judgment', 'Judge position-swap verdicts (PairwiseJudgment)')], max_length=16)),
                ('writes', models.BigIntegerField(default=0)),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('rubric_version_id', 'source'), name='label_writes_unique')],
            },
        ),
        migrations.RunPython(triggers_create, triggers_drop, elidable=False),
    ]
