from __future__ import annotations

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from webapp.core.errors import ApplicationError


def exception_handler(exc, context):
    """ApplicationError → a JSON error with its status; everything else as DRF does it."""
    if isinstance(exc, ApplicationError):
        body = {"detail": exc.message}
        if exc.field:
            body["field"] = exc.field
        body.update(exc.extra)
        return Response(body, status=exc.status)
    return drf_exception_handler(exc, context)
