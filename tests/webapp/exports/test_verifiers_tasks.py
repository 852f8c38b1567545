"""Tasks backed by a verifiers 0.4 taskset: created from the taskset's own tasks, refused unless the operator allows
the plugins. Jobs on such tasks with a local engine endpoint: test_verifiers_local_endpoint.py."""

from __future__ import annotations

import pytest

from tests.factories import ProjectFactory
from tests.support.requires import installed
from webapp.core.errors import ApplicationError
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.tasks.models import Task
from webapp.tasks.services import task_create

pytestmark = installed("verifiers.v1")


@pytest.mark.django_db
def test_task_from_a_taskset_keeps_each_tasks_data():
    from verifiers.v1.configs.taskset import TasksetConfig  # noqa: F401  (verifiers itself loads the plugin)
    from verifiers.v1.utils.loaders import load_taskset, taskset_config_type

    project = ProjectFactory()
    task = verifiers_task_create(project=project, name="wordle", taskset={"id": "rubricon_wordle"}, count=3,
                                 max_turns=4)
    assert task.kind == "environment" and task.environment == "verifiers"
    assert task.environment_config == {"taskset": {"id": "rubricon_wordle"}, "harness": {"id": "rubricon_chat"},
                                       "max_turns": 4}
    own = [t.data for _, t in zip(range(3), load_taskset(taskset_config_type("rubricon_wordle").model_validate(
        {"id": "rubricon_wordle"})), strict=False)]
    examples = list(task.examples.order_by("pk"))
    assert [e.external_id for e in examples] == [d.name for d in own]
    assert [e.prompt for e in examples] == [d.prompt for d in own]
    assert [e.info["verifiers"]["data"]["info"]["secret"] for e in examples] == [d.info["secret"] for d in own]


@pytest.mark.django_db
@pytest.mark.parametrize(("config", "message"), [
    ({"taskset": {"id": "harbor"}}, "'harbor' is not allowed"),
    ({"taskset": {"id": "rubricon_wordle"}, "harness": {"id": "bash"}}, "'bash' is not allowed"),
    ({"taskset": {}}, "Give the verifiers taskset"),
    ({"taskset": {"id": "rubricon_wordle"}, "extra": 1}, "Unknown verifiers option"),
    ({"taskset": {"id": "rubricon_wordle"}, "max_turns": 0}, "max_turns"),
])
def test_plugins_and_options_the_operator_does_not_allow_are_refused(config, message):
    project = ProjectFactory()
    with pytest.raises(ApplicationError) as refused:
        task_create(project=project, name="t", kind="environment", environment="verifiers",
                    environment_config=config)
    assert message in refused.value.message and refused.value.field == "environment_config"
    assert not Task.objects.filter(project=project).exists()


@pytest.mark.django_db
def test_the_operator_setting_opens_a_plugin(settings):
    settings.RUBRICON_VERIFIERS_PLUGINS = ["rubricon_*"]
    project = ProjectFactory()
    task_create(project=project, name="t", kind="environment", environment="verifiers",
                environment_config={"taskset": {"id": "rubricon_wordle"}})
    with pytest.raises(ApplicationError, match="not allowed"):
        verifiers_task_create(project=project, name="u", taskset={"id": "textarena", "game": "Wordle-v0"}, count=1)


@pytest.mark.django_db
def test_unknown_plugin_is_a_clear_error(settings):
    settings.RUBRICON_VERIFIERS_PLUGINS = ["*"]
    with pytest.raises(ApplicationError, match="could not load the taskset.*no_such_taskset"):
        verifiers_task_create(project=ProjectFactory(), name="x", taskset={"id": "no_such_taskset"}, count=1)


@pytest.mark.django_db
def test_page_and_api_create_a_verifiers_task(client):
    from django.urls import reverse
    from rest_framework.test import APIClient

    from tests.factories import MembershipFactory, UserFactory
    from webapp.core.models import Role

    project = ProjectFactory()
    editor = UserFactory()
    MembershipFactory(project=project, user=editor, role=Role.EDITOR)
    client.force_login(editor)
    url = reverse("exports:verifiers_task", args=[project.pk])
    refused = client.post(url, {"name": "x", "taskset": '{"id": "harbor"}', "count": 2})
    assert refused.status_code == 400 and b"is not allowed" in refused.content
    created = client.post(url, {"name": "wordle", "taskset": '{"id": "rubricon_wordle"}', "count": 2,
                                "max_turns": 3})
    task = Task.objects.get(project=project, name="wordle")
    assert created.status_code == 302 and task.examples.count() == 2
    api = APIClient()
    api.force_authenticate(editor)
    response = api.post(f"/api/v1/projects/{project.pk}/tasks/verifiers/",
                        {"name": "wordle api", "taskset": {"id": "rubricon_wordle"}, "count": 3}, format="json")
    assert response.status_code == 201, response.content
    assert Task.objects.get(pk=response.json()["id"]).examples.count() == 3


@pytest.mark.django_db
def test_textarena_without_its_packages_says_what_to_install():
    import importlib.util

    if importlib.util.find_spec("textarena") and importlib.util.find_spec("nltk"):
        pytest.skip("textarena is installed here")
    with pytest.raises(ApplicationError, match="textarena requires nltk and textarena"):
        verifiers_task_create(project=ProjectFactory(), name="w", taskset={"id": "textarena", "game": "Wordle-v0"},
                              count=1)
