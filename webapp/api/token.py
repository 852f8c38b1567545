"""API tokens: one per user, created or rotated from a page or `manage.py api_token`. Stored as a SHA-256 digest
(the key has 256 random bits, so a fast hash is enough); the key itself is shown once, in the response that made it."""

from __future__ import annotations

import hashlib
import secrets

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from webapp.api.models import ApiToken


def token_digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


@transaction.atomic
def token_rotate(*, user) -> str:
    """Replace the user's token with a new one and return its key (never stored); the old one stops working at once."""
    key = secrets.token_urlsafe(32)
    ApiToken.objects.filter(user=user).delete()
    ApiToken.objects.create(user=user, digest=token_digest(key), prefix=key[:6])
    return key


@require_http_methods(["GET", "POST"])
def token_page(request: HttpRequest) -> HttpResponse:
    new_key = None
    if request.method == "POST":
        # Rendered in this response only (not kept in the session or anywhere else until a next page shows it).
        new_key = token_rotate(user=request.user)
        messages.success(request, "New API token created. The previous one no longer works.")
    token = ApiToken.objects.filter(user=request.user).first()
    response = render(request, "api/token.html", {"new_key": new_key, "token": token})
    if new_key:
        response["Cache-Control"] = "no-store"
    return response
