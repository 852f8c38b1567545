"""Issue 15.6: API tokens are stored as digests, shown once, never readable in the admin; old plain-text tokens
keep working after the migration hashes them."""

from __future__ import annotations

import hashlib

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test import Client
from rest_framework.test import APIClient

from tests.factories import UserFactory
from webapp.api.models import ApiToken
from webapp.api.token import token_rotate

pytestmark = pytest.mark.django_db


def dump_database_text() -> str:
    """Every text value of every table, as a database dump would show it."""
    parts = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f'SELECT * FROM "{table}"')
            parts.extend(str(value) for row in cursor.fetchall() for value in row)
    return "\n".join(parts)


def test_the_key_is_shown_once_and_only_its_digest_is_stored():
    user = UserFactory()
    browser = Client()
    browser.force_login(user)
    response = browser.post("/api/token/")
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    token = ApiToken.objects.get(user=user)
    key = response.context["new_key"]
    assert key and key in response.content.decode()
    assert token.digest == hashlib.sha256(key.encode()).hexdigest() and token.prefix == key[:6]
    assert key not in dump_database_text()  # sessions included: nothing keeps the key for a later page
    again = browser.get("/api/token/").content.decode()
    assert key not in again and f"<code>{key[:6]}…</code>" in again
    api = APIClient()
    assert api.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
    assert api.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"token {key}").status_code == 200  # as DRF accepts it
    assert api.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {token.digest}").status_code in (401, 403)
    user.is_active = False
    user.save()
    assert api.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code in (401, 403)


def test_the_admin_lists_tokens_without_digest_or_key(admin_client, admin_user):
    key = token_rotate(user=admin_user)
    token = ApiToken.objects.get(user=admin_user)
    for url in ("/admin/api/apitoken/", f"/admin/api/apitoken/{token.pk}/change/"):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert key not in page.content.decode() and token.digest not in page.content.decode()
    assert admin_client.get("/admin/api/apitoken/add/").status_code == 403
    assert "rest_framework.authtoken" not in str(admin_client.get("/admin/").content)  # no plain-text token model


def test_migration_hashes_existing_plain_text_tokens():
    user = UserFactory()
    executor = MigrationExecutor(connection)
    executor.migrate([("api", None)])
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, created timestamptz NOT NULL, "
                       "user_id integer NOT NULL UNIQUE)")
        cursor.execute("INSERT INTO authtoken_token VALUES ('0123456789abcdef0123456789abcdef01234567', now(), %s)",
                       [user.pk])
    executor = MigrationExecutor(connection)
    executor.migrate([("api", "0001_api_token_hashed")])
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
        cursor.execute("DROP TABLE authtoken_token")
    key = "0123456789abcdef0123456789abcdef01234567"
    assert ApiToken.objects.get(user=user).digest == hashlib.sha256(key.encode()).hexdigest()
    assert APIClient().get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Token {key}").status_code == 200
