"""Live capture at line rate: a capture replayed into a veth pair this test creates and read
through the AF_PACKET ring gives what `dronewatch analyze` gives for the file; the agent's
coverage makes a live verdict clean with zero drops and incomplete once the kernel drops; dumpcap
hands over between processes without losing or repeating a packet."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dronewatch.capture.base import CoverageMark, RawPacket
from dronewatch.capture.files import FileSource
from dronewatch.capture.live import LiveSource
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, Pipeline, run_source
from dronewatch.fastpath import NO_C_ENV, c_enabled
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.policy import Policy
from tests.live import LiveService, run_service, spawn_agent, sqlite_settings, stop_agent
from tests.pcaps import PCAPS, capture

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 to build a veth pair and capture on it",
)

SCENARIO = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
TIME_FIELDS = {"ts", "duration_s", "first_seen", "last_seen", "rtt_s", "uid", "uids", "end_ts"}
"""Fields that follow the packets' times (a flow's uid is made from its first time)."""
PHONE = "10.200.0.2"


@dataclass
class Veth:
    send: str
    recv: str

    def replay(self, frames: list[bytes]) -> None:
        """Send the frames into the pair's sending end, in order."""
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as tx:
            tx.bind((self.send, 0))
            for data in frames:
                tx.send(data)


@pytest.fixture
def veth() -> Iterator[Veth]:
    """A veth pair with IPv6 off (no router solicitations), deleted afterwards."""
    tag = uuid.uuid4().hex[:6]
    pair = Veth(f"dwls{tag}", f"dwlr{tag}")
    subprocess.run(
        ["ip", "link", "add", pair.send, "type", "veth", "peer", "name", pair.recv],
        check=True,
        capture_output=True,
    )
    try:
        for name in (pair.send, pair.recv):
            subprocess.run(
                ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], capture_output=True
            )
            subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
        yield pair
    finally:
        subprocess.run(["ip", "link", "del", pair.send], capture_output=True)


def config() -> AnalysisConfig:
    """What `dronewatch analyze --ldm on` uses."""
    return AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
    )


