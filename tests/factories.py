"""Builders for packets, flows and an analyzer context, to drive analyzer hooks directly."""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from dronewatch.capture.decode import Decoder
from dronewatch.capture.files import FileSource
from dronewatch.core.engine import Engine
from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Dot11Frame, Flow, Packet
from dronewatch.core.hooks import Context, Record

R = TypeVar("R", bound=Record)


def ip(text: str) -> bytes:
    """Pack a textual IPv4 or IPv6 address."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    return socket.inet_pton(family, text)


class MemoryDns:
    """A DNS cache kept in a dict."""

    def __init__(self) -> None:
        self.names: dict[bytes, str] = {}

    def name_for(self, addr: bytes) -> str | None:
        return self.names.get(addr)

    def remember(self, addr: bytes, name: str, ts: float) -> None:
        self.names[addr] = name


class RecordingContext(Context):
    """A context that keeps every emitted record in `records`."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        super().__init__(emit=self.records.append, dns=MemoryDns())

    def of(self, log: str) -> list[Record]:
        """The records written to one log."""
        return [r for r in self.records if r.log == log]


def make_packet(
    payload: bytes = b"",
    *,
    src: str = "192.168.1.3",
    dst: str = "203.0.113.10",
    sport: int = 50000,
    dport: int = 443,
    proto: int = IP_PROTO_TCP,
    ts: float = 1_700_000_000.0,
    tcp_flags: int = 0x18,
    tcp_seq: int = 1000,
    frame: int = 1,
) -> Packet:
    """A decoded IP packet carrying `payload`."""
    version = 6 if ":" in src else 4
    header = 20 if proto == IP_PROTO_TCP else 8
    ip_len = len(payload) + header + (40 if version == 6 else 20)
    return Packet(
        ts=ts,
        frame=frame,
        wirelen=ip_len + 14,
        caplen=ip_len + 14,
        linktype=1,
        ip_version=version,
        src=ip(src),
        dst=ip(dst),
        proto=proto,
        sport=sport,
        dport=dport,
        ip_len=ip_len,
        tcp_flags=tcp_flags if proto == IP_PROTO_TCP else 0,
        tcp_seq=tcp_seq,
        payload=payload,
        payload_len=len(payload),
    )


def make_udp(payload: bytes = b"", **kwargs: object) -> Packet:
    """A decoded UDP packet carrying `payload`."""
    kwargs.setdefault("dport", 53)
    return make_packet(payload, proto=IP_PROTO_UDP, **kwargs)  # type: ignore[arg-type]


def make_flow(pkt: Packet, uid: str = "CTESTFLOW000000001") -> Flow:
    """The flow that `pkt` opens, with `pkt`'s sender as originator."""
    return Flow(
        uid=uid,
        proto=pkt.proto,
        orig_h=pkt.src,
        orig_p=pkt.sport,
        resp_h=pkt.dst,
        resp_p=pkt.dport,
        first_ts=pkt.ts,
        last_ts=pkt.ts,
        orig_mac=pkt.src_mac,
        resp_mac=pkt.dst_mac,
    )


def capture_records(path: Path, make: Callable[[Context], object]) -> list[Record]:
    """Every record the analyzer built by `make(ctx)` writes for a capture read through the
    decoder and the engine."""
    ctx = RecordingContext()
    engine = Engine([make(ctx)], ctx)  # type: ignore[list-item]
    for pkt in decoded(path):
        engine.process(pkt)
    engine.finish()
    return ctx.records


def pipeline_records(path: Path, kind: type[R]) -> list[R]:
    """The records of one kind the whole analysis (`run_source`, every analyzer, the judge)
    writes for a capture, in the order written."""
    from dronewatch.core.pipeline import AnalysisConfig, run_source

    out: list[R] = []
    run_source(
        FileSource(str(path)),
        lambda r: out.append(r) if isinstance(r, kind) else None,
        AnalysisConfig(),
    )
    return out


def records_by_log(path: Path, processes: int = 1, *, bulk: bool = True) -> dict[str, list[Record]]:
    """Every record the whole analysis writes for a capture, by log: in one process (`bulk`:
    through the C walk, else packet by packet) or shared by `processes` (`run_split`)."""
    from dronewatch.core.pipeline import AnalysisConfig, run_source
    from dronewatch.core.split import run_split

    out: dict[str, list[Record]] = {}

    def emit(r: Record) -> None:
        out.setdefault(r.log, []).append(r)

    config = AnalysisConfig(bulk=bulk)
    if processes == 1:
        run_source(FileSource(str(path)), emit, config)
    else:
        run_split(str(path), processes, emit, config, records=emit)
    return out


@functools.lru_cache(maxsize=16)
def decoded(path: Path) -> tuple[Packet, ...]:
    """A capture's packets as the decoder gives them, decoded once per test process (the engine
    and the analyzers copy a packet they change: `dronewatch.core.stream`). The 216,000-packet
    flight capture is read by several analyzers' tests, each with both frame counters."""
    decoder = Decoder()
    packets = (decoder.decode(raw) for raw in FileSource(str(path)).packets())
    return tuple(pkt for pkt in packets if pkt is not None)


def make_beacon(
    body: bytes, *, addr2: bytes = b"\x60\x60\x1f\x00\x00\x01", ts: float = 1.0
) -> Packet:
    """An 802.11 beacon whose body (fixed fields + IEs) is `body`."""
    return Packet(
        ts=ts,
        frame=1,
        wirelen=len(body) + 24,
        caplen=len(body) + 24,
        linktype=127,
        dot11=Dot11Frame(subtype=8, addr2=addr2, bssid=addr2, body=body),
    )


__all__ = [
    "MemoryDns",
    "RecordingContext",
    "capture_records",
    "decoded",
    "ip",
    "make_beacon",
    "make_flow",
    "make_packet",
    "make_udp",
]
