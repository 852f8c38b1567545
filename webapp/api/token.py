"""API tokens (DRF authtoken): one per user, created or rotated from a page or `manage.py api_token`."""

from __future__ import annotations

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods


@transaction.atomic
def token_rotate(*, user):
    """Replace the user's token with a new one; the old one stops working at once."""
    # Imported here: the authtoken model exists only once `rest_framework.authtoken` is installed.
    from rest_framework.authtoken.models import Token

    Token.objects.filter(user=user).delete()
    return Token.objects.create(user=user)


@require_http_methods(["GET", "POST"])
def token_page(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        token = token_rotate(user=request.user)
        messages.success(request, "New API token created. The previous one no longer works.")
        request.session["new_api_token"] = token.key
        return redirect("api-token")
    from rest_framework.authtoken.models import Token

    new_key = request.session.pop("new_api_token", None)
    has_token = Token.objects.filter(user=request.user).exists()
    return render(request, "api/token.html", {"new_key": new_key, "has_token": has_token})
