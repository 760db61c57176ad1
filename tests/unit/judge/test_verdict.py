"""The one verdict rule: what a capture could not see keeps a verdict from being clean."""

from __future__ import annotations

from pathlib import Path

import dpkt
import pytest

from dronewatch.analyzers.dji_wifi import DjiWifiAnalyzer
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import STRICT_ANALYZERS_ENV
from dronewatch.core.flow import Flow
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.alert import NOTE_ATTEMPT, NOTE_DNS, NOTE_LEAK
from dronewatch.judge.monitor import VerdictRecord
from dronewatch.judge.policy import Policy, with_devices
from dronewatch.judge.verdict import CLEAN, INCOMPLETE, VIOLATION, Coverage, Sent, decide
from tests.pcaps import PCAPS, capture

CLEAN_CAPTURE = PCAPS / "scenarios" / "dji_fly_ldm_on_clean.pcap"


@pytest.mark.parametrize(
    ("coverage", "verdict", "says"),
    [
        (Coverage(100, 0), CLEAN, "100 packets inspected, 0 drops)"),
        (Coverage(100, None), CLEAN, "drops not reported by the capture"),
        (Coverage(100, 3), INCOMPLETE, "3 drops"),
        (Coverage(100, 0, complete=False), INCOMPLETE, "capture damaged"),
        (Coverage(100, 0, analyzer_errors=2), INCOMPLETE, "2 analyzer failures"),
        (Coverage(100, 0, captures=0), INCOMPLETE, "in 0 captures"),
        (Coverage(100, 0, captures=2, gaps=((10.0, 40.0),)), INCOMPLETE, "1 coverage gaps (30 s"),
        (Coverage(100, 0, evicted_flows=1_500), INCOMPLETE, "1,500 flows evicted from a full"),
        (Coverage(100, 0, captures=1, evicted_flows=7), INCOMPLETE, "7 flows evicted from a full"),
        (Coverage(100, 0, bad_checksums=2_345), CLEAN, "2,345 packets with a wrong checksum"),
        (Coverage(100, 3, bad_checksums=1), INCOMPLETE, "1 packets with a wrong checksum dropped"),
        (
            Coverage(0, 0, encrypted_frames=129),
            INCOMPLETE,
            "nothing readable left the device (0 packets inspected, 0 drops, 129 encrypted 802.11 "
            "data frames sent by the device could not be read",
        ),
        (Coverage(0, 0, seen=False), INCOMPLETE, "the capture shows nothing of the device (0 p"),
        (Coverage(0, 0), CLEAN, "nothing left the device (0 packets inspected, 0 drops)"),
    ],
)
def test_nothing_left_is_clean_only_with_full_coverage(
    coverage: Coverage, verdict: str, says: str
) -> None:
    """With no alert, the verdict is clean only when nothing was missed, and says what was."""
    got = decide(True, [], [], coverage)
    assert got.verdict == verdict and says in got.msg
    assert ("not proof" in got.msg) == (verdict == INCOMPLETE)


def test_violation_counts_leaks_and_lookups() -> None:
    """Alerts make a violation whatever the coverage; lookups are counted apart from bytes."""
    alerts = [
        Sent(NOTE_LEAK, "telemetry", "a.example", 100),
        Sent(NOTE_LEAK, "maps", "b.example", 50),
        Sent(NOTE_DNS, "telemetry", "a.example", 0),
    ]
    got = decide(True, alerts, [], Coverage(10, 5))
    assert (got.verdict, got.bytes_out, got.destinations, got.vendor_dns_lookups) == (
        VIOLATION,
        150,
        2,
        1,
    )
    assert got.msg.startswith("LDM on: 150 bytes to 2 destinations in 2 categories; 1 vendor")


def _broken_flow_end(self: DjiWifiAnalyzer, flow: Flow) -> None:
    raise RuntimeError("dji_wifi analyzer bug")


