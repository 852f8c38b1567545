"""The order of a test run (tests/conftest.py `pytest_collection_modifyitems`): `make test` hands whole modules to
xdist workers in this order (`--dist loadscope --no-loadscope-reorder`), so it decides how well the two cores are used;
browser modules take their place by duration like any other, since each closes its browser."""

import ast
import json
from dataclasses import dataclass

import pytest

from tests import conftest


@dataclass
class Item:
    nodeid: str


@pytest.fixture
def durations(tmp_path, monkeypatch):
    path = tmp_path / "durations.json"
    monkeypatch.setattr(conftest, "DURATIONS_PATH", path)
    return path


def ordered(nodeids: list[str]) -> list[str]:
    items = [Item(nodeid) for nodeid in nodeids]
    conftest.pytest_collection_modifyitems(None, items)
    return [item.nodeid for item in items]


def test_modules_run_slowest_first_whole_and_in_their_own_order_browser_modules_too(durations):
    durations.write_text(json.dumps({"tests/a.py": 1.0, "tests/slow.py": 90.0, "tests/browser/test_b.py": 200.0,
                                     "tests/browser/test_c.py": 5.0}))
    collected = [
        "tests/browser/test_c.py::test_1", "tests/a.py::test_2", "tests/slow.py::test_db",
        "tests/browser/test_b.py::test_1", "tests/a.py::test_1", "tests/new.py::test_1", "tests/new.py::test_2",
        "tests/new.py::test_3", "tests/slow.py::test_transactional",
    ]
    assert ordered(collected) == [
        "tests/browser/test_b.py::test_1",  # 200 s: the longest module starts first, browser or not
        "tests/slow.py::test_db", "tests/slow.py::test_transactional",  # 90 s
        "tests/browser/test_c.py::test_1",  # 5 s
        "tests/new.py::test_1", "tests/new.py::test_2", "tests/new.py::test_3",  # unknown: 3 x 0.5 s
        "tests/a.py::test_2", "tests/a.py::test_1",  # 1 s, collection order kept inside the module
    ]


def test_without_a_durations_file_modules_with_more_tests_go_first(durations):
    assert ordered(["tests/one.py::test_1", "tests/browser/test_x.py::test_1", "tests/two.py::test_1",
                    "tests/two.py::test_2"]) == [
        "tests/two.py::test_1", "tests/two.py::test_2", "tests/browser/test_x.py::test_1", "tests/one.py::test_1"]


def test_the_committed_durations_name_only_modules_that_exist():
    """A renamed module keeps a stale entry otherwise; its tests would be ordered as unknown."""
    known = json.loads(conftest.DURATIONS_PATH.read_text())
    missing = [module for module in known if not (conftest.REPO_ROOT / module).is_file()]
    assert not missing, f"refresh tests/durations.json (make test PYTEST_ARGS=--store-durations): {missing}"


def test_modules_that_share_an_engine_are_one_unit_and_use_it():
    assert conftest.scheduling_unit("tests/a.py::test_1[x::y]") == "tests/a.py"
    units = {conftest.scheduling_unit(f"{module}::test_x") for module in conftest.SHARED_ENGINE_MODULES}
    assert units == set(conftest.SHARED_ENGINE_MODULES.values())
    for module, fixture in conftest.SHARED_ENGINE_MODULES.items():
        tree = ast.parse((conftest.REPO_ROOT / module).read_text())
        users = [node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                 and node.name.startswith("test_") and fixture in {arg.arg for arg in node.args.args}]
        assert users, f"no test in {module} asks for {fixture}: drop it from SHARED_ENGINE_MODULES"


AFTER_A_BROWSER_CONFTEST = """
from tests.browser.conftest import browser  # noqa: F401  (the fixture under test)
"""

AFTER_A_BROWSER_TESTS = {
    "test_1_page.py": """
def test_a_page_opens(browser):
    page = browser.new_page()
    page.set_content("<p>hi</p>")
    assert page.inner_text("p") == "hi"
""",
    "test_2_async.py": """
import asyncio


async def answer():
    return 42


def test_asyncio_run_works_after_a_browser_module():
    assert asyncio.run(answer()) == 42
""",
}


def test_a_module_that_runs_an_event_loop_may_follow_a_browser_module_in_the_same_process(tmp_path):
    """The run order puts browser modules anywhere (tests/conftest.py): that holds only if a browser module leaves no
    event loop running in the thread when it ends (Playwright's sync API runs one while it is open)."""
    import os
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text(AFTER_A_BROWSER_CONFTEST)
    for name, text in AFTER_A_BROWSER_TESTS.items():
        (tmp_path / name).write_text(text)
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:django", "-p", "no:cacheprovider", "-p",
                           "no:xdist", "-q", str(tmp_path)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(conftest.REPO_ROOT)})
    assert done.returncode == 0 and "2 passed" in done.stdout, done.stdout + done.stderr
