"""Skipping tests whose optional dependency is not installed, told without importing it.

`pytest.importorskip` at the top of a test module imports the package while the module is collected, in every xdist
worker, whether or not that worker runs the module's tests: vLLM, verifiers, TRL and reasoning-gym (with torch) took
~9 of the ~14 CPU seconds each worker spent collecting the suite (docs/benchmarks.md). A test imports what it uses.
"""

from __future__ import annotations

import importlib.util

import pytest


def installed(*modules: str) -> pytest.MarkDecorator:
    """`skipif` mark: skip unless every module can be found (a dotted name's parents are imported to find it, so name
    a light package's submodule, e.g. "verifiers.v1", not a heavy one's)."""
    missing = [name for name in modules if importlib.util.find_spec(name) is None]
    return pytest.mark.skipif(bool(missing), reason=f"not installed: {', '.join(missing)}")
