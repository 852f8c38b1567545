"""Run a test module's `scenario()` in a child process on a fresh SQLite database with the embedded mode's settings
(`webapp.settings.dev`), for code that must also hold on the embedded mode's SQLite while the suite runs on Postgres."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_scenario(module_file: str, var_dir: Path, *, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Runs `module_file` as a script (its `__main__` calls `scenario()`) with `var_dir` as the embedded mode's var/."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(RUBRICON_VAR_DIR=str(var_dir), DJANGO_SETTINGS_MODULE="webapp.settings.dev")
    return subprocess.run([sys.executable, module_file], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
