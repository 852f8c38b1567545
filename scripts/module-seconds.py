#!/usr/bin/env python3
"""Write tests/module_seconds.json from a pytest JUnit XML report: the seconds each test module took, for modules of
5 s or more, longest first. tests/conftest.py orders the suite by them (longest modules first, browser tests last).

    .venv/bin/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --junitxml=/tmp/run.xml
    scripts/module-seconds.py /tmp/run.xml
"""

from __future__ import annotations

import collections
import json
import sys
import xml.etree.ElementTree as ET  # noqa: S405  (our own pytest report)
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "module_seconds.json"


def main(report: str) -> None:
    seconds: collections.Counter[str] = collections.Counter()
    for case in ET.parse(report).getroot().iter("testcase"):  # noqa: S314
        parts = case.get("classname", "").split(".")
        depth = next(i for i, part in enumerate(parts) if part.startswith("test_"))
        seconds["/".join(parts[: depth + 1]) + ".py"] += float(case.get("time", 0))
    long = {name: round(s) for name, s in seconds.most_common() if s >= 5}
    OUT.write_text(json.dumps(long, indent=1) + "\n")
    print(f"wrote {OUT}: {len(long)} modules")


if __name__ == "__main__":
    main(sys.argv[1])
