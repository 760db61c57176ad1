"""Times no date can hold (a corrupt capture's far-future timestamp) never break an alert."""

from __future__ import annotations

import json
from pathlib import Path

from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dronewatch.cli.app import EXIT_VIOLATION, main
from dronewatch.judge.alert import utc_time
from tests.unit.capture.captures import epb, idb, shb


def test_utc_time_pins_times_no_date_can_hold() -> None:
    """Year 148108, minus 10^18 s and NaN become the last or first representable instant."""
    assert utc_time(2**62 / 1e6).year == 9999
    assert utc_time(-1e18).year == 1
    assert utc_time(float("nan")).year == 9999
    assert utc_time(1_700_000_000.5).isoformat() == "2023-11-14T22:13:20.500000+00:00"


def test_far_future_packet_time_gives_a_violation_not_a_traceback(tmp_path: Path) -> None:
    """A pcapng whose middle packet is dated year 148108: `analyze --out` exits with the
    violation code and writes every alert, its ECS form pinned to 9999-12-31."""
    frames = b""
    for i, ts in enumerate((1_700_000_000_000_000, 2**62, 1_700_000_001_000_000)):
        frame = Ether() / IP(src="10.0.0.2", dst="8.8.8.8") / TCP(sport=40000 + i, dport=443)
        frames += epb(0, ts, raw(frame / (b"x" * 50)))
    capture = tmp_path / "future.pcapng"
    capture.write_bytes(shb() + idb(1) + frames)
    policy = tmp_path / "policy.yaml"
    policy.write_text("devices:\n  - name: phone\n    ip: 10.0.0.2\n    ldm: on\n")
    out = tmp_path / "out"
    code = main(["analyze", "--quiet", "--policy", str(policy), "--out", str(out), str(capture)])
    assert code == EXIT_VIOLATION
    (ecs,) = [json.loads(line) for line in (out / "alerts.ecs.jsonl").read_text().splitlines()]
    assert ecs["@timestamp"] == "9999-12-31T23:59:59.999999Z"
    (alert,) = [json.loads(line) for line in (out / "alerts.jsonl").read_text().splitlines()]
    assert alert["bytes_out"] == 270
