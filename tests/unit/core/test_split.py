"""One capture file shared by several processes (`dronewatch.core.split`, `analyze --workers N`):
the records, alerts and coverage of one process, in its order."""

from __future__ import annotations

import functools
import io
import logging
import multiprocessing
import os
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether

from dronewatch.analyzers import AnalyzerOptions
from dronewatch.analyzers.dns import DnsOptions
from dronewatch.capture.files import FileSource
from dronewatch.core import split as split_module
from dronewatch.core.engine import EngineOptions, owner
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, Pipeline, RunResult, run_source
from dronewatch.core.split import run_split
from dronewatch.exceptions import CaptureError
from dronewatch.fastpath import native
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.policy import Policy
from dronewatch.output.summary import FlowRow, SummaryCollector
from tests.pcaps import PCAPS, THIRD_PARTY, all_captures
from tests.unit.capture.captures import pcap_bytes
from tests.unit.fastpath.test_bulk import EVENTS, LINKTYPES, body, frame, write_capture

PHONE, RESOLVER, CLOUD = "10.77.0.2", "10.77.0.1", "47.88.0.13"


@functools.cache
def config(
    engine: EngineOptions | None = None,
    analyzers: AnalyzerOptions | None = None,
    checksums: str = "ignore",
) -> AnalysisConfig:
    return AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
        engine=engine,
        analyzers=analyzers or AnalyzerOptions(),
        checksums=checksums,
    )


def one(path: Path, cfg: AnalysisConfig) -> tuple[list[Record], RunResult]:
    got: list[Record] = []
    return got, run_source(FileSource(str(path)), got.append, cfg)


def shared(path: Path, processes: int, cfg: AnalysisConfig) -> tuple[list[Record], RunResult]:
    """The records in the order they reach the caller: the processes' (`records`) and the
    parent's own (`emit`) into one list."""
    got: list[Record] = []
    result = run_split(str(path), processes, got.append, cfg, records=got.append)
    return got, result


def assert_same(path: Path, processes: int, cfg: AnalysisConfig | None = None) -> list[Record]:
    cfg = cfg or config()
    ref, ref_result = one(path, cfg)
    got, result = shared(path, processes, cfg)
    assert [r.log for r in got] == [r.log for r in ref]
    assert got == ref
    assert result.alerts == ref_result.alerts
    assert result.capture == ref_result.capture
    return ref


SAMPLE = [
    p
    for p in all_captures()
    if p.parent.name in ("scenarios", "lab", "tunnels")
    or p.parent == THIRD_PARTY / "zeek"
    or p.name.startswith("flight")
]


@pytest.mark.parametrize("processes", [2, 3])
@pytest.mark.parametrize("capture", [pytest.param(p, id=str(p.relative_to(PCAPS))) for p in SAMPLE])
def test_shared_processes_write_what_one_writes(capture: Path, processes: int) -> None:
    assert_same(capture, processes)


@pytest.mark.skipif(native() is None, reason="the C extension is not built")
@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from([4, 6]),
    st.integers(0, 255),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 65535),
    st.binary(min_size=16, max_size=16),
    st.integers(0, 65535),
)
def test_the_walk_hashes_a_key_as_owner_does(
    version: int, proto: int, low: bytes, low_port: int, high: bytes, high_port: int
) -> None:
    """The C walk picks a row's process by the CRC-32 of its key row, eight bytes a step: zlib's,
    which `owner` takes, for any key."""
    size = 4 if version == 4 else 16
    a, b = low[:size], high[:size]
    row = (
        bytes((version, proto))
        + a.ljust(16, b"\0")
        + low_port.to_bytes(2, "big")
        + b.ljust(16, b"\0")
        + high_port.to_bytes(2, "big")
    )
    module = native()
    assert module is not None
    crc = module.key_crc(row)
    assert crc == zlib.crc32(row)
    for processes in (2, 3, 7):
        assert owner((proto, a, low_port, b, high_port), processes) == crc % processes


def test_the_sample_has_flows_of_every_process() -> None:
    """The captures above give each of 3 processes flows to make: the merge has work to do."""
    busy = [
        p
        for p in SAMPLE
        if len({owner(_key(f), 3) for f in one(p, config())[0] if isinstance(f, FlowRecord)}) == 3
    ]
    assert len(busy) >= 10


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=EVENTS,
    linktype=st.sampled_from(LINKTYPES),
    ng=st.booleans(),
    processes=st.sampled_from([2, 3]),
)
def test_random_traffic_shared_as_one_process_writes_it(
    tmp_path: Path,
    events: list[tuple[int, bool, float, str, int, int, int | None]],
    linktype: int,
    ng: bool,
    processes: int,
) -> None:
    """Random traffic (the bulk path's test traffic: flows that open, close, idle out and are
    cut by the active timeout, with sweeps every second) in any link type and encapsulation:
    the merged records are one process's, in order."""
    ts = 1_700_000_000.0
    frames = []
    for index, out, gap, flags, size, wrap, snap in events:
        ts += gap
        frames.append((ts, frame(linktype, wrap, body(index, out, flags, size), snap)))
    path = tmp_path / ("random.pcapng" if ng else "random.pcap")
    write_capture(path, frames, linktype, ng)
    engine = EngineOptions(
        inspect_packets=2, udp_idle_s=10.0, tcp_idle_s=20.0, active_s=30.0, sweep_every_s=1.0
    )
    assert_same(path, processes, config(engine))


