"""The label-write counters on the embedded mode's SQLite: row-level triggers installed after migrate, so the
dashboard's cache key follows every label write there too, also after Django rebuilt the label table (which drops a
SQLite table's triggers). Checked in a fresh SQLite database by a child process with the embedded mode's settings."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # this file also runs as the child, outside pytest


def test_label_writes_change_the_dashboard_signature_on_sqlite(tmp_path):
    # Imported here, not at the top: the child runs this file as a script, before tests/ is on its path.
    from tests.support.embedded_sqlite import run_scenario

    done = run_scenario(__file__, tmp_path, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vendor sqlite, every write counted" in done.stdout
    assert (tmp_path / "rubricon.sqlite3").exists()


def scenario() -> None:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, models

    from tests.factories import ProjectFactory, UserFactory
    from tests.webapp.reviews.test_label_writes import LABEL_WRITES, build_labelled
    from webapp.reviews import dashboard
    from webapp.reviews.models import HumanLabel

    call_command("migrate", verbosity=0)
    # Postgres-only statements (TRUNCATE, session_replication_role) have no SQLite counterpart.
    portable = {name: write for name, write in LABEL_WRITES.items()
                if "TRUNCATE" not in name and "foreign-key triggers off" not in name}
    assert len(portable) >= 15
    for name, write in portable.items():
        setup = build_labelled(ProjectFactory(), viewer=UserFactory(), annotator=UserFactory())
        before = dashboard.data_signature(setup["v2"])
        write(setup)
        assert dashboard.data_signature(setup["v2"]) != before, name

    # A cached dashboard follows an update that leaves updated_at alone.
    setup = build_labelled(ProjectFactory(), viewer=UserFactory(), annotator=UserFactory())
    (row,) = dashboard.agreement_dashboard_cached(setup["v2"], n_resamples=0)
    HumanLabel.objects.filter(rubric_version__rubric=setup["v2"].rubric).update(value=0.0, choice="no")
    (after,) = dashboard.agreement_dashboard_cached(setup["v2"], n_resamples=0)
    assert after.report.percent_agreement.value != row.report.percent_agreement.value

    # Altering a field makes Django rebuild the SQLite table, without its triggers; the next migrate puts them back.
    old = HumanLabel._meta.get_field("comment")
    new = models.TextField(blank=True, null=True)
    new.set_attributes_from_name("comment")
    new.model = HumanLabel
    with connection.schema_editor() as editor:
        editor.alter_field(HumanLabel, old, new)
        editor.alter_field(HumanLabel, new, old)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'reviews_humanlabel'")
        assert cursor.fetchone()[0] == 0
    call_command("migrate", verbosity=0)
    setup = build_labelled(ProjectFactory(), viewer=UserFactory(), annotator=UserFactory())
    before = dashboard.data_signature(setup["v2"])
    portable["raw SQL update"](setup)
    assert dashboard.data_signature(setup["v2"]) != before

    # Back to before the counters: the triggers go with their table, and labels can still be written.
    call_command("migrate", "reviews", "0007", verbosity=0)
    portable["create (ORM)"](setup)
    call_command("migrate", verbosity=0)
    print(f"vendor {connection.vendor}, every write counted")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    scenario()
