"""The C walk's contract with the engine, driven directly: what it counts, what it hands back."""

from __future__ import annotations

from socket import AF_INET6, inet_pton

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.compat import raw
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import ARP, Dot1Q, Ether

from dronewatch.capture.base import RawPacket
from dronewatch.capture.decode import IP6_READ_PAST, Decoder
from dronewatch.capture.encap import is_aruba_wlan
from dronewatch.core.community_id import ICMP4_PAIRS, ICMP6_PAIRS
from dronewatch.core.flow import Flow
from dronewatch.core.hooks import FrameInterest
from dronewatch.fastpath import _fastpath
from dronewatch.geoip.local import builtin_local_v4
from tests.unit.capture.links import (
    ACK,
    BEACON,
    ETHERNET,
    OTHER,
    STATION,
    amsdu_subframes,
    dot11,
    msdu,
    radiotap,
)

PHONE, DRONE = "192.168.2.20", "192.168.2.1"
PHONE6, DRONE6 = "fd00::14", "fd00::1"
LIMIT = 4


def datagram(vlan: bool = False) -> bytes:
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    if vlan:
        eth = eth / Dot1Q(vlan=7)
    return bytes(raw(eth / IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / b"frame"))


class Engine:
    """Stands in for the engine's side of the call backs and records what reached it."""

    def __init__(self, flow: Flow) -> None:
        self.flow = flow
        self.handled: list[int] = []
        self.followed: list[int] = []
        self.counted = 0
        self.frames = 0
        self.not_ip: dict[str, int] = {}
        self.encrypted: dict[bytes, int] = {}
        self.swept: list[int] = []

    def lookup(self, key: bytes) -> Flow:
        return self.flow

    def handle(self, i: int, pkt: object) -> tuple[float, int, bool]:
        # As `Engine.process` does for a payload packet of a flow that nobody inspects.
        self.handled.append(i)
        self.flow.orig_pkts += 1
        if self.flow.inspected < LIMIT:
            self.flow.inspected += 1
        return 1e18, 0, True

    def follow(self, i: int, flow: Flow, *rest: object) -> tuple[float, int]:
        self.followed.append(i)
        return 1e18, 0

    def sweep(self, ts: float, i: int) -> tuple[float, int]:
        self.swept.append(i)
        return 1e18, 0

    def count(self, n: int, latest: float, frames: int) -> None:
        self.counted += n
        self.frames += frames

    def skipped(self, counts: dict[str, int], encrypted: dict[bytes, int]) -> None:
        for kind, n in counts.items():
            self.not_ip[kind] = self.not_ip.get(kind, 0) + n
        for mac, n in encrypted.items():
            self.encrypted[mac] = self.encrypted.get(mac, 0) + n

    def timers(self, key: bytes, events: int, ts: float) -> None:
        raise AssertionError("no TCP connection closes here")

    def walk(
        self,
        frames: list[bytes],
        linktype: int = 1,
        interest: tuple[bytes | None, bool, bool] = (None, True, False),
        next_sweep: float = 1e18,
    ) -> None:
        """`interest`: the management frames the frame hooks read (OUIs, action frames) and
        whether the engine has had a packet."""
        buf = b"".join(frames)
        at = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
        caplen = np.array([len(f) for f in frames], dtype=np.int64)
        ts = np.arange(len(frames), dtype=np.float64) + 1000.0
        _fastpath.walk(
            buf, at, caplen, caplen, ts, linktype, 0, 0, next_sweep, 0, LIMIT, 1800.0, 5.0,
            self.lookup, self.handle, self.follow, self.sweep, self.count, self.skipped,
            self.timers, 0, 1, -1, 0, None, *interest,
        )  # fmt: skip


def flow(inspected: int) -> Flow:
    f = Flow("C1", 17, bytes([192, 168, 2, 20]), 50000, bytes([192, 168, 2, 1]), 9003, 999.0, 999.0)
    f.inspected = inspected
    f.followers = ("dji_wifi",)
    f.history = "Dd"  # both ends have sent: a datagram adds no history letter
    return f


def test_settled_packets_are_counted_and_written_back() -> None:
    """Past its inspected packets, a flow's packets that nobody follows are counted in C and
    reach the flow's counters."""
    f = flow(LIMIT)
    f.followers = ()
    eng = Engine(f)
    eng.walk([datagram()] * 5)
    assert (eng.handled, eng.followed, eng.counted) == ([], [], 5)
    assert f.orig_pkts == 5 and f.orig_bytes == 5 * (len(datagram()) - 14)
    assert f.last_ts == 1004.0


