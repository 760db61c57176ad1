"""Fixtures shared by the analyzer tests."""

from __future__ import annotations

import pytest

from dronewatch.fastpath import NO_C_ENV


@pytest.fixture(params=["c", "python"])
def both_counters(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the drone-link analyzers' C frame counters (the usual case), then with
    their Python twins (as where the extension is not built)."""
    if request.param == "python":
        monkeypatch.setenv(NO_C_ENV, "1")
    else:
        pytest.importorskip("dronewatch.fastpath._fastpath")
    return str(request.param)
