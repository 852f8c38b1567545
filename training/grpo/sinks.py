"""Where a GRPO run reports: the sink protocol and a JSON-lines file sink.

The runner knows nothing about Django. The Celery `train` task either reads the files a `JsonlSink` writes (when
the run is a separate OS process) or passes a sink that writes `TrainingMetric` / `Rollout` / `Checkpoint` rows.
This module stays free of torch so the worker can read a run's files without importing it.
"""

from __future__ import annotations

import json
import math
import os
import threading
from pathlib import Path
from typing import Any, Literal, Protocol, TypedDict

RunStatus = Literal["running", "completed", "stopped", "failed"]

METRICS_FILE = "metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
CHECKPOINTS_FILE = "checkpoints.jsonl"
STATUS_FILE = "status.json"
STOP_FILE = "STOP"


class Sample(TypedDict):
    """One sampled completion of a training step, with the reward of each criterion and the weighted total."""

    prompt: str | list[dict[str, Any]]
    completion: str
    rewards_per_criterion: dict[str, float | None]
    total: float | None
    group: int  # index of the prompt group within the generation batch
    sample_index: int  # position within the group
    example_id: str | None


class RunSink(Protocol):
    def metrics(self, step: int, values: dict[str, float | None]) -> None: ...

    def samples(self, step: int, samples: list[Sample]) -> None: ...

    def checkpoint(self, step: int, path: str) -> None: ...

    def should_stop(self) -> bool:
        """Checked at every step and before each generation: True ends the run at the next safe point."""
        ...

    def finished(self, status: RunStatus, detail: dict[str, Any]) -> None: ...


def clean_number(value: Any) -> float | int | None:
    """JSON-safe metric value: NaN/inf become None (JSON has no NaN and Postgres JSON refuses it)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class JsonlSink:
    """Appends one JSON object per line to files in ``directory``; a STOP file there (or `request_stop`) cancels.

    Lines are flushed as they are written, so another process can tail them while the run goes on.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._write_status("running", {})

    def _append(self, name: str, record: dict[str, Any]) -> None:
        line = json.dumps(record, ensure_ascii=False, allow_nan=False)
        with self._lock, open(self.directory / name, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()

    def _write_status(self, status: RunStatus, detail: dict[str, Any]) -> None:
        # Written to a temporary file and renamed so a reader never sees half a status.
        target = self.directory / STATUS_FILE
        staging = target.with_suffix(".tmp")
        staging.write_text(json.dumps({"status": status, **detail}, allow_nan=False), encoding="utf-8")
        os.replace(staging, target)

    def metrics(self, step: int, values: dict[str, float | None]) -> None:
        self._append(METRICS_FILE, {"step": step, "metrics": {k: clean_number(v) for k, v in values.items()}})

    def samples(self, step: int, samples: list[Sample]) -> None:
        for sample in samples:
            self._append(SAMPLES_FILE, {"step": step, **sample})

    def checkpoint(self, step: int, path: str) -> None:
        self._append(CHECKPOINTS_FILE, {"step": step, "path": path})

    def request_stop(self) -> None:
        self._stop.set()

    def should_stop(self) -> bool:
        return self._stop.is_set() or (self.directory / STOP_FILE).exists()

    def finished(self, status: RunStatus, detail: dict[str, Any]) -> None:
        self._write_status(status, detail)


def request_stop(directory: str | Path) -> None:
    """Ask the run writing to ``directory`` to stop (what the worker does when a user presses cancel)."""
    (Path(directory) / STOP_FILE).touch()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Read a sink file; a line still being written at the end is skipped, not an error."""
    file = Path(path)
    if not file.exists():
        return []
    records = []
    for line in file.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records


def read_status(directory: str | Path) -> dict[str, Any] | None:
    file = Path(directory) / STATUS_FILE
    return json.loads(file.read_text(encoding="utf-8")) if file.exists() else None
