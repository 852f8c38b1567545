"""Where things live on a node's disk, named once for the apps that need them (below every app, so any may ask)."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def run_dir(run_id: int) -> Path:
    """Where a training run's process writes its checkpoints, log and status (on the node that runs it)."""
    return Path(settings.VAR_DIR) / "runs" / str(run_id)
