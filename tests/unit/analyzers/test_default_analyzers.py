"""`default_analyzers()` builds every analyzer with the options `AnalyzerOptions` holds for it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from dronewatch.analyzers import AnalyzerOptions, default_analyzers
from dronewatch.analyzers.dns import DnsOptions
from dronewatch.analyzers.http import HttpOptions
from tests.factories import RecordingContext


def test_each_analyzer_gets_its_own_options_object() -> None:
    """Every field of AnalyzerOptions names an analyzer, which runs with exactly that object."""
    options = AnalyzerOptions(
        dns=DnsOptions(max_answers=3),
        dji_droneid=dataclasses.replace(AnalyzerOptions().dji_droneid, max_aircraft=2),
    )
    analyzers: dict[str, Any] = {a.name: a for a in default_analyzers(RecordingContext(), options)}
    for f in dataclasses.fields(AnalyzerOptions):
        assert analyzers[f.name].options is getattr(options, f.name), f.name
    assert analyzers["dns"].options.max_answers == 3
    assert analyzers["dji_droneid"].options.max_aircraft == 2


def test_without_options_every_analyzer_has_its_defaults() -> None:
    """No options: each analyzer's options equal its Options class's defaults."""
    analyzers: dict[str, Any] = {a.name: a for a in default_analyzers(RecordingContext())}
    for f in dataclasses.fields(AnalyzerOptions):
        assert analyzers[f.name].options == getattr(AnalyzerOptions(), f.name)


@pytest.mark.parametrize("options", [DnsOptions, HttpOptions])
def test_max_pending_below_one_is_refused(options: type[DnsOptions | HttpOptions]) -> None:
    """A max_pending of 0 would make the analyzer pop from an empty queue: refused up front."""
    with pytest.raises(ValueError, match="max_pending must be at least 1"):
        options(max_pending=0)
    assert options(max_pending=1).max_pending == 1