def test_tagged_and_encapsulated_datagrams_are_counted_in_c() -> None:
    """A settled flow's datagrams are counted in C whatever carries them (VLAN tags, ERSPAN,
    GRE, VXLAN, Geneve, MPLS, PPPoE), under the key of the inner packet."""
    f = flow(LIMIT)
    f.followers = ()
    keys: list[bytes] = []
    eng = Engine(f)
    eng.lookup = lambda key: keys.append(key) or f  # type: ignore[method-assign]
    inner = IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / b"frame"
    carriers = [
        "vlan", "qinq", "erspan_i", "erspan_ii", "erspan_iii", "gre_key_checksum", "gre6_teb",
        "vxlan", "geneve6_options", "geneve_ip", "mpls", "pppoe", "nested_three",
    ]  # fmt: skip
    eng.walk([ETHERNET[name](inner) for name in carriers])
    assert (eng.handled, eng.counted) == ([], len(carriers))
    assert len(set(keys)) == 1 and keys[0][:2] == bytes([4, 17])
    assert f.orig_pkts == len(carriers) and f.orig_bytes == len(carriers) * len(inner)


def test_the_walk_and_the_decoder_take_the_same_gre_types_for_802_11() -> None:
    """The GRE protocol types that carry an Aruba access point's 802.11 frames are one rule in
    Python (`encap.is_aruba_wlan`) and the same rule written in C: for every type from 0x8000 to
    0x9FFF, the walk reads the frame inside as 802.11 exactly when the decoder does."""
    template = ETHERNET["gre_aruba"](IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003))
    at = 14 + 20 + 2  # the GRE header's protocol type
    assert template[at : at + 2] == b"\x82\x40"
    walked, decoded = set(), set()
    for ptype in range(0x8000, 0xA000):
        frame = template[:at] + ptype.to_bytes(2, "big") + template[at + 2 :]
        keys: list[bytes] = []
        eng = Engine(flow(LIMIT))
        f = eng.flow
        eng.lookup = lambda key, keys=keys, f=f: keys.append(key) or f  # type: ignore[method-assign]
        eng.walk([frame])
        if any(key[1] == 17 for key in keys):
            walked.add(ptype)
        pkt = Decoder().decode(RawPacket(0.0, 1, frame, len(frame), 0, 1))
        if pkt is not None and pkt.proto == 17:
            decoded.add(ptype)
    assert walked == decoded == {t for t in range(0x8000, 0xA000) if is_aruba_wlan(t)}
    assert len(walked) == 25  # 0x8200 to 0x8370 by 0x10, and 0x9000


def test_encapsulated_packets_are_handed_over_as_the_decoder_makes_them() -> None:
    """A packet out of an encapsulation that goes to the engine (a flow's inspected packets) is
    made in C, its `Tunnel` too (the outermost encapsulation's kind, identifier, outer addresses
    and VLAN tag), equal to the decoder's packet of its frame: the decoder does not run on it."""
    # Not "nested_four": one encapsulation more than the decoder takes off, the decoder's to read.
    carriers = [
        "erspan_i", "erspan_ii", "erspan_iii", "erspan_iii_ip", "gre_key_checksum", "gre6_teb",
        "gre_mpls", "gre_aruba", "vxlan", "geneve6_options", "geneve_ip", "mpls", "pppoe",
        "pppoe_compressed_protocol", "nested_three",
    ]  # fmt: skip
    inner = IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / b"frame"
    frames = [ETHERNET[name](inner) for name in carriers]
    f = flow(0)
    f.inspectors = ("dji_wifi",)  # read by an analyzer: every packet goes to the engine
    eng = Engine(f)
    packets: list[object] = []
    eng.handle = lambda i, pkt: packets.append(pkt) or (1e18, 0, True)  # type: ignore[method-assign]
    eng.walk(frames)
    kinds = [pkt.tunnel.kind for pkt in packets]  # type: ignore[attr-defined]
    assert kinds == [
        "erspan_i", "erspan_ii", "erspan_iii", "erspan_iii", "gre", "gre", "gre", "gre",
        "vxlan", "geneve", "geneve", "mpls", "pppoe", "pppoe", "vxlan",
    ]  # fmt: skip
    decoder = Decoder()  # the rows' times and frame numbers, as `Engine.walk` numbers them
    decoded = [
        decoder.decode(RawPacket(1000.0 + i, 1, data, len(data), 0, i + 1))
        for i, data in enumerate(frames)
    ]
    assert packets == decoded


