"""Packets and flows: the two data types every analyzer sees."""

from __future__ import annotations

import functools
import socket
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn, Protocol

if TYPE_CHECKING:
    from dronewatch.core.stream import TcpStream

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

    def vendor_elements(self) -> list[tuple[bytes, bytes]]:
        """(OUI + type byte, rest) of every vendor-specific element (ID 221, at least 4 bytes)
        of a beacon or probe response, after its 12 fixed bytes; the walk stops at an element
        cut by the frame's end."""
        body, out, pos = self.body, [], DOT11_FIXED_BYTES
        while pos + 2 <= len(body):
            eid, length = body[pos], body[pos + 1]
            end = pos + 2 + length
            if end > len(body):
                break
            if eid == DOT11_VENDOR_ELEMENT and length >= 4:
                out.append((body[pos + 2 : pos + 6], body[pos + 6 : end]))
            pos = end
        return out


SUBTYPE_PROBE_RESP, SUBTYPE_BEACON, SUBTYPE_ACTION = 5, 8, 13
"""802.11 management subtypes (IEEE 802.11 9.2.4.1.3)."""
DOT11_FIXED_BYTES = 12
"""A beacon's or probe response's fixed fields (timestamp, interval, capabilities) before its
elements."""
DOT11_VENDOR_ELEMENT = 221
"""The vendor-specific element ID; its first 3 bytes are the vendor's OUI."""


TUNNEL_KINDS = ("erspan_i", "erspan_ii", "erspan_iii", "gre", "vxlan", "geneve", "mpls", "pppoe")
"""The encapsulations the decoder removes (`Tunnel.kind`)."""


@dataclass(slots=True)
class Tunnel:
    """The encapsulation a packet arrived in (a remote mirror, an overlay, a shim): the outermost
    one when several are nested. The packet itself is the inner one."""

    kind: str
    """One of `TUNNEL_KINDS`."""
    src: bytes = b""
    """Outer source IP address (GRE, ERSPAN, VXLAN, Geneve); empty for MPLS and PPPoE, which sit
    in the packet's own Ethernet frame."""
    dst: bytes = b""
    """Outer destination IP address, as `src`."""
    vlan: int | None = None
    """VLAN id of the outer frame (the underlay's first tag), when tagged."""
    ident: int | None = None
    """VXLAN or Geneve VNI, ERSPAN session id, PPPoE session id, GRE key (plain GRE and ERSPAN
    type I, when the key is present), or the bottom MPLS label (the service label: the labels
    above it are switched hop by hop)."""


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
    """The frame's first VLAN tag; for a tunnelled packet, the inner frame's (or the original VLAN
    an ERSPAN header names), the outer frame's being `tunnel.vlan`."""
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
    tcp_ack: int = 0
    """Acknowledgement number (meaningful with the ACK flag)."""
    payload: bytes = b""
    """Transport payload as captured (may be shorter than the real one when snapped)."""
    payload_len: int = 0
    """Transport payload length from the headers."""
    fragment: bool = False
    """True for an IP fragment seen alone (no transport header); the decoder reassembles
    fragments (`dronewatch.capture.fragments`) and hands over whole datagrams instead."""
    dot11: Dot11Frame | None = None
    tunnel: Tunnel | None = None
    """The encapsulation the packet was taken out of, or None for a packet seen directly."""
    raw: bytes = b""
    """The frame as captured (link header included), kept for evidence."""
    gap: int = 0
    """In a TCP byte stream handed to an analyzer (`dronewatch.core.stream`): bytes of the
    direction missing right before this payload (the capture lost them); 0 when it follows on."""
    skipped: int = 0
    """In a TCP byte stream: bytes of the direction passed over right before this payload (and
    before `gap`), undelivered because its reader said it needs none of them (`Flow.pass_over`);
    a delivery with an empty payload says it at the flow's end."""
    bad_checksum: bool = False
    """A TCP segment or UDP datagram whose checksum is wrong (`dronewatch.capture.checksum`): its
    receiver dropped it, so it only marks its flow's history (`C`/`c`)."""


class FrameCounter(Protocol):
    """A drone-link follower's state for one flow, fed the flow's datagrams (`Flow.follow`)."""

    def feed(self, payload: bytes, from_orig: bool = True, /) -> int:
        """Count the frames of one datagram's payload (sent by the flow's originator or not):
        how many, or -1 when the protocol rejects it."""
        ...


