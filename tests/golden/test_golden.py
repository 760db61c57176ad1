"""Golden files: every capture under pcaps/ gives exactly the reviewed records."""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.output.jsonl import AlertExportWriter
from tests.pcaps import GOLDEN, PCAPS, all_captures


def golden_dir(capture: Path) -> Path:
    rel = capture.relative_to(PCAPS)
    return GOLDEN / rel.parent / rel.name.split(".")[0]


@functools.cache
def default_config() -> AnalysisConfig:
    """What `dronewatch analyze` uses with no options: bundled rules and GeoIP, LDM off."""
    return AnalysisConfig(classifier=Classifier.load(), resolver=MaxMindResolver.bundled())


def analyze_to(capture: Path, out: Path) -> None:
    writer = AlertExportWriter(out)
    # Relative source names keep the golden files free of machine paths.
    source = FileSource(str(capture.relative_to(PCAPS.parent)))
    cwd = os.getcwd()
    os.chdir(PCAPS.parent)
    try:
        run_source(source, writer.write, default_config())
    finally:
        os.chdir(cwd)
        writer.close()


def read_logs(directory: Path) -> dict[str, list[dict[str, object]]]:
    return {
        p.stem: [json.loads(line) for line in p.read_text().splitlines()]
        for p in sorted(directory.glob("*.jsonl"))
    }


@pytest.mark.parametrize(
    "capture", [pytest.param(p, id=str(p.relative_to(PCAPS))) for p in all_captures()]
)
def test_golden(capture: Path, tmp_path: Path, update_golden: bool) -> None:
    """The records of a capture equal its golden JSONL files, log by log and line by line."""
    analyze_to(capture, tmp_path)
    expected_dir = golden_dir(capture)
    if update_golden:
        shutil.rmtree(expected_dir, ignore_errors=True)
        shutil.copytree(tmp_path, expected_dir)
    assert expected_dir.is_dir(), f"no golden files for {capture}: run pytest --update-golden"
    got = read_logs(tmp_path)
    want = read_logs(expected_dir)
    assert sorted(got) == sorted(want)
    for log in want:
        assert got[log] == want[log], f"{log}.jsonl differs from {expected_dir}/{log}.jsonl"
