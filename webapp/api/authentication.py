"""`Authorization: Token <key>` checked against the stored digest (webapp.api.models.ApiToken), with failures
throttled per client address: past RUBRICON_API_TOKEN_FAILURE_LIMIT wrong keys the address gets 429 for
RUBRICON_API_TOKEN_COOLOFF_S, even with a right key, so keys cannot be guessed at request speed."""

from __future__ import annotations

from axes.helpers import get_client_ip_address
from django.conf import settings
from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication, get_authorization_header
from rest_framework.exceptions import AuthenticationFailed, Throttled

from webapp.api.models import ApiToken
from webapp.api.token import token_digest


def _failures_key(request) -> str:
    return f"api-token-failures:{get_client_ip_address(request) or 'unknown'}"


class HashedTokenAuthentication(TokenAuthentication):
    keyword = "Token"

    def authenticate(self, request):
        words = get_authorization_header(request).split()
        if not words or words[0].lower() != self.keyword.lower().encode():
            return None  # no token offered: nothing to count
        key = _failures_key(request)
        cooloff = settings.RUBRICON_API_TOKEN_COOLOFF_S
        if (cache.get(key) or 0) >= settings.RUBRICON_API_TOKEN_FAILURE_LIMIT:
            raise Throttled(wait=cooloff, detail="Too many wrong API tokens from this address; try again later.")
        try:
            return super().authenticate(request)
        except AuthenticationFailed:
            cache.add(key, 0, timeout=cooloff)
            try:
                cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=cooloff)
            raise

    def authenticate_credentials(self, key: str):
        token = ApiToken.objects.select_related("user").filter(digest=token_digest(key)).first()
        if token is None or not token.user.is_active:
            raise AuthenticationFailed("Invalid token.")
        return token.user, token
