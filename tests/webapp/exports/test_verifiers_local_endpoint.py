"""A generation job on a verifiers-backed task with a local engine endpoint (vLLM or transformers kind, e.g. the bundled
model): verifiers reaches the model over HTTP only, so the worker serves it with vLLM's OpenAI-compatible server; where
vLLM is not installed the job is refused when it is created, with the reason. (Its own module: a module that names
vLLM takes turns with the suite's engine tests under xdist, see tests/conftest.py. The job run end to end:
tests/workers/test_verifiers_env_e2e.py.)"""

from __future__ import annotations

import importlib.util
import sys

import pytest

from tests.factories import EndpointFactory, ProjectFactory
from tests.support.requires import installed
from webapp.core.errors import ApplicationError
from webapp.endpoints.models import EndpointKind
from webapp.exports.verifiers_tasks import verifiers_task_create
from webapp.rollouts.models import GenerationJob
from webapp.rollouts.services import generation_job_create

pytestmark = installed("verifiers.v1")


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [EndpointKind.VLLM, EndpointKind.TRANSFORMERS])
def test_a_job_on_a_local_endpoint_is_refused_where_vllm_is_not_installed(kind, monkeypatch):
    """verifiers reaches the model over HTTP: a local endpoint's model is served by vLLM's server, so without vLLM
    the job is refused when it is created, with the reason (sys.modules[name] = None is how Python marks a module
    that cannot be imported)."""
    project = ProjectFactory()
    task = verifiers_task_create(project=project, name="wordle", taskset={"id": "rubricon_wordle"}, count=1)
    local = EndpointFactory(project=project, kind=kind, base_url="", model="bundled")
    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(ApplicationError) as refused:
        generation_job_create(project=project, task=task, endpoint=local, enqueue=False)
    assert refused.value.field == "endpoint"
    assert "over HTTP" in refused.value.message and "vLLM is not installed here" in refused.value.message
    assert not GenerationJob.objects.filter(task=task).exists()


@pytest.mark.django_db
@pytest.mark.parametrize("kind", [EndpointKind.VLLM, EndpointKind.TRANSFORMERS])
def test_a_job_on_a_local_endpoint_is_accepted_where_vllm_is_installed(kind):
    if importlib.util.find_spec("vllm") is None:
        pytest.skip("vLLM is not installed here")
    project = ProjectFactory()
    task = verifiers_task_create(project=project, name="wordle", taskset={"id": "rubricon_wordle"}, count=1)
    local = EndpointFactory(project=project, kind=kind, base_url="", model="bundled")
    job = generation_job_create(project=project, task=task, endpoint=local, enqueue=False)
    assert job.model_name == "bundled" and job.endpoint_id == local.pk