def test_frames_that_are_not_ip_are_counted_by_kind_in_c() -> None:
    """Frames the decoder only counts are counted in C under the decoder's names; a management
    frame, an ARP request for an address outside the built-in local ranges (the decoder reads
    what it shows on the link) or a frame too short for its headers goes to Python; past 32
    kinds in one walk, new kinds go to Python too."""
    _fastpath.protocols_setup(ICMP4_PAIRS, ICMP6_PAIRS, IP6_READ_PAST, builtin_local_v4())
    eng = Engine(flow(LIMIT))
    lldp = raw(Ether(type=0x88CC) / (b"\x00" * 30))
    arp = raw(Ether() / ARP(psrc="10.0.0.2", pdst="10.0.0.1"))
    public = raw(Ether() / ARP(psrc="192.0.2.2", pdst="192.0.2.1"))
    probe = raw(Ether() / ARP(psrc="0.0.0.0", pdst="192.0.2.2"))
    reply = raw(Ether() / ARP(op=2, psrc="192.0.2.1", pdst="192.0.2.2"))
    eng.walk([arp, lldp, arp, raw(Ether())[:10], public, probe, reply])
    assert eng.not_ip == {"arp": 3, "ethertype-0x88cc": 1} and eng.handled == [3, 4, 5]
    eng = Engine(flow(LIMIT))
    wifi = [radiotap(ACK), radiotap(BEACON), radiotap(ACK, fcs=True)]
    wifi += [radiotap(dot11(b"secret", 0x0800, protected=True)), radiotap(b"\x08")]
    eng.walk(wifi, linktype=127)
    assert eng.not_ip == {"dot11-ctrl": 2, "dot11-protected": 1} and eng.handled == [1, 4]
    eng = Engine(flow(LIMIT))
    eng.walk([raw(Ether(type=0x9000 + n) / b"x") for n in range(40)])
    assert len(eng.not_ip) == 32 and eng.handled == list(range(32, 40))


def test_the_packets_of_an_a_msdu_are_rows_of_their_own() -> None:
    """An A-MSDU whose subframes are all IP packets the walk reads is read in C, each packet a
    row of its own: a read flow's packets are handed over made as the decoder makes them (its
    first, then `more`, with the subframes' MACs and the tunnel of an Aruba GRE frame), a
    settled flow's are counted; an A-MSDU with a subframe that is not IP, or one cut short, goes
    to the decoder whole."""
    datagrams = [
        IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / (b"v" * n) for n in (1, 2, 3)
    ]
    subframes = amsdu_subframes(*(msdu(p) for p in datagrams), sa=bytes.fromhex("02000000aa01"))
    frames = [
        dot11(subframes, 0, ds=2, qos=True, amsdu=True),
        ETHERNET["gre_aruba_amsdu_two"](datagrams[0]),
    ]
    f = flow(0)
    f.inspectors = ("dji_wifi",)
    eng = Engine(f)
    packets: list[object] = []
    eng.handle = lambda i, pkt: packets.append(pkt) or (1e18, 0, True)  # type: ignore[method-assign]
    for linktype, frame in ((105, frames[0]), (1, frames[1])):
        packets.clear()
        eng.walk([frame], linktype=linktype)
        decoder = Decoder()
        first = decoder.decode(RawPacket(1000.0, linktype, frame, len(frame), 0, 1))
        assert first is not None and decoder.more
        assert packets == [first, *decoder.more]
    eng = Engine(flow(LIMIT))
    eng.walk([frames[0], frames[0]], linktype=105)
    assert (eng.counted, eng.handled) == (6, [])
    eng = Engine(flow(LIMIT))
    mixed = dot11(amsdu_subframes(msdu(datagrams[0]), msdu(ARP())), 0, ds=2, qos=True, amsdu=True)
    eng.walk([mixed, frames[0][:-2]], linktype=105)
    assert (eng.counted, eng.handled) == (0, [0, 1])


