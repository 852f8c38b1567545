"""pytest plugin for bench/suite_profile.py: appends one JSON line per test (start, end) to
$RUBRICON_SUITE_TIMELINE/timeline-<xdist worker>.jsonl, with this process's pid so the profiler can tell which
processes belong to which worker."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.time()
    try:
        return (yield)
    finally:
        folder = Path(os.environ["RUBRICON_SUITE_TIMELINE"])
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        with open(folder / f"timeline-{worker}.jsonl", "a") as out:
            out.write(json.dumps({"id": item.nodeid, "t0": started, "t1": time.time(), "pid": os.getpid(),
                                  "worker": worker}) + "\n")