def _key(f: FlowRecord) -> tuple[int, bytes, int, bytes, int]:
    import ipaddress

    proto = {"tcp": 6, "udp": 17, "icmp": 1}.get(f.proto, 0)
    a = (ipaddress.ip_address(f.orig_h).packed, f.orig_p)
    b = (ipaddress.ip_address(f.resp_h).packed, f.resp_p)
    lo, hi = sorted((a, b))
    return (proto, lo[0], lo[1], hi[0], hi[1])


def _lookup_then_upload(sport: int) -> list[tuple[float, bytes]]:
    """A DNS answer naming a DJI address, then a TCP upload to it without a name of its own."""
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    back = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    query = DNS(id=7, rd=1, qd=DNSQR(qname="flysafe-api.dji.com"))
    answer = DNS(
        id=7,
        qr=1,
        qd=DNSQR(qname="flysafe-api.dji.com"),
        an=DNSRR(rrname="flysafe-api.dji.com", rdata=CLOUD, ttl=300),
    )
    frames = [
        (1.0, raw(eth / IP(src=PHONE, dst=RESOLVER) / UDP(sport=sport, dport=53) / query)),
        (1.01, raw(back / IP(src=RESOLVER, dst=PHONE) / UDP(sport=53, dport=sport) / answer)),
        (1.1, raw(eth / IP(src=PHONE, dst=CLOUD) / TCP(sport=40000, dport=443, flags="S"))),
        (1.2, raw(back / IP(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=40000, flags="SA"))),
        (1.3, raw(eth / IP(src=PHONE, dst=CLOUD) / TCP(sport=40000, dport=443, flags="A", seq=1))),
    ]
    for i in range(5):
        data = TCP(sport=40000, dport=443, flags="PA", seq=1 + i * 1000) / (b"\x17" * 1000)
        frames.append((1.4 + i / 10, raw(eth / IP(src=PHONE, dst=CLOUD) / data)))
    return frames


def test_a_dns_answer_names_a_flow_another_process_makes(tmp_path: Path) -> None:
    """The DNS flow and the upload it names hash to different processes: the upload's process
    makes the DNS flow too, for its answer (`Share.every_port`), and writes nothing of it."""
    upload = _key_of(PHONE, 40000, CLOUD, 443, 6)
    sport = next(
        p
        for p in range(33000, 34000)
        if owner(_key_of(PHONE, p, RESOLVER, 53, 17), 2) != owner(upload, 2)
    )
    path = tmp_path / "lookup.pcap"
    path.write_bytes(pcap_bytes(_lookup_then_upload(sport)))
    records = assert_same(path, 2)
    flows = {f.resp_p: f for f in records if isinstance(f, FlowRecord)}
    assert flows[443].server_name == "flysafe-api.dji.com"
    assert flows[443].vendor == "DJI"
    assert sum(1 for r in records if r.log == "dns") == 1


def _dns_over_tcp(sport: int) -> list[tuple[float, bytes]]:
    """The lookup of `_lookup_then_upload` over TCP: handshake, query, answer (each message
    after its two-byte length), then the upload."""
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    back = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    udp = _lookup_then_upload(sport)
    query, answer = (bytes(Ether(data)[UDP].payload) for _, data in udp[:2])

    def seg(out: bool, flags: str, seq: int, ack: int, data: bytes = b"") -> bytes:
        ip = IP(src=PHONE, dst=RESOLVER) if out else IP(src=RESOLVER, dst=PHONE)
        ports = (sport, 53) if out else (53, sport)
        tcp = TCP(sport=ports[0], dport=ports[1], flags=flags, seq=seq, ack=ack)
        return raw((eth if out else back) / ip / tcp / data)

    q, a = len(query).to_bytes(2, "big") + query, len(answer).to_bytes(2, "big") + answer
    frames = [
        (0.90, seg(True, "S", 100, 0)),
        (0.91, seg(False, "SA", 500, 101)),
        (0.92, seg(True, "A", 101, 501)),
        (0.93, seg(True, "PA", 101, 501, q)),
        (0.95, seg(False, "PA", 501, 101 + len(q), a)),
    ]
    return frames + udp[2:]