def test_protected_802_11_data_is_counted_by_its_sender_in_c() -> None:
    """Protected (encrypted) 802.11 data frames are counted in C by the MAC that sent them, as
    the decoder counts them (`DecodeStats.encrypted`): the station of a to-DS frame, the source
    address of a from-DS one. Past 64 senders in one walk, or when the address is cut off, the
    frame goes to the decoder."""
    eng = Engine(flow(LIMIT))
    up = radiotap(dot11(b"secret", 0x0800, protected=True))
    down = radiotap(dot11(b"secret", 0x0800, ds=2, qos=True, protected=True), fcs=True)
    eng.walk([up, up, down], linktype=127)
    assert eng.not_ip == {"dot11-protected": 3} and not eng.handled
    assert eng.encrypted == {STATION: 2, OTHER: 1}
    eng = Engine(flow(LIMIT))
    many = [
        dot11(b"s", 0, protected=True).replace(STATION, bytes([2, 0, 0, 0, 0, n]))
        for n in range(70)
    ]
    eng.walk([*many, dot11(b"", 0, protected=True)[:14]], linktype=105)
    assert len(eng.encrypted) == 64 and eng.handled == [64, 65, 66, 67, 68, 69, 70]
    decoder = Decoder()
    for data in many:
        decoder.decode(RawPacket(0.0, 105, data, len(data), 0, 1))
    assert decoder.stats.encrypted == {bytes([2, 0, 0, 0, 0, n]): 1 for n in range(70)}


def beacon(*elements: bytes, subtype: int = 8) -> bytes:
    """A management frame of `subtype` (8: beacon, 5: probe response, 13: action) whose body,
    after the 12 fixed bytes, holds `elements` (built with `element`)."""
    head = bytes([subtype << 4, 0, 0, 0]) + b"\xff" * 6 + AP + AP + b"\x00\x00"
    return head + b"\x00" * 8 + b"\x64\x00\x01\x04" + b"".join(elements)


def element(eid: int, data: bytes) -> bytes:
    return bytes([eid, len(data)]) + data


DJI, ODID = b"\x26\x37\x12", b"\xfa\x0b\xbc"
AP = b"\x02\x00\x00\x00\x00\x07"


def test_management_frames_no_frame_hook_reads_are_counted_in_c() -> None:
    """Of the 802.11 management frames, the walk hands over only those the frame hooks read
    (`FrameInterest`): beacons and probe responses with a vendor element of one of their OUIs,
    action frames when they read them, every frame when a hook declared nothing, and any until
    the engine has had a packet (its first sets the capture's start); it counts the others
    under the decoder's names, as packets the engine saw, after the sweep their time calls
    for."""
    frames = [
        radiotap(beacon(element(0, b"home"), element(221, b"\x00\x50\xf2\x02\x01"))),  # WMM
        radiotap(beacon(element(221, DJI + b"\x10\x58"))),
        radiotap(beacon(element(221, ODID + b"\x0d\x00"), subtype=5)),  # a probe response
        radiotap(beacon(subtype=13)),  # an action frame
        radiotap(beacon(element(221, DJI[:2]))),  # too short an element: no OUI
        radiotap(beacon(element(0, b"x"), b"\xdd\x09" + DJI)),  # an element cut by the end
        radiotap(beacon(subtype=4)),  # a probe request
    ]
    eng = Engine(flow(LIMIT))
    eng.walk(frames, linktype=127, interest=(DJI + ODID, True, True))
    assert eng.handled == [1, 2, 3]
    assert eng.not_ip == {"dot11-mgmt-8": 3, "dot11-mgmt-4": 1}
    assert (eng.counted, eng.frames) == (4, 4)
    eng = Engine(flow(LIMIT))
    eng.walk(frames, linktype=127, interest=(ODID, False, True))
    assert eng.handled == [2] and eng.frames == 6
    eng = Engine(flow(LIMIT))
    eng.walk(frames, linktype=127, interest=(b"", False, False))  # the engine has had none
    assert eng.handled == [0] and eng.frames == 6
    eng = Engine(flow(LIMIT))
    eng.walk(frames, linktype=127)  # a frame hook that declared nothing: every one to it
    assert eng.handled == list(range(7)) and eng.frames == 0 and eng.not_ip == {}
    eng = Engine(flow(LIMIT))
    eng.walk(frames[:1] * 3, linktype=127, interest=(b"", False, True), next_sweep=1001.0)
    assert eng.swept == [1] and eng.handled == [] and eng.frames == 3
    with pytest.raises(ValueError, match="3-byte OUIs"):
        eng.walk(frames, linktype=127, interest=(DJI[:2], False, True))