def by_log(records: list[Record], logs: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {log: [] for log in logs}
    for record in records:
        if record.log in out:
            out[record.log].append(record.to_dict())
    return out


def timeless(logs: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """The records without the fields that follow the packets' times, in a fixed order."""
    return {
        log: sorted(
            ({k: v for k, v in r.items() if k not in TIME_FIELDS} for r in records), key=repr
        )
        for log, records in logs.items()
    }


@pytest.mark.parametrize("compiled", [True, False], ids=["c", "no-c"])
def test_ring_gives_the_records_of_analyze(
    veth: Veth, compiled: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A capture replayed into a veth and read through the ring: the frames arrive whole and in
    order; the ring's batches through the C walk give exactly the records of the per-packet path
    on the same packets (without C, the ring's blocks are read packet by packet); and the flow,
    DNS, TLS and alert records are those `dronewatch analyze` gives for the file (but for the
    times, which are the replay's)."""
    if compiled and not c_enabled():
        pytest.fail("the C extension is not built")
    if not compiled:
        monkeypatch.setenv(NO_C_ENV, "1")
    path = capture(SCENARIO)
    original = list(FileSource(str(path)).packets())
    source = LiveSource([veth.recv], backend="afpacket", tick_s=0.2)
    source.start()
    live: list[Record] = []
    pipe = Pipeline(live.append, config())
    raws: list[RawPacket] = []
    batches = 0
    sender = threading.Thread(target=veth.replay, args=([p.data for p in original],))
    sender.start()
    deadline = time.monotonic() + 30
    items = source.batches()
    for item in items:
        if isinstance(item, PcapBatch):
            batches += 1
            raws += [item.raw(i) for i in range(len(item))]  # copies, kept past the block
            pipe.feed_batch(item)
        elif isinstance(item, RawPacket):
            raws.append(item)
            pipe.feed(item)
        if len(raws) >= len(original) or time.monotonic() > deadline:
            break
    source.stop()
    assert not [item for item in items if item is not None and not isinstance(item, CoverageMark)]
    sender.join()
    result = pipe.finish(source.stats)
    assert bool(batches) == compiled and result.capture.drops == 0
    assert [(r.data, r.wirelen) for r in raws] == [(p.data, p.wirelen) for p in original]
    per_packet: list[Record] = []
    one = Pipeline(per_packet.append, config())
    for raw in raws:
        one.feed(raw)
    one.finish(source.stats)
    assert [r.to_dict() for r in live] == [r.to_dict() for r in per_packet]
    analyzed: list[Record] = []
    run_source(FileSource(str(path)), analyzed.append, config())
    logs = ("flows", "dns", "tls", "alerts")
    want = timeless(by_log(analyzed, logs))
    assert all(want[log] for log in logs), "the scenario has records of every log"
    assert timeless(by_log(live, logs)) == want


def udp_frame(n: int, size: int = 200) -> bytes:
    """A UDP datagram from the phone to a host on its own subnet (it does not leave it)."""
    payload = n.to_bytes(4, "big") * ((size - 42) // 4)
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + 8 + len(payload),
        n & 0xFFFF,
        0,
        64,
        17,
        0,
        socket.inet_aton(PHONE),
        socket.inet_aton("10.200.0.1"),
    )
    udp = struct.pack("!HHHH", 40000 + n % 50, 9999, 8 + len(payload), 0)
    return b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00" + ip + udp + payload


def verdict(live: LiveService, device: int, start: float, end: float) -> dict[str, Any]:
    with live.client() as c:
        got: dict[str, Any] = c.get(
            f"/api/v1/devices/{device}/verdict", params={"start": start, "end": end}
        ).json()
    return got


def wait_covered(live: LiveService, device: int, until: float, timeout_s: float = 30) -> None:
    """Wait until the service holds coverage up to `until`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = verdict(live, device, until - 0.5, until)
        if got["coverage"]["captures"] and not got["coverage"]["gaps"]:
            return
        time.sleep(0.3)
    raise AssertionError(f"no coverage up to {until}: {got}")


def test_live_verdict_is_clean_without_drops_and_incomplete_with_them(
    veth: Veth, tmp_path: Path
) -> None:
    """The agent on the default backend reports coverage with drops every interval: a window it
    covered without a drop is 'nothing left the device' while it runs; once the kernel drops
    (the agent stopped, a burst overflowing its ring), a window over that is incomplete and says
    how many were dropped."""
    for live in run_service(sqlite_settings(tmp_path / "svc")):
        with live.client() as c:
            dev = c.post("/api/v1/devices", json={"ip": PHONE, "name": "pilot-phone"}).json()
            c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 0}).raise_for_status()
        device = int(dev["id"])
        agent = spawn_agent(
            "-i",
            veth.recv,
            "--api",
            live.url,
            "--key",
            live.key("agent", "sensor"),
            "--spool",
            str(tmp_path / "spool"),
            "--flush-s",
            "0.3",
            "--report-s",
            "0.5",
            "--buffer-mb",
            "2",
        )
        try:
            start = time.time()
            veth.replay([udp_frame(n) for n in range(200)])
            time.sleep(1.5)
            end = time.time()
            wait_covered(live, device, end)
            clean = verdict(live, device, start, end)
            # Stopped, the agent reads nothing while a burst fills its 2 MB ring and overflows.
            agent.send_signal(signal.SIGSTOP)
            burst_at = time.time()
            veth.replay([udp_frame(n, 1400) for n in range(6000)])
            agent.send_signal(signal.SIGCONT)
            time.sleep(1.5)
            after = time.time()
            wait_covered(live, device, after)
            dropped = verdict(live, device, burst_at - 1.0, after)
            still_clean = verdict(live, device, start, end)
        finally:
            log = stop_agent(agent)
        assert "stopped: " in log, log
        assert clean["verdict"] == "clean", clean
        assert clean["coverage"]["drops"] == 0 and clean["coverage"]["packets"] >= 200
        assert "nothing left the device" in clean["msg"]
        assert dropped["verdict"] == "incomplete", dropped
        drops = dropped["coverage"]["drops"]
        assert drops > 0 and f"{drops:,} drops" in dropped["msg"]
        assert still_clean["verdict"] == "clean"


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="needs dumpcap")
def test_dumpcap_hands_over_without_losing_or_repeating_a_packet() -> None:
    """With a coverage mark asked for every 0.2 s, dumpcap processes hand the capture over to
    each other while packets come: every packet is read once, and every mark knows the drops."""
    source = LiveSource(["lo"], backend="dumpcap", bpf="udp port 9977", tick_s=0.05)
    items = source.batches()
    sent = 3000

    def send() -> None:
        time.sleep(0.3)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for n in range(sent):
                s.sendto(b"dw%06d" % n, ("127.0.0.1", 9977))
                if n % 5 == 0:
                    time.sleep(0.003)  # about two seconds of packets
        time.sleep(1.5)
        source.stop()

    sender = threading.Thread(target=send)
    sender.start()
    seen: list[bytes] = []
    marks: list[CoverageMark] = []
    asked = time.monotonic()
    for item in items:
        if time.monotonic() - asked > 0.2:
            source.request_mark()
            asked = time.monotonic()
        if isinstance(item, CoverageMark):
            marks.append(item)
        elif isinstance(item, RawPacket):
            seen.append(item.data[-8:])
    sender.join()
    assert sorted(seen) == [b"dw%06d" % n for n in range(sent)]
    assert all(m.drops == 0 for m in marks)
    assert len([m for m in marks if 0 < m.packets < sent]) >= 2  # handed over mid-stream
    assert [m.packets for m in marks] == sorted(m.packets for m in marks)
    assert source.stats.drops == 0
