"""Request bodies are refused by their announced size before a byte is read, and uploads stop at the import limit.

Django only learns that an upload is too big once it has streamed the whole body to a temporary file; a request
announcing 5 GB kept a worker busy for seconds. `RequestSizeMiddleware` answers 413 from the Content-Length header
alone, and `CappedUploadHandler` (FILE_UPLOAD_HANDLERS) stops a file that grows past the limit while it streams
(a body whose length was not announced, or a multipart body that lies about its parts).
"""

from __future__ import annotations

from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from webapp.core.errors import ApplicationError

# Room for the multipart framing and the small form fields that travel with a file.
MULTIPART_SLACK_BYTES = 1024 * 1024


def import_max_bytes() -> int:
    return settings.RUBRICON_MAX_IMPORT_MB * 1024 * 1024


def body_limit(content_type: str) -> int | None:
    """Largest body accepted for a content type: uploads get the import limit, anything else Django's limit."""
    if content_type.startswith("multipart/form-data"):
        return import_max_bytes() + MULTIPART_SLACK_BYTES
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE


class UploadTooLarge(ApplicationError):
    def __init__(self, size: int | None = None) -> None:
        limit_mb = settings.RUBRICON_MAX_IMPORT_MB
        said = f"The request is {size / 1024 / 1024:,.1f} MB; " if size is not None else "The upload is too large; "
        super().__init__(
            said + f"uploads are limited to {limit_mb} MB (RUBRICON_MAX_IMPORT_MB). Nothing was read or imported: "
            "split the file and import the parts one after another.", status=413, field="file")


def error_response(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    if request.path_info.startswith("/api/"):
        body = {"detail": error.message, **({"field": error.field} if error.field else {})}
        return JsonResponse(body, status=error.status)
    template = "core/_error.html" if request.headers.get("HX-Request") else "core/error.html"
    return render(request, template, {"error": error}, status=error.status)


class RequestSizeMiddleware:
    """Refuse by Content-Length before the body is read (CSRF, DRF and forms all read it later)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        raw = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw) if raw.isascii() else -1
        except ValueError:
            length = -1
        if length < 0:
            return error_response(request, ApplicationError("The Content-Length header is not a number.",
                                                            status=400))
        limit = body_limit(request.META.get("CONTENT_TYPE", ""))
        if limit is not None and length > limit:
            return error_response(request, UploadTooLarge(length))
        if request.method == "POST" and request.META.get("CONTENT_TYPE", "").startswith("multipart/form-data"):
            # Parse the upload here, where CappedUploadHandler's refusal can become a 413; CSRF, forms and DRF
            # then use the parsed request.POST / request.FILES.
            try:
                request.POST  # noqa: B018 - evaluated for its side effect
            except UploadTooLarge as error:
                return error_response(request, error)
        return self.get_response(request)


class CappedUploadHandler(TemporaryFileUploadHandler):
    """Streams an uploaded file to disk like Django's handler, and stops at the import limit."""

    def new_file(self, *args, **kwargs) -> None:
        self.received = 0
        super().new_file(*args, **kwargs)

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        self.received += len(raw_data)
        # The slack lets a file just over the limit reach the view, which names its size in the form error.
        if self.received > import_max_bytes() + MULTIPART_SLACK_BYTES:
            self.file.close()
            raise UploadTooLarge()
        return super().receive_data_chunk(raw_data, start)
