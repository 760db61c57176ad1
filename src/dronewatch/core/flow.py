"""Packets and flows: the two data types every analyzer sees."""

from __future__ import annotations

import functools
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

IP_PROTO_ICMP = 1
IP_PROTO_TCP = 6
IP_PROTO_UDP = 17
IP_PROTO_ICMP6 = 58

IP_PROTO_IGMP = 2

PROTO_NAMES = {
    IP_PROTO_ICMP: "icmp",
    IP_PROTO_IGMP: "igmp",
    IP_PROTO_TCP: "tcp",
    IP_PROTO_UDP: "udp",
    IP_PROTO_ICMP6: "icmp6",
}

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10


@functools.lru_cache(maxsize=65536)
def ip_str(addr: bytes) -> str:
    """Format a 4- or 16-byte address as text (memoised: a capture repeats its addresses)."""
    if len(addr) == 4:
        return socket.inet_ntop(socket.AF_INET, addr)
    if len(addr) == 16:
        return socket.inet_ntop(socket.AF_INET6, addr)
    return ""


def mac_str(mac: bytes) -> str:
    """Format a 6-byte MAC address as lower-case colon hex."""
    return mac.hex(":") if len(mac) == 6 else ""


@dataclass(slots=True)
class Dot11Frame:
    """An 802.11 management frame, handed to the beacon analyzers."""

    subtype: int
    """Management subtype (8 = beacon, 5 = probe response, 12 = deauthentication, 13 = action)."""
    addr2: bytes
    """Transmitter address."""
    bssid: bytes
    body: bytes
    """Frame body after the 24-byte management header (fixed fields, then IEs)."""
    rssi_dbm: int | None = None
    freq_mhz: int | None = None


@dataclass(slots=True)
class Packet:
    """One decoded packet. Addresses stay as bytes on the hot path."""

    ts: float
    """Capture time, seconds since the epoch (network time, never wall-clock)."""
    frame: int
    """1-based position of the packet in its source."""
    wirelen: int
    """Length on the wire in bytes."""
    caplen: int
    """Captured length in bytes (smaller than wirelen when cut by the snap length)."""
    linktype: int
    iface: int = 0
    src_mac: bytes = b""
    dst_mac: bytes = b""
    vlan: int | None = None
    ip_version: int = 0
    """4 or 6; 0 for a frame that is not IP."""
    src: bytes = b""
    dst: bytes = b""
    proto: int = 0
    sport: int = 0
    dport: int = 0
    ip_len: int = 0
    """Length of the IP packet (header included), from the IP header."""
    tcp_flags: int = 0
    tcp_seq: int = 0
    payload: bytes = b""
    """Transport payload as captured (may be shorter than the real one when snapped)."""
    payload_len: int = 0
    """Transport payload length from the headers."""
    fragment: bool = False
    """True for an IP fragment other than the first (no transport header)."""
    dot11: Dot11Frame | None = None
    raw: bytes = b""
    """The frame as captured (link header included), kept for evidence."""


class FrameCounter(Protocol):
    """A drone-link follower's state for one flow, fed the flow's datagrams (`Flow.follow`)."""

    def feed(self, payload: bytes, from_orig: bool = True, /) -> int:
        """Count the frames of one datagram's payload (sent by the flow's originator or not):
        how many, or -1 when the protocol rejects it."""
        ...


@dataclass(slots=True)
class Flow:
    """A bidirectional conversation keyed by its 5-tuple; the originator sent the first packet."""

    uid: str
    """Stable identifier derived from the 5-tuple and the first packet's time."""
    proto: int
    orig_h: bytes
    orig_p: int
    resp_h: bytes
    resp_p: int
    first_ts: float
    last_ts: float
    orig_mac: bytes = b""
    resp_mac: bytes = b""
    vlan: int | None = None
    iface: int = 0
    orig_pkts: int = 0
    orig_bytes: int = 0
    """IP-level bytes sent by the originator."""
    orig_payload_bytes: int = 0
    resp_pkts: int = 0
    resp_bytes: int = 0
    resp_payload_bytes: int = 0
    history: str = ""
    """Zeek-style TCP history letters: S h A D F R (originator upper case, responder lower)."""
    end_reason: str = ""
    """Why the flow was closed: tcp_close, idle, active, eof."""
    inspected: int = 0
    """Payload packets handed to analyzers so far."""
    inspectors: tuple[Callable[[Flow, Packet], None], ...] = field(
        default=(), repr=False, compare=False
    )
    """The packet hooks of the analyzers that want this flow (`wants`), set by the engine."""
    inspector_names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """The names of those analyzers, in the same order."""
    followers: tuple[str, ...] = ()
    """Analyzers that see every payload packet of the flow, past the inspected ones (drone links,
    long-lived DNS): set with `follow`."""
    counters: tuple[FrameCounter | None, ...] = field(default=(), repr=False, compare=False)
    """The followers' frame counters, in the order of `followers` (None for a follower without
    one): where every follower has a C counter, the bulk path feeds them itself."""
    service: str = ""
    """Application protocol recognised by an analyzer (tls, http, quic, dns, mqtt, mavlink...)."""
    meta: dict[str, str | list[str]] = field(default_factory=dict)
    """What analyzers read off the flow, by field name (sni, http_host, mqtt_topics...)."""

    @property
    def duration_s(self) -> float:
        return max(0.0, self.last_ts - self.first_ts)

    @property
    def orig_ip(self) -> str:
        return ip_str(self.orig_h)

    @property
    def resp_ip(self) -> str:
        return ip_str(self.resp_h)

    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto) or str(self.proto)

    @property
    def sticky(self) -> bool:
        """True when some analyzer follows the flow to its end."""
        return bool(self.followers)

    def follow(self, analyzer: str, counter: FrameCounter | None = None) -> None:
        """Have the named analyzer see every payload packet of this flow from now on; the others
        stop after the inspected packets.

        `counter`: the analyzer keeps the flow's state in this frame counter, and from now on its
        `packet` hook does nothing for the flow but `counter.feed(pkt.payload)` on a UDP payload.
        The bulk path may then feed a C counter (`_fastpath.FrameCounter`) itself
        instead of calling the hook."""
        if analyzer not in self.followers:
            self.followers = (*self.followers, analyzer)
            self.counters = (*self.counters, counter)

    def recognise_link(
        self, link: str, follower: str | None, counter: FrameCounter | None = None
    ) -> None:
        """A drone link was recognised on this flow: its service and `link` fact, and the
        analyzer to follow it to the end (None: not followed), with its frame counter (`follow`)."""
        self.service = link
        self.add_meta("link", link)
        if follower is not None:
            self.follow(follower, counter)

    def decline(self, analyzer: str) -> None:
        """The named analyzer is done with this flow (not its protocol, or nothing more to read):
        it sees no more of its packets. A flow nobody inspects any more costs only counters."""
        names = self.inspector_names
        if analyzer in names:
            i = names.index(analyzer)  # analyzer names are unique (`Engine` refuses two alike)
            self.inspector_names = names[:i] + names[i + 1 :]
            self.inspectors = self.inspectors[:i] + self.inspectors[i + 1 :]

    def add_meta(self, key: str, value: str) -> None:
        """Record a single-valued fact about the flow; the first value wins."""
        self.meta.setdefault(key, value)

    def add_meta_item(self, key: str, value: str, limit: int = 32) -> None:
        """Add to a list-valued fact (topics, queried names), keeping it bounded and unique."""
        items = self.meta.setdefault(key, [])
        if isinstance(items, list) and value not in items and len(items) < limit:
            items.append(value)
