"""Imports are idempotent: the same file into the same place is imported once, unless a copy is asked for.

    file_sha256(stream) -> str                               # reads the stream in chunks, rewinds it
    import_claim(*, project, kind, task, rubric_version, sha256, filename, user, idempotency_key="",
                 allow_duplicate=False) -> ImportRecord      # inside the import's transaction, before any row
    import_done(*, record, summary)

A client whose connection drops after the server committed a 95 MB import cannot know it succeeded and retries: the
retry used to double every row. Each import now records its file's SHA-256 (and the client's Idempotency-Key, if it
sent one) in the same transaction as its rows. A retry finds that record and answers 409 "already imported as
import #N"; `allow_duplicate` (the form's "import a copy" box, the API's allow_duplicate=true) imports it again.
If the import fails, its record rolls back with its rows, so the retry is not refused.
"""

from __future__ import annotations

import hashlib
from typing import IO, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from webapp.core.errors import ApplicationError
from webapp.core.models import ImportRecord, Project

CHUNK = 1024 * 1024


def file_sha256(stream: IO[bytes]) -> str:
    digest = hashlib.sha256()
    stream.seek(0)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
    stream.seek(0)
    return digest.hexdigest()


def import_scope(*, kind: str, task: Any = None, rubric_version: Any = None) -> str:
    return f"{kind}|task={getattr(task, 'pk', '') or ''}|version={getattr(rubric_version, 'pk', '') or ''}"


class AlreadyImported(ApplicationError):
    def __init__(self, record: ImportRecord, *, by_key: bool) -> None:
        when = timezone.localtime(record.created_at).strftime("%Y-%m-%d %H:%M")
        what = "An import with this Idempotency-Key" if by_key else "This file"
        super().__init__(
            f"{what} was already imported as import #{record.pk} on {when}"
            + (f" ({record.summary})" if record.summary else "")
            + ". Nothing was imported again; to import a second copy, tick 'Import a copy' (API: allow_duplicate=true).",
            status=409, field="file", extra={"import_id": record.pk})


def _existing(project: Project, scope: str, sha256: str, key: str) -> tuple[ImportRecord | None, bool]:
    if key:
        found = ImportRecord.objects.filter(project=project, idempotency_key=key).first()
        if found is not None:
            return found, True
    found = ImportRecord.objects.filter(project=project, scope=scope, sha256=sha256).order_by("id").first()
    return found, False


def import_claim(
    *, project: Project, kind: str, sha256: str, filename: str = "", user: Any = None, task: Any = None,
    rubric_version: Any = None, idempotency_key: str = "", allow_duplicate: bool = False,
) -> ImportRecord:
    """Record the import about to write rows, or raise AlreadyImported. Call inside the import's transaction."""
    key = (idempotency_key or "").strip()[:200]
    scope = import_scope(kind=kind, task=task, rubric_version=rubric_version)
    found, by_key = _existing(project, scope, sha256, key)
    if found is not None and (by_key or not allow_duplicate):
        raise AlreadyImported(found, by_key=by_key)
    values = {"project": project, "kind": kind, "scope": scope, "sha256": sha256, "idempotency_key": key,
              "is_copy": found is not None, "filename": (filename or "")[:300],
              "created_by": user if getattr(user, "is_authenticated", False) else None}
    try:
        with transaction.atomic():
            return ImportRecord.objects.create(**values)
    except IntegrityError:
        # The same file (or key) committed by a concurrent import while this one waited on the unique index.
        found, by_key = _existing(project, scope, sha256, key)
        if found is None:
            raise
        raise AlreadyImported(found, by_key=by_key) from None


def import_done(*, record: ImportRecord, summary: str) -> None:
    record.summary = summary[:500]
    record.save(update_fields=["summary"])
