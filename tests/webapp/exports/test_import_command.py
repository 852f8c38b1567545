"""`manage.py import` imports every kind the import pages take: each kind of the exports page's import form (what
every export kind writes, verifiers runs of both layouts) and a task's examples (the task import page), with errors
as CommandError and nothing half-imported."""

from __future__ import annotations

import importlib
import io

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.factories import TaskFactory
from tests.webapp.exports.test_import_kinds import FIXTURES, export_file, target_for
from webapp.exports.forms import ImportForm
from webapp.rollouts.models import Rollout
from webapp.tasks.models import Example

command = importlib.import_module("webapp.exports.management.commands.import")


def _kind_choices() -> list[str]:
    parser = command.Command().create_parser("manage.py", "import")
    return next(a.choices for a in parser._actions if a.dest == "kind")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("import", *args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_every_kind_the_import_page_takes_imports_from_the_shell(scored):
    page_kinds = [value for value, _ in ImportForm(project=scored["project"]).fields["kind"].choices if value]
    assert set(page_kinds) <= set(_kind_choices())
    for kind in page_kinds:
        path, rows = export_file(scored["project"], kind, "jsonl", scored["version"])
        target = target_for(scored)
        out = run(str(path), "--project", str(target["project"].pk), "--kind", kind, "--format", "jsonl",
                  "--task", str(target["task"].pk), "--rubric-version", str(target["version"].pk),
                  "--user", target["user"].username)
        assert out.startswith("Imported "), (kind, out)
        assert Rollout.objects.filter(project=target["project"]).exists(), kind


@pytest.mark.django_db
def test_a_verifiers_run_folder_and_task_examples_from_the_shell(make_member, tmp_path):
    _, project = make_member("editor")
    task = TaskFactory(project=project, name="vf-arith")
    assert run(str(FIXTURES / "new"), "--project", str(project.pk), "--kind", "verifiers",
               "--task", str(task.pk)).strip() == "Imported 4 rollouts, 2 new examples."

    examples = tmp_path / "examples.csv"
    examples.write_text("id,question,answer,difficulty\nq1,What is 1 + 1?,2,easy\nq2,What is 2 + 2?,4,hard\n")
    out = run(str(examples), "--project", str(project.pk), "--kind", "examples", "--task", str(task.pk),
              "--column", "question=prompt", "--split", "eval")
    assert out.strip() == f"Imported 2 examples into task #{task.pk}."
    q2 = Example.objects.get(task=task, external_id="q2")
    assert (q2.prompt, q2.answer, q2.split, q2.info) == ("What is 2 + 2?", "4", "eval", {"difficulty": "hard"})

    for args, message in (
        (["--kind", "examples"], "needs --task"),
        (["--kind", "examples", "--task", str(task.pk), "--column", "nope=prompt"], "has no column 'nope'"),
        (["--kind", "examples", "--task", str(task.pk), "--column", "question=oops"], "expected NAME=ROLE"),
        (["--kind", "rollouts", "--task", str(task.pk)], "line 2: group_key is empty"),
    ):
        before = (Example.objects.count(), Rollout.objects.count())
        with pytest.raises(CommandError, match=message):
            run(str(examples), "--project", str(project.pk), *args)
        assert (Example.objects.count(), Rollout.objects.count()) == before
    with pytest.raises(CommandError, match="verifiers run"):
        run(str(FIXTURES / "new"), "--project", str(project.pk), "--kind", "rollouts")
