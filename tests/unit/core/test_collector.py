"""The cyclic collector's thresholds during a run (`dronewatch.core.collector`)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from dronewatch.core.collector import YOUNG_THRESHOLD, fewer_collections


@pytest.fixture(autouse=True)
def _thresholds() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)


def test_raises_the_young_threshold_and_restores_it() -> None:
    """Inside the block young collections come after YOUNG_THRESHOLD allocations, the older
    generations' thresholds unchanged; afterwards the thresholds are what they were."""
    gc.set_threshold(700, 10, 10)
    with fewer_collections():
        assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_restores_after_an_exception_and_when_nested() -> None:
    """An exception leaves the thresholds as they were; a nested block keeps the higher one."""
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), fewer_collections(1000):
        with fewer_collections(500):
            assert gc.get_threshold()[0] == 1000
        raise RuntimeError("stop")
    assert gc.get_threshold() == (700, 10, 10)


def test_collection_turned_off_stays_off() -> None:
    """A threshold of 0 (collection off) is not turned back on."""
    gc.set_threshold(0, 10, 10)
    with fewer_collections():
        assert gc.get_threshold()[0] == 0