_MGMT_FRAME = st.builds(
    lambda subtype, elements, tail: (
        beacon(*(element(e, d) for e, d in elements), subtype=subtype) + tail
    ),
    st.sampled_from([0, 4, 5, 8, 8, 8, 11, 12, 13, 14]),
    st.lists(
        st.one_of(
            st.tuples(st.integers(0, 255), st.binary(max_size=12)),
            st.tuples(
                st.just(221),
                st.builds(
                    bytes.__add__,
                    st.sampled_from([DJI, ODID, b"\x00\x50\xf2", DJI[:2]]),
                    st.binary(max_size=8),
                ),
            ),
        ),
        max_size=5,
    ),
    st.binary(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(_MGMT_FRAME, min_size=1, max_size=8),
    ouis=st.sampled_from([DJI + ODID, ODID, DJI, b""]),
    action=st.booleans(),
)
def test_the_walk_hands_over_the_management_frames_the_interest_reads(
    frames: list[bytes], ouis: bytes, action: bool
) -> None:
    """The C walk's rule (`mgmt_wanted`) is `FrameInterest.reads`, on any management frame,
    elements whole, cut or too short: it hands over exactly the frames the declaration reads."""
    interest = FrameInterest(frozenset(ouis[i : i + 3] for i in range(0, len(ouis), 3)), action)
    decoder = Decoder()
    read = []
    for i, frame in enumerate(frames):
        pkt = decoder.decode(RawPacket(1000.0 + i, 105, frame, len(frame), 0, i + 1))
        assert pkt is not None and pkt.dot11 is not None
        if interest.reads(pkt.dot11):
            read.append(i)
    eng = Engine(flow(LIMIT))
    eng.walk(frames, linktype=105, interest=(ouis, action, True))
    assert eng.handled == read
    assert eng.frames == len(frames) - len(read)


def test_followed_packets_reach_the_followers_with_exact_counts() -> None:
    """A followed flow's datagram goes to its followers after its counts are on the flow."""
    f = flow(LIMIT)
    seen: list[int] = []
    eng = Engine(f)

    def follow(i: int, fl: Flow, *rest: object) -> tuple[float, int]:
        seen.append(fl.orig_pkts)
        return 1e18, 0

    eng.follow = follow  # type: ignore[method-assign]
    eng.walk([datagram()] * 3)
    assert seen == [1, 2, 3]


def datagram6(hop_by_hop: bool = False) -> bytes:
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    ip = IPv6(src=PHONE6, dst=DRONE6)
    if hop_by_hop:
        ip = ip / IPv6ExtHdrHopByHop()
    return bytes(raw(eth / ip / UDP(sport=50000, dport=9003) / b"frame"))


def test_python_touching_the_flow_is_read_back() -> None:
    """A packet Python decoded changes the flow; the walk reads the flow again before its next
    packet: counted (inspected 2 -> 3), handed to Python for its IPv6 extension header (3 -> 4,
    the limit), then past the inspected packets, so to the follower rather than counted on stale
    state."""
    f = flow(LIMIT - 2)
    f.orig_h, f.resp_h = inet_pton(AF_INET6, PHONE6), inet_pton(AF_INET6, DRONE6)
    eng = Engine(f)
    eng.walk([datagram6(), datagram6(hop_by_hop=True), datagram6()])
    assert eng.handled == [1]
    assert eng.followed == [2]
    assert eng.counted == 2
    assert f.inspected == LIMIT
    assert f.orig_pkts == 3


def duml_datagram() -> bytes:
    """A datagram carrying one DUML frame (the public duml-packet example)."""
    from tests.unit.analyzers.test_dji_wifi import PUBLISHED

    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    return bytes(raw(eth / IP(src=PHONE, dst=DRONE) / UDP(sport=50000, dport=9003) / PUBLISHED))


def test_followers_with_c_counters_are_fed_in_c() -> None:
    """Past its inspected packets, a flow whose followers all keep C frame counters has its
    datagrams counted and fed here: no call into Python at all."""
    f = flow(LIMIT)
    counter = _fastpath.DumlCounter()
    f.counters = (counter,)
    eng = Engine(f)
    eng.walk([duml_datagram()] * 3)
    assert (eng.handled, eng.followed, eng.counted) == ([], [], 3)
    assert (counter.frames, f.orig_pkts) == (3, 3)


def test_inspected_packets_go_to_the_counters_when_only_followers_inspect() -> None:
    """Still inspected, but inspected only by its followers: the hooks would feed the same
    counters, so the walk feeds them and counts the packets as inspected."""
    f = flow(LIMIT - 2)
    counter = _fastpath.DumlCounter()
    f.counters = (counter,)
    f.inspector_names = ("dji_wifi",)
    f.inspectors = (lambda flow, pkt: None,)
    eng = Engine(f)
    eng.walk([duml_datagram()] * 3)
    assert (eng.handled, eng.followed) == ([], [])
    assert (counter.frames, f.inspected) == (3, LIMIT)


def test_counters_are_not_fed_when_python_must_see_the_packet() -> None:
    """Another analyzer still inspects the flow, a follower has no C counter (a Python twin, or
    none), or the packet is TCP-like work for Python: the hooks run in Python as before."""
    from dronewatch.analyzers.dji_wifi import DumlCounter

    f = flow(LIMIT - 1)
    c = _fastpath.DumlCounter()
    f.counters = (c,)
    f.inspector_names = ("dji_wifi", "mavlink")
    f.inspectors = (lambda flow, pkt: None,) * 2
    eng = Engine(f)
    eng.walk([duml_datagram()])
    assert (eng.handled, c.frames) == ([0], 0)
    for counters, followers in (
        ((DumlCounter(),), ("dji_wifi",)),
        ((c, None), ("dji_wifi", "dns")),
    ):
        g = flow(LIMIT)
        g.followers, g.counters = followers, counters
        eng = Engine(g)
        eng.walk([duml_datagram()] * 2)
        assert eng.followed == [0, 1] and c.frames == 0


def segment(flags: str, out: bool = True, payload: bytes = b"") -> bytes:
    """A TCP segment of the flow made by `tcp_flow`, from the phone (`out`) or back."""
    src, dst, sport, dport = (PHONE, DRONE, 50000, 443) if out else (DRONE, PHONE, 443, 50000)
    eth = Ether(src="02:00:00:00:00:02", dst="02:00:00:00:00:01")
    return bytes(
        raw(eth / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / payload)
    )


def tcp_flow(history: str) -> Flow:
    f = Flow("C2", 6, bytes([192, 168, 2, 20]), 50000, bytes([192, 168, 2, 1]), 443, 999.0, 999.0)
    f.inspected = LIMIT
    f.history = history
    return f


def test_tcp_segments_of_a_flow_without_tcp_state_go_to_the_engine() -> None:
    """The C walk writes no TCP history and keeps no TCP state of its own: every segment of a
    flow whose state the engine has not set up (`Flow.tcp`) goes to the engine, in order, control
    segments and data alike, and none is counted in C."""
    f = tcp_flow("S")
    eng = Engine(f)
    frames = [
        segment("SA", out=False),
        segment("A"),
        segment("A", out=False),
        segment("FA"),
        segment("PA", payload=b"x"),
        segment("R"),
    ]
    eng.walk(frames)
    assert eng.handled == list(range(len(frames)))
    assert eng.counted == 0
    assert f.history == "S"


def test_flow_fields_the_c_walk_uses_exist() -> None:
    """Every Flow attribute the C walk reads or writes by name is on Flow, and a renamed one
    fails the import check with a message naming it."""
    import types

    from dronewatch.core.flow import Flow
    from dronewatch.fastpath import check_flow_fields

    assert "orig_pkts" in _fastpath.FLOW_FIELDS and "counters" in _fastpath.FLOW_FIELDS
    assert all(hasattr(Flow, name) for name in _fastpath.FLOW_FIELDS)
    check_flow_fields(_fastpath)
    renamed = types.ModuleType("fake")
    renamed.FLOW_FIELDS = (*_fastpath.FLOW_FIELDS, "orig_packets")  # type: ignore[attr-defined]
    with pytest.raises(ImportError, match="Flow.orig_packets"):
        check_flow_fields(renamed)


def test_no_c_switch_turns_every_c_part_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """DRONEWATCH_NO_C is the one switch: the walk, the record reader and the counters all go."""
    from dronewatch import fastpath
    from dronewatch.analyzers.dji_wifi import DumlCounter

    assert fastpath.native() is _fastpath
    assert fastpath.counter_type("DumlCounter", DumlCounter) is _fastpath.DumlCounter
    monkeypatch.setenv(fastpath.NO_C_ENV, "1")
    assert fastpath.native() is None and not fastpath.c_enabled()
    assert fastpath.counter_type("DumlCounter", DumlCounter) is DumlCounter
