"""Fixtures shared by the analyzer tests."""

from __future__ import annotations

import pytest

from dronewatch.native import NUMPY_WALK_ENV


@pytest.fixture(params=["c", "python"])
def both_counters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the drone-link analyzers' C frame counters (the usual case), then with
    their Python twins (as where the extension is not built)."""
    if request.param == "python":
        monkeypatch.setenv(NUMPY_WALK_ENV, "1")
    else:
        pytest.importorskip("dronewatch._fastpath")
    return str(request.param)