def _bad_checksums(frames: list[tuple[float, bytes]]) -> list[tuple[float, bytes]]:
    """The frames, and after them a copy of every port-53 frame with a wrong transport
    checksum."""
    out = list(frames)
    for ts, data in frames:
        pkt = Ether(data)
        layer = pkt[UDP] if UDP in pkt else pkt[TCP]
        if 53 in (layer.sport, layer.dport):
            layer.chksum = (Ether(raw(pkt))[type(layer)].chksum + 1) & 0xFFFF
            out.append((ts + 0.001, raw(pkt)))
    return sorted(out, key=lambda f: f[0])


@pytest.mark.parametrize(
    ("transport", "dns", "checksums"),
    [
        ("udp", DnsOptions(), "ignore"),  # read for its answers only (`FactsHook`)
        ("udp", DnsOptions(follow_flow=False), "ignore"),  # the DNS flow made in both
        ("tcp", DnsOptions(), "ignore"),  # a TCP flow is always made: its stream is read
        ("udp", DnsOptions(), "verify"),
        ("tcp", DnsOptions(), "verify"),
    ],
)
def test_another_process_learns_a_dns_answer_however_it_came(
    tmp_path: Path, transport: str, dns: DnsOptions, checksums: str
) -> None:
    """However the other process reads the DNS flow (without the flow, or making it for the
    DNS analyzer), the upload it names gets the name, and the counts of the capture record are
    one process's (a packet with a wrong checksum is counted once, by the flow's owner)."""
    upload = _key_of(PHONE, 40000, CLOUD, 443, 6)
    proto = 17 if transport == "udp" else 6
    sport = next(
        p
        for p in range(33000, 34000)
        if owner(_key_of(PHONE, p, RESOLVER, 53, proto), 2) != owner(upload, 2)
    )
    frames = _lookup_then_upload(sport) if transport == "udp" else _dns_over_tcp(sport)
    good = len(frames)
    if checksums == "verify":
        frames = _bad_checksums(frames)
    path = tmp_path / "lookup.pcap"
    path.write_bytes(pcap_bytes(frames))
    records = assert_same(path, 2, config(None, AnalyzerOptions(dns=dns), checksums))
    flows = {f.resp_p: f for f in records if isinstance(f, FlowRecord)}
    assert flows[443].server_name == "flysafe-api.dji.com"
    assert [r.query for r in records if r.log == "dns"] == ["flysafe-api.dji.com"]
    capture = next(r for r in records if r.log == "capture")
    assert capture.ip_packets == len(frames)
    assert (capture.bad_checksums or 0) == len(frames) - good


def _key_of(a: str, ap: int, b: str, bp: int, proto: int) -> tuple[int, bytes, int, bytes, int]:
    import ipaddress

    x, y = (ipaddress.ip_address(a).packed, ap), (ipaddress.ip_address(b).packed, bp)
    lo, hi = sorted((x, y))
    return (proto, lo[0], lo[1], hi[0], hi[1])


def test_a_file_that_cannot_be_read_is_a_capture_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="missing.pcap"):
        run_split(str(tmp_path / "missing.pcap"), 2, lambda r: None, config())


