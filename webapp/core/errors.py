from __future__ import annotations


class ApplicationError(Exception):
    """A domain error with a message meant for the user. Mapped once for views and once for the API."""

    def __init__(self, message: str, *, status: int = 400, field: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.field = field
        self.extra = extra or {}


class ConflictError(ApplicationError):
    """A stale edit: somebody changed the row since it was read. Never silently overwritten."""

    def __init__(self, message: str, *, current: dict | None = None):
        super().__init__(message, status=409, extra={"current": current or {}})