def test_a_failing_analyzer_leaves_a_clean_capture_incomplete(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The LDM-on clean scenario is clean; with the analyzer of its DJI Wi-Fi link failing it is
    incomplete and says how many analyzer calls failed."""

    def verdicts() -> list[VerdictRecord]:
        records: list[Record] = []
        config = AnalysisConfig(policy=Policy().with_ldm(True))
        run_source(FileSource(str(capture(CLEAN_CAPTURE))), records.append, config)
        return [r for r in records if isinstance(r, VerdictRecord)]

    assert {v.verdict for v in verdicts()} == {CLEAN}
    monkeypatch.delenv(STRICT_ANALYZERS_ENV)
    monkeypatch.setattr(DjiWifiAnalyzer, "flow_end", _broken_flow_end)
    broken = verdicts()
    assert broken and {v.verdict for v in broken} == {INCOMPLETE}
    assert all("analyzer failures (inspection incomplete)" in v.msg for v in broken)


def test_attempts_are_named_and_leave_the_verdict_clean() -> None:
    """Attempts alone: clean (full coverage), the sentence names what was tried, the rest
    counted; with a violation they are named after it."""
    full = Coverage(packets=10, drops=0)
    tried = [Sent(NOTE_ATTEMPT, "other", f"host{i}.example", 0) for i in range(7)]
    v = decide(True, tried, [], full)
    assert (v.verdict, v.attempts) == ("clean", 7)
    assert v.msg == (
        "LDM on: attempted to reach host0.example, host1.example, host2.example, host3.example, "
        "host4.example and 2 more; nothing was delivered (10 packets inspected, 0 drops)"
    )
    leak = Sent(NOTE_LEAK, "telemetry", "api.example", 5_000)
    v = decide(True, [leak, *tried[:1]], [], full)
    assert v.verdict == "violation"
    assert v.msg.startswith(
        "LDM on: 5,000 bytes to 1 destinations in 1 categories; attempted to reach host0.example"
    )


def _with_one_corrupt_datagram(src: Path, dst: Path) -> None:
    """`src` with one byte changed in its first UDP payload that carries a checksum, so that
    datagram's checksum is wrong, every other frame as it was."""
    with src.open("rb") as fin, dst.open("wb") as fout:
        reader = dpkt.pcap.Reader(fin)
        writer = dpkt.pcap.Writer(fout, linktype=reader.datalink())
        done = False
        for ts, frame in reader:
            ip = dpkt.ethernet.Ethernet(frame).data
            udp = ip.data if isinstance(ip, dpkt.ip.IP) else None
            if not done and isinstance(udp, dpkt.udp.UDP) and udp.data and udp.sum:
                frame = frame[:-1] + bytes([frame[-1] ^ 0x5A])
                done = True
            writer.writepkt(frame, ts)
    assert done


def test_packets_dropped_for_a_wrong_checksum_are_named(tmp_path: Path) -> None:
    """The clean LDM-on scenario with one datagram's checksum broken: with `--checksums verify`
    that packet is dropped unread, as its receiver dropped it, and each verdict names it and
    stays clean; with `ignore` (the default) it is read and no verdict speaks of checksums."""
    broken = tmp_path / "one_bad_checksum.pcap"
    _with_one_corrupt_datagram(capture(CLEAN_CAPTURE), broken)

    def verdicts(checksums: str) -> list[VerdictRecord]:
        records: list[Record] = []
        config = AnalysisConfig(policy=Policy().with_ldm(True), checksums=checksums)
        result = run_source(FileSource(str(broken)), records.append, config)
        assert result.capture.bad_checksums == (1 if checksums == "verify" else None)
        return [r for r in records if isinstance(r, VerdictRecord)]

    checked = verdicts("verify")
    assert checked and {v.verdict for v in checked} == {CLEAN}
    assert all("1 packets with a wrong checksum dropped unread" in v.msg for v in checked)
    ignored = verdicts("ignore")
    assert ignored and all("checksum" not in v.msg for v in ignored)


WPA_CAPTURE = PCAPS / "third_party" / "wsensing2021" / "Attack_De-Authentication_01.pcapng"
"""A monitor-mode capture of a drone's protected Wi-Fi: every data frame is encrypted."""


@pytest.mark.parametrize("bulk", [False, True])
def test_a_device_whose_frames_are_encrypted_is_not_judged_clean(bulk: bool) -> None:
    """A device named by its MAC in a capture of a protected network: the 129 encrypted data
    frames it sent (what `tshark -Y "wlan.fc.protected==1 && wlan.sa==6c:ad:f8:7e:54:c3"`
    counts) could have carried anything, so its verdict is incomplete and says why; a MAC the
    capture does not show is incomplete too, never clean. Both paths count the same."""
    records: list[Record] = []
    policy = with_devices(Policy().with_ldm(True), ["6c:ad:f8:7e:54:c3", "02:00:00:00:00:99"])
    run_source(
        FileSource(str(capture(WPA_CAPTURE))),
        records.append,
        AnalysisConfig(policy=policy, bulk=bulk),
    )
    verdicts = {r.device_ip: r for r in records if isinstance(r, VerdictRecord)}
    sent = verdicts["6c:ad:f8:7e:54:c3"]
    assert sent.verdict == INCOMPLETE and sent.msg.startswith(
        "LDM on: nothing readable left the device (0 packets inspected, 0 drops, 129 encrypted "
    )
    absent = verdicts["02:00:00:00:00:99"]
    assert absent.verdict == INCOMPLETE
    assert absent.msg.startswith("LDM on: the capture shows nothing of the device")
