"""Golden files: every capture under pcaps/ gives exactly the reviewed records, with LDM off and
with LDM on for every device.

tests/golden/<dir>/<capture stem>/ holds every log of the LDM-off run (`dronewatch analyze`);
its ldm_on/ subdirectory holds the judgement logs of the LDM-on run (`dronewatch analyze --ldm on`),
each written even when empty. `pytest tests/golden --update-golden` rewrites both.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.policy import Policy
from dronewatch.output.jsonl import AlertExportWriter
from tests.pcaps import CAPTURE_SUFFIXES, GOLDEN, PCAPS, all_captures, shown

LDM_ON_DIR = "ldm_on"
"""The subdirectory of a capture's golden files that holds its LDM-on judgement logs."""
JUDGEMENT_LOGS = ("alerts", "devices", "egress", "verdicts")
"""The logs kept for the LDM-on run: what the judge decides, and what it decides from."""
ALERT_EXPORTS = ("alerts.ecs", "alerts.ocsf")
"""alerts.jsonl again in ECS and OCSF (`AlertExportWriter`): not kept for the LDM-on run."""

Logs = dict[str, list[dict[str, object]]]


def golden_dir(capture: Path) -> Path:
    """tests/golden/<dir>/<capture name without its suffixes>/ for pcaps/<dir>/<capture>
    (`tls1.2.pcap` and a `tls1.3.pcap` keep apart)."""
    rel = capture.relative_to(PCAPS)
    suffix = next(
        s for s in sorted(CAPTURE_SUFFIXES, key=len, reverse=True) if rel.name.endswith(s)
    )
    return GOLDEN / rel.parent / rel.name.removesuffix(suffix)


@functools.cache
def config(ldm: bool) -> AnalysisConfig:
    """What `dronewatch analyze` uses (bundled rules and GeoIP): with no options (LDM off), or
    with `--ldm on` (LDM on for every device)."""
    return AnalysisConfig(
        policy=Policy().with_ldm(True) if ldm else Policy(),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
    )


def analyze_to(capture: Path, out: Path, ldm: bool) -> None:
    """Write the JSONL records of one run over `capture` into `out`, as `analyze --out` does."""
    writer = AlertExportWriter(out)
    # Relative source names keep the golden files free of machine paths.
    source = FileSource(str(capture.relative_to(PCAPS.parent)))
    cwd = os.getcwd()
    os.chdir(PCAPS.parent)
    try:
        run_source(source, writer.write, config(ldm))
    finally:
        os.chdir(cwd)
        writer.close()


def read_logs(directory: Path) -> Logs:
    """Every `*.jsonl` file directly in `directory`, by log name, one parsed record per line."""
    return {
        p.name.removesuffix(".jsonl"): [json.loads(line) for line in p.read_text().splitlines()]
        for p in sorted(directory.glob("*.jsonl"))
    }


def rewrite(directory: Path, texts: dict[str, str]) -> None:
    """Replace the `*.jsonl` files directly in `directory` (not its subdirectories) by `texts`."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.jsonl"):
        old.unlink()
    for log, text in texts.items():
        (directory / f"{log}.jsonl").write_text(text)


def assert_same(got: Logs, want: Logs, where: Path) -> None:
    """The same logs, record by record; a difference names the file and its first line."""
    assert sorted(got) == sorted(want), f"logs differ from {shown(where)}"
    for log, lines in want.items():
        mine = got[log]
        for n, (a, b) in enumerate(zip(mine, lines, strict=False), 1):
            assert a == b, f"{shown(where)}/{log}.jsonl line {n} differs"
        assert len(mine) == len(lines), (
            f"{shown(where)}/{log}.jsonl: {len(mine)} lines, not {len(lines)}"
        )


CASES = [
    pytest.param(p, ldm, id=f"{p.relative_to(PCAPS)}-{'ldm_on' if ldm else 'ldm_off'}")
    for p in all_captures()
    for ldm in (False, True)  # off first: --update-golden writes what the LDM-on case reads
]


@pytest.mark.parametrize(("capture", "ldm"), CASES)
def test_golden(capture: Path, ldm: bool, tmp_path: Path, update_golden: bool) -> None:
    """A capture's records equal its golden JSONL files line by line: every log with LDM off; with
    LDM on, the judgement logs in ldm_on/ and every other log as with LDM off."""
    analyze_to(capture, tmp_path, ldm)
    texts = {p.name.removesuffix(".jsonl"): p.read_text() for p in tmp_path.glob("*.jsonl")}
    got = read_logs(tmp_path)
    off_dir = golden_dir(capture)
    on_dir = off_dir / LDM_ON_DIR
    if update_golden:
        if ldm:
            rewrite(on_dir, {log: texts.get(log, "") for log in JUDGEMENT_LOGS})
        else:
            rewrite(off_dir, texts)
    hint = "run pytest tests/golden --update-golden and review the diff"
    assert off_dir.is_dir(), f"no golden files for {shown(capture)}: {hint}"
    off = read_logs(off_dir)
    if not ldm:
        assert_same(got, off, off_dir)
        return
    assert on_dir.is_dir(), f"no LDM-on golden files for {shown(capture)}: {hint}"
    assert_same({log: got.get(log, []) for log in JUDGEMENT_LOGS}, read_logs(on_dir), on_dir)
    # LDM decides about the traffic, never what the analyzers read from it.
    judged = JUDGEMENT_LOGS + ALERT_EXPORTS
    facts = {log: v for log, v in got.items() if log not in judged}
    assert_same(facts, {log: v for log, v in off.items() if log not in judged}, off_dir)


def test_every_golden_directory_has_its_capture() -> None:
    """Golden files whose capture is gone fail the run, naming the missing capture."""
    expected = {golden_dir(p) for p in all_captures()}
    kept = {p.parent for p in GOLDEN.rglob("capture.jsonl") if p.parent.name != LDM_ON_DIR}
    missing = sorted(shown(PCAPS / d.relative_to(GOLDEN)) + ".pcap*" for d in kept - expected)
    assert not missing, f"captures missing for golden files: {', '.join(missing)}"
    without = sorted(shown(d) for d in expected if d.is_dir() and not (d / LDM_ON_DIR).is_dir())
    assert not without, f"no {LDM_ON_DIR}/ golden files in: {', '.join(without)}"
