"""`python -m bench`: runs each registered benchmark in its own process, collects the figures it emits and prints one
table against the targets; a failed target, a crashed benchmark or one without figures fails the run, a missing
optional one is skipped."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import sys
sys.path.insert(0, {root!r})
from bench._results import emit
emit("fake", "ratio", {ratio}, 0.8, higher_is_better=True, unit="×")
emit("fake", "p95", 120.0, 150, higher_is_better=False, unit="ms")
emit("fake", "cpu (info)", 3.0, float("inf"), higher_is_better=False, unit="ms")
"""


def runner(monkeypatch, tmp_path: Path, registry: list):
    sys.path.insert(0, str(ROOT))
    module = importlib.import_module("bench.__main__")
    monkeypatch.setattr(module, "BENCH", tmp_path)
    monkeypatch.setattr(module, "REGISTRY", registry)
    return module


def test_a_passing_run_prints_one_table_and_exits_0(monkeypatch, tmp_path, capsys):
    (tmp_path / "fake.py").write_text(SCRIPT.format(root=str(ROOT), ratio=0.9))
    module = runner(monkeypatch, tmp_path, [])
    monkeypatch.setattr(module, "REGISTRY", [
        module.Benchmark("fake", "fake.py", [], []),
        module.Benchmark("later", "not_yet_merged.py", [], [], optional=True),
    ])
    assert module.main([]) == 0
    out = capsys.readouterr().out
    assert "fake" in out and "0.9×" in out and "≥ 0.8×" in out and "1.12" in out  # 0.9 / 0.8
    assert "120 ms" in out and "1.25" in out  # 150 / 120
    assert "info" in out and "skipped" in out
    assert "3 of 3 pass (1 not in this checkout)" in out


def test_a_missed_target_or_a_crash_fails_the_run(monkeypatch, tmp_path, capsys):
    (tmp_path / "fake.py").write_text(SCRIPT.format(root=str(ROOT), ratio=0.5))
    (tmp_path / "crash.py").write_text("raise SystemExit(3)\n")
    module = runner(monkeypatch, tmp_path, [])
    monkeypatch.setattr(module, "REGISTRY", [module.Benchmark("fake", "fake.py", [], []),
                                             module.Benchmark("crash", "crash.py", [], [])])
    assert module.main([]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "EXIT 3" in out
    assert module.main(["--only", "crash"]) == 1
