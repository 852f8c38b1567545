"""Error answers a person can read: opening a form-only address shows a page, not a blank 405."""

from __future__ import annotations

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_get_on_a_post_only_page_explains_itself(client, make_member):
    user, project = make_member("editor")
    client.force_login(user)
    url = reverse("rollouts:job_create", args=[project.pk])
    response = client.get(url, HTTP_REFERER=f"http://testserver{reverse('rollouts:list', args=[project.pk])}")
    body = response.content.decode()
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "Not a page to open" in body and reverse("rollouts:list", args=[project.pk]) in body


def test_back_link_never_points_off_site(client, make_member):
    user, project = make_member("editor")
    client.force_login(user)
    response = client.get(reverse("rollouts:job_create", args=[project.pk]), HTTP_REFERER="https://evil.example/x")
    assert response.status_code == 405 and "evil.example" not in response.content.decode()


def test_api_keeps_its_own_405(client, make_member):
    user, project = make_member("owner")
    client.force_login(user)
    response = client.put("/api/v1/projects/")
    assert response.status_code == 405 and response["Content-Type"].startswith("application/json")
