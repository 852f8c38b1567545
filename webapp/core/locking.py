"""Optimistic locking: an edit applies only if the row still has the `row_version` the editor read."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import F

from webapp.core.errors import ApplicationError, ConflictError


def row_version_update(
    *, instance: models.Model, row_version: int, values: dict[str, Any], shown_fields: Iterable[str], noun: str,
    duplicate_name_message: str,
) -> None:
    """Write `values` and bump row_version, or refuse: a vanished row → 404, a newer row → 409 with its current
    values (never a silent overwrite), a unique-name clash → a message at the name field."""
    model = type(instance)
    try:
        with transaction.atomic():
            updated = model.objects.filter(pk=instance.pk, row_version=row_version).update(
                **values, row_version=F("row_version") + 1
            )
    except IntegrityError:
        raise ApplicationError(duplicate_name_message, field="name") from None
    if not updated:
        current = model.objects.filter(pk=instance.pk).first()
        if current is None:
            raise ApplicationError(f"This {noun} was deleted in the meantime.", status=404)
        raise ConflictError(
            f"Someone saved this {noun} after you opened it; your changes were not saved. The current values "
            "are shown under each field: save again to replace them with yours.",
            current={"row_version": current.row_version, **{f: getattr(current, f) for f in shown_fields}},
        )
    instance.refresh_from_db()
