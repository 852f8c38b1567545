"""Export jobs (queue `default`): write an export's file with progress on its row."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="workers.exports.run_export", ignore_result=True, acks_late=True)
def run_export(*, export_id: int) -> None:
    from webapp.exports.services import export_write

    export_write(export_id=export_id)


@shared_task(name="workers.exports.push_export", ignore_result=True, acks_late=True)
def push_export(*, push_id: int) -> None:
    from webapp.exports.hub import hub_push_run

    hub_push_run(push_id=push_id)
