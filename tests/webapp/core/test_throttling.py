"""Issue 15.6: password guessing is throttled on the login form (django-axes) and on API tokens."""

from __future__ import annotations

import uuid

import pytest
from django.core.cache import cache
from django.urls import reverse
from rest_framework.test import APIClient

from tests.factories import UserFactory
from webapp.api.token import token_rotate

pytestmark = pytest.mark.django_db


def test_login_locks_a_username_and_address_after_repeated_failures(client, settings):
    user = UserFactory(username="ada")
    user.set_password("right-password-123")
    user.save()
    here = {"REMOTE_ADDR": "203.0.113.7"}
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post(reverse("login"), {"username": "ada", "password": "wrong"}, **here)
        assert response.status_code == 200 and response.context["form"].errors  # a plain wrong password
    assert client.post(reverse("login"), {"username": "ada", "password": "wrong"}, **here).status_code == 429
    # Locked now: even the right password is refused from this address...
    response = client.post(reverse("login"), {"username": "ada", "password": "right-password-123"}, **here)
    assert response.status_code == 429 and "_auth_user_id" not in client.session
    # ...while the owner logs in from elsewhere.
    response = client.post(reverse("login"), {"username": "ada", "password": "right-password-123"},
                           REMOTE_ADDR="198.51.100.9")
    assert response.status_code == 302 and client.session["_auth_user_id"] == str(user.pk)


def test_wrong_api_tokens_are_throttled_per_address(settings):
    settings.RUBRICON_API_TOKEN_FAILURE_LIMIT = 3
    key = token_rotate(user=UserFactory())
    address = f"2001:db8::{uuid.uuid4().hex[:4]}"  # fresh: the cache outlives the test
    api = APIClient(REMOTE_ADDR=address)
    try:
        for _ in range(3):
            assert api.get("/api/v1/projects/", HTTP_AUTHORIZATION="Token guess").status_code in (401, 403)
        response = api.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}")
        assert response.status_code == 429 and "Too many wrong API tokens" in response.content.decode()
        assert APIClient(REMOTE_ADDR="2001:db8::1:1").get(
            "/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    finally:
        cache.delete(f"api-token-failures:{address}")
        cache.delete("api-token-failures:2001:db8::1:1")
