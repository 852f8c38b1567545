"""Imported at start-up (as `sitecustomize`) by every Python process the tests start — Celery workers, vLLM servers and
their engine processes, training runs, scripts — through PYTHONPATH (tests/conftest.py, `pytest_configure`).

The test environment installs the tests' reference libraries (pyproject.toml, extra `dev`: scikit-learn, scipy), which
a deployment does not have (no production dependency needs them: tests/test_production_imports.py); transformers
imports both whenever they are installed (scikit-learn for assisted decoding, scipy for object-detection losses), which
cost every process that loads transformers ~1 CPU s that a deployed process never spends — each vLLM server and engine
process, Celery worker and training run of the suite. They are hidden here, so the processes under test import what
they import in a deployment: with None in sys.modules, `import sklearn` raises ImportError and
importlib.util.find_spec("sklearn") answers None, as if it were not installed. The test processes themselves (the
xdist workers, which compare our statistics with scikit-learn's and scipy's) keep them."""

import sys

TEST_ONLY_PACKAGES = ("sklearn", "scipy")

if __name__ == "sitecustomize":  # at start-up; not when a test imports this file for the list above
    for _name in TEST_ONLY_PACKAGES:
        sys.modules.setdefault(_name, None)  # type: ignore[arg-type]
