"""The embedded mode's SQLite: the trigram migration is a no-op there, `?q=` search keeps working, with LIKE's
metacharacters taken literally, and the optional short-term index's command says it is Postgres only. Checked in a fresh SQLite database by a child process with the embedded settings."""

from __future__ import annotations

import io
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]  # this file also runs as the child, outside pytest


def test_search_works_on_sqlite_and_the_trigram_migration_is_a_no_op(tmp_path):
    # Imported here, not at the top: the child runs this file as a script, before tests/ is on its path.
    from tests.support.embedded_sqlite import run_scenario

    done = run_scenario(__file__, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vendor sqlite, search held" in done.stdout


def scenario() -> None:
    import django

    django.setup()
    from django.core.management import CommandError, call_command
    from django.db import connection
    from django.db.migrations.recorder import MigrationRecorder

    from webapp.core.models import Project
    from webapp.rollouts.models import Rollout
    from webapp.rollouts.selectors import rollout_browse
    from webapp.tasks.models import Task

    call_command("migrate", verbosity=0)
    assert MigrationRecorder.Migration.objects.filter(app="rollouts", name="0002_rollout_text_trgm").exists()
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE '%trgm%'")
        assert cursor.fetchall() == []
    project = Project.objects.create(name="p", slug="p")
    task = Task.objects.create(project=project, name="t")
    texts = ["100% sure", "1000 sure", "a_b", "axb", "back\\slash", "backslash", "The Answer", "no"]
    rollouts = {text: Rollout.objects.create(project=project, task=task, group_key=text, completion=text).pk
                for text in texts}
    for term, expected in (("0% s", ["100% sure"]), ("_b", ["a_b"]), ("k\\s", ["back\\slash"]),
                           ("answer", ["The Answer"]), ("B", ["a_b", "axb", "back\\slash", "backslash"])):
        found = set(rollout_browse(project, filters={"q": term}).values_list("pk", flat=True))
        assert found == {rollouts[text] for text in expected}, (term, found)
    out = io.StringIO()
    call_command("search_index", "short-terms", "--status", stdout=out)
    assert "not available on sqlite (Postgres only)" in out.getvalue(), out.getvalue()
    try:
        call_command("search_index", "short-terms", "--enable")
    except CommandError as error:
        assert "Postgres only" in str(error), error
    else:
        raise AssertionError("--enable on SQLite did not refuse")
    print(f"vendor {connection.vendor}, search held")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO_ROOT))
    scenario()
