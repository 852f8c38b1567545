"""The test processes freeze their heap between test modules (tests/conftest.py, `heap_freeze`): garbage is collected
first, what is alive is frozen, and what comes after is collected as before."""

from __future__ import annotations

import gc
import weakref

from tests.conftest import heap_freeze


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_garbage_goes_first_then_the_rest_is_frozen_and_later_garbage_is_still_collected():
    earlier = weakref.ref(Node())  # garbage already, in a cycle
    kept = Node()
    frozen_before = gc.get_freeze_count()
    heap_freeze()
    assert earlier() is None  # collected, not frozen
    assert gc.get_freeze_count() > frozen_before
    assert not any(o is kept for o in gc.get_objects())  # frozen: in no generation a collection scans
    later = weakref.ref(Node())
    gc.collect()
    assert later() is None  # objects made after the freeze are collected as before
