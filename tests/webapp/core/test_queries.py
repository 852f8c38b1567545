"""List pages run a constant number of queries, however many rows they show (no N+1)."""

from __future__ import annotations

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.factories import (
    EndpointFactory,
    ExampleFactory,
    GenerationJobFactory,
    RolloutFactory,
    RubricFactory,
    RubricVersionFactory,
    TaskFactory,
)
from webapp.core.models import Role
from webapp.exports.models import Export
from webapp.reviews.models import ReviewQueue
from webapp.runs.models import TrainingRun


def populate(project, n: int) -> None:
    for i in range(n):
        task = TaskFactory(project=project)
        ExampleFactory.create_batch(2, task=task)
        rubric = RubricFactory(project=project, task=task)
        version = RubricVersionFactory(rubric=rubric, number=1)
        EndpointFactory(project=project)
        job = GenerationJobFactory(project=project, task=task)
        RolloutFactory(project=project, task=task, job=job)
        ReviewQueue.objects.create(project=project, name=f"q{i}", rubric_version=version)
        TrainingRun.objects.create(project=project, name=f"run{i}", task=task, rubric_version=version, base_model="bundled")
        Export.objects.create(project=project, kind="sft", format="jsonl")


LIST_PAGES = ["core:dashboard", "tasks:list", "rubrics:list", "endpoints:list", "rollouts:list", "reviews:list",
              "runs:list", "exports:list", "core:members"]


@pytest.mark.django_db
@pytest.mark.parametrize("page", LIST_PAGES)
def test_list_page_query_count_does_not_grow_with_rows(client, make_member, page):
    user, project = make_member(Role.OWNER)
    client.force_login(user)
    url = reverse(page, args=[project.pk])

    def count() -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(url).status_code == 200
        return len(ctx.captured_queries)

    populate(project, 2)
    few = count()
    populate(project, 8)
    assert count() == few


@pytest.mark.django_db
def test_task_detail_examples_are_keyset_paginated(client, make_member, django_assert_max_num_queries):
    user, project = make_member(Role.VIEWER)
    task = TaskFactory(project=project)
    ExampleFactory.create_batch(120, task=task)
    client.force_login(user)
    url = reverse("tasks:detail", args=[project.pk, task.pk])
    seen: list[str] = []
    cursor = ""
    for _ in range(3):
        with django_assert_max_num_queries(8):
            response = client.get(url + cursor, HTTP_HX_REQUEST="true")
        html = response.content.decode()
        seen += re.findall(r"<code>(ex-\d+)</code>", html)
        next_before = re.search(r"before=(\d+)", html)
        cursor = f"?before={next_before.group(1)}" if next_before else ""
    assert len(seen) == len(set(seen)) == 120 and cursor == ""
    assert b"<html" not in response.content  # an htmx request gets only the fragment