class _NoFacts(dict[str, "str | list[str]"]):
    """The `meta` of every flow no analyzer has written a fact on yet: one empty dict they all
    share, which refuses writes (a dict of its own costs a flow 64 bytes, and most flows of a
    flood get no fact); `Flow.add_meta`, `add_meta_item` and `set_meta` give a flow its own."""

    def _refuse(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("Flow.meta is shared until a fact is written: use Flow.add_meta")

    __setitem__ = __delitem__ = setdefault = update = _refuse
    pop = popitem = clear = __ior__ = _refuse


_NO_FACTS = _NoFacts()


def _no_facts() -> dict[str, str | list[str]]:
    return _NO_FACTS


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
    tunnel: Tunnel | None = None
    """The encapsulation of the flow's first packet (`Packet.tunnel`); a flow is keyed by its
    inner 5-tuple, so both directions of a mirrored session are one flow whatever carried them."""
    iface: int = 0
    first_frame: int = 0
    """Frame number of the flow's first packet: the order flows were made in (the flow table's),
    which `analyze --workers` merges its processes' records by (`dronewatch.core.split`)."""
    orig_pkts: int = 0
    orig_bytes: int = 0
    """IP-level bytes sent by the originator."""
    orig_payload_bytes: int = 0
    """Payload bytes sent by the originator; for TCP, set when the flow ends to the sequence
    space it covered, as Zeek counts it (bytes the capture missed count, retransmissions do
    not); for ICMP, past the 8-byte header."""
    resp_pkts: int = 0
    resp_bytes: int = 0
    resp_payload_bytes: int = 0
    orig_bad_checksums: int = 0
    """Packets the originator sent with a wrong checksum (`Packet.bad_checksum`), not counted."""
    resp_bad_checksums: int = 0
    history: str = ""
    """Zeek's history letters (originator upper case, responder lower): for TCP S H A D F R T
    Q I as Zeek writes them, for UDP D when the originator sent a datagram and d when the
    responder did; `C`/`c` at the 1st, 10th, 100th... packet of a direction with a wrong
    checksum; `^` when the roles were flipped from the order the packets came in."""
    end_reason: str = ""
    """Why the flow was closed: tcp_close, tcp_attempt (a SYN nobody answered), reuse (a new
    connection on its 5-tuple), idle, active, evicted, eof."""
    inspected: int = 0
    """Payload packets handed to analyzers so far."""
    inspectors: tuple[Callable[[Flow, Packet], None], ...] = field(
        default=(), repr=False, compare=False
    )
    """The packet hooks of the analyzers that want this flow (`wants`), set by the engine."""
    inspector_names: tuple[str, ...] = field(default=(), repr=False, compare=False)
    """The names of those analyzers, in the same order."""
    end_hooks: tuple[tuple[str, Callable[[Flow], None]], ...] = field(
        default=(), repr=False, compare=False
    )
    """The `flow_end` hooks (name, hook) the flow's end calls if any of its packets was
    inspected: those of the analyzers that wanted it, and of those that keep flows without
    being handed their packets; set by the engine with `inspectors` (declines do not change
    it: an analyzer handed a packet may keep something of the flow)."""
    followers: tuple[str, ...] = ()
    """Analyzers that see every payload packet of the flow, past the inspected ones (drone links,
    long-lived DNS): set with `follow`."""
    counters: tuple[FrameCounter | None, ...] = field(default=(), repr=False, compare=False)
    """The followers' frame counters, in the order of `followers` (None for a follower without
    one): where every follower has a C counter, the bulk path feeds them itself."""
    service: str = ""
    """Application protocol recognised by an analyzer (tls, http, quic, dns, mqtt, mavlink...)."""
    meta: dict[str, str | list[str]] = field(default_factory=_no_facts)
    """What analyzers read off the flow, by field name (sni, http_host, mqtt_topics...): written
    through `add_meta`, `add_meta_item` and `set_meta` (until its first fact, a flow shares one
    empty, read-only dict)."""
    tcp: array[int] | None = field(default=None, repr=False, compare=False)
    """A TCP flow's connection state (`dronewatch.core.tcp`), shared with the C walk."""
    stream: TcpStream | None = field(default=None, repr=False, compare=False)
    """A TCP flow's byte streams while an analyzer reads them (`dronewatch.core.stream`)."""
    waiting: tuple[tuple[str, str, str, int], ...] = field(default=(), repr=False, compare=False)
    """The analyzers reading the flow that wait for something before they can read on, each
    with what it waits for ("ServerHello"), from which end ("orig", "resp" or ""), and within
    how many packets of the other end it must come (0: the engine's bound): set with `wait`,
    cleared with `stop_waiting`."""
    stalled: int = field(default=0, repr=False, compare=False)
    """Payload packets handed over in a row while every analyzer reading the flow waited (the
    engine's bound, `EngineOptions.stall_packets`)."""
    stalled_bytes: int = field(default=0, repr=False, compare=False)
    """Payload bytes of those packets (`EngineOptions.stall_bytes`)."""
    inspection: str = ""
    """Why the engine stopped inspecting the flow early ("" while it did not): which analyzers
    waited for what, for how many packets and bytes (`Engine`); the rest was only counted."""
    pass_request: tuple[str, bool, int] | None = field(default=None, repr=False, compare=False)
    """An analyzer's `pass_over` not yet taken up by the stream layer."""

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
        if self.waiting:
            self.stop_waiting(analyzer)

    def wait(self, analyzer: str, what: str, sender: str = "", within: int = 0) -> None:
        """The named analyzer can read no further until `what` comes (a handshake's answer, the
        other direction, bytes past a gap): it is waiting, not reading. While every analyzer
        reading the flow waits, the engine counts the payload packets it hands over, and past
        `EngineOptions.stall_packets` (or `stall_bytes`) it stops inspecting the flow, which the
        C walk then counts, and says so in the flow's record. An analyzer still measuring
        something (frames, a stream read in step, a behaviour sample) must not call this.

        `sender`: the end `what` must come from ("orig" or "resp"; "" for either). That end's
        packets do not count: they may be what it waits for, held by the stream layer until a
        hole before them is filled (a lost segment retransmitted).

        `within`: where the protocol says `what` must come before the other end sends more than
        this many payload packets (a TLS client sends nothing but its hello before the server's
        first flight), a bound below the engine's; the inspection stops at the next one. 0:
        the engine's bound alone. Never a bound when the engine has none (`stall_packets` 0)."""
        if within < 0:
            raise ValueError(f"Flow.wait: within {within!r} is negative")
        entry = (analyzer, what, sender, within)
        if entry not in self.waiting:
            if sender not in ("", "orig", "resp"):
                raise ValueError(f"Flow.wait: sender {sender!r} is not 'orig', 'resp' or ''")
            self.waiting = (*(w for w in self.waiting if w[0] != analyzer), entry)
            self.stalled = self.stalled_bytes = 0

    def pass_over(self, analyzer: str, from_orig: bool, seq: int) -> None:
        """The named analyzer, reading this TCP flow's byte stream, needs none of the
        direction's bytes before sequence number `seq` (a body of known length whose end it
        waits for). While it is the flow's only reader, the stream layer delivers nothing below
        `seq` and says how many bytes it passed over (`Packet.skipped`); the C walk counts those
        segments itself (`dronewatch.core.stream`)."""
        self.pass_request = (analyzer, from_orig, seq & 0xFFFFFFFF)

    def stop_waiting(self, analyzer: str) -> None:
        """The named analyzer got what it waited for (`wait`) and reads the flow again."""
        waiting = self.waiting
        if any(w[0] == analyzer for w in waiting):
            self.waiting = tuple(w for w in waiting if w[0] != analyzer)
            self.stalled = self.stalled_bytes = 0

    def _facts(self) -> dict[str, str | list[str]]:
        """The flow's own `meta`, made on its first fact."""
        meta = self.meta
        if meta is _NO_FACTS:
            meta = self.meta = {}
        return meta

    def add_meta(self, key: str, value: str) -> None:
        """Record a single-valued fact about the flow; the first value wins."""
        self._facts().setdefault(key, value)

    def set_meta(self, key: str, value: str) -> None:
        """Record a single-valued fact about the flow, replacing the one it had."""
        self._facts()[key] = value

    def add_meta_item(self, key: str, value: str, limit: int = 32) -> None:
        """Add to a list-valued fact (topics, queried names), keeping it bounded and unique."""
        items = self._facts().setdefault(key, [])
        if isinstance(items, list) and value not in items and len(items) < limit:
            items.append(value)