def test_a_process_that_fails_is_named_not_lost(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in a process: the run fails with a one-line reason; the traceback is logged."""

    def broken(self: Pipeline, stats: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(Pipeline, "end", broken)  # the forked processes inherit it
    capture = PCAPS / "scenarios" / "tello_sdk.pcap"
    with caplog.at_level(logging.ERROR), pytest.raises(CaptureError) as err:
        run_split(str(capture), 2, lambda r: None, config())
    assert "failed: RuntimeError: boom" in str(err.value)
    assert "\n" not in str(err.value)
    assert "Traceback" in caplog.text


def test_a_process_killed_midway_ends_the_run_with_a_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A process that dies without a word (the kernel's OOM killer, a signal): its pipe closes,
    the parent stops waiting for it and fails with a one-line reason instead of hanging."""

    def killed(self: Pipeline, stats: object) -> None:
        os._exit(9)

    monkeypatch.setattr(Pipeline, "end", killed)  # the forked processes inherit it
    capture = PCAPS / "scenarios" / "tello_sdk.pcap"
    with pytest.raises(CaptureError, match="ended without a result") as err:
        run_split(str(capture), 2, lambda r: None, config())
    assert "\n" not in str(err.value)


def test_one_process_is_not_a_split() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        run_split(str(PCAPS / "scenarios" / "tello_sdk.pcap"), 1, lambda r: None, config())


def test_pipes_to_the_parent_hold_several_batches() -> None:
    """Each process's pipe is widened (Linux `F_SETPIPE_SZ`) so that a batch of record lines is
    written without waiting for the parent's reader thread; a refused size leaves the pipe as it
    was, never an error."""
    fcntl = pytest.importorskip("fcntl")
    if not hasattr(fcntl, "F_GETPIPE_SZ"):
        pytest.skip("no F_GETPIPE_SZ on this platform")
    here, there = multiprocessing.Pipe(duplex=False)
    try:
        before = fcntl.fcntl(here.fileno(), fcntl.F_GETPIPE_SZ)
        split_module._widen(here)
        after = fcntl.fcntl(here.fileno(), fcntl.F_GETPIPE_SZ)
        assert after >= min(split_module.PIPE_BYTES, split_module._pipe_max())
        assert after > before
    finally:
        here.close()
        there.close()


def _http_at_the_end(sport: int, answered: bool, t0: float) -> list[tuple[float, bytes]]:
    """An HTTP flow still open at the capture's end: a GET left unanswered (its record is made by
    the analyzer's `flow_end`), or answered with a body whose middle segment the capture missed,
    so the last segment waits above the hole until the flow ends (its record is made as the
    stream layer gives the hole up, before any `flow_end`)."""
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    back = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")

    def up(t: float, flags: str, seq: int, payload: bytes = b"") -> tuple[float, bytes]:
        seg = (
            eth / IP(src=PHONE, dst=CLOUD) / TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=1)
        )
        return t, raw(seg / payload if payload else seg)

    def down(t: float, flags: str, seq: int, payload: bytes = b"") -> tuple[float, bytes]:
        seg = back / IP(src=CLOUD, dst=PHONE) / TCP(sport=80, dport=sport, flags=flags, seq=seq)
        return t, raw(seg / payload if payload else seg)

    request = b"GET /db HTTP/1.1\r\nHost: tiles.example\r\n\r\n"
    frames = [up(t0, "S", 0), down(t0 + 0.01, "SA", 0), up(t0 + 0.02, "A", 1)]
    frames.append(up(t0 + 0.03, "PA", 1, request))
    if answered:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
        frames.append(down(t0 + 0.04, "A", 1, head + b"a" * 10))
        # b"b" * 10 from 1 + len(head) + 10 is lost; the last ten wait above the hole.
        frames.append(down(t0 + 0.06, "PA", 1 + len(head) + 20, b"c" * 10))
    return frames


def test_records_a_flows_last_bytes_make_fall_where_it_ends(tmp_path: Path) -> None:
    """Two HTTP flows end with the capture, the first made (unanswered) writing its record in
    its analyzer's `flow_end`, the second as its stream's held bytes are given up: shared by
    processes that each make one of them, the records come in one process's order, each at
    its own flow's end."""
    first_key = _key_of(PHONE, 41000, CLOUD, 80, 6)
    sport = next(
        p
        for p in range(41001, 42000)
        if owner(_key_of(PHONE, p, CLOUD, 80, 6), 2) != owner(first_key, 2)
    )
    frames = sorted(_http_at_the_end(41000, False, 1.0) + _http_at_the_end(sport, True, 2.0))
    path = tmp_path / "ends.pcap"
    path.write_bytes(pcap_bytes(frames))
    records = assert_same(path, 2)
    http = [r.to_dict() for r in records if r.log == "http"]
    assert [(h["orig_p"], h.get("response_body_len")) for h in http] == [(41000, 0), (sport, 30)]


@pytest.mark.parametrize(
    "capture",
    [
        PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap",
        PCAPS / "lab" / "dns.pcap",
        THIRD_PARTY / "zeek" / "dhcp" / "dhcp.pcap",
    ],
    ids=lambda p: p.name,
)
def test_the_summary_of_shared_processes_is_one_process_summary(capture: Path) -> None:
    """With the terminal summary as the records' taker, the processes send it only the records
    it reads (of each flow record what it reads, `FlowRow`; DHCP names, broadcasts) and count
    the others themselves: the summary printed is one process's, its count of every log
    included."""
    cfg = config()
    ref = SummaryCollector()
    run_source(FileSource(str(capture)), ref.add, cfg)
    got = SummaryCollector()
    handed: list[Record] = []

    def take(record: Record) -> None:
        handed.append(record)
        got.add(record)

    run_split(str(capture), 2, got.add, cfg, records=take, summary=got)
    assert all(SummaryCollector.reads(r) for r in handed)
    assert any(isinstance(r, FlowRow) for r in handed)
    assert not any(isinstance(r, FlowRecord) for r in handed)
    assert got.logs == ref.logs and sum(got.logs.values()) > len(handed)
    outs = []
    for collector in (ref, got):
        out = io.StringIO()
        collector.render(out)
        outs.append(out.getvalue())
    assert outs[0] == outs[1]
