"""The DJI Fly LDM-on violation session as remote mirrors, overlays and access links deliver it.

Each capture under pcaps/lab/tunnels/ holds the frames of
pcaps/scenarios/dji_fly_ldm_on_violation.pcap (a real session recorded between network
namespaces: the DUML link, the DNS lookup and the ~500 KB TLS upload to mydjiflight.dji.com), in
their order and at their times, inside the headers of one way of carrying them: ERSPAN types I,
II and III over GRE (switch port mirrors), plain GRE and GRE over IPv6 (router tunnels), VXLAN
(cloud traffic mirroring, UDP 4789), Geneve (UDP 6081, with options as a cloud gateway load
balancer writes them), MPLS, PPPoE on a tagged access VLAN, QinQ, Linux cooked v1 and v2, and a
pcapng file with two interfaces of different link types. The headers are written by scapy's
layers (scapy.contrib.erspan, geneve, mpls; scapy.layers.vxlan, ppp, l2) from their published
layouts; the inner bytes are the recorded ones.

To keep each file small, a TCP segment past its flow's first 32 payload packets (what the
analyzers inspect) is cut to 96 bytes of its inner frame, as a snap length would cut it: its
lengths, flags and sequence numbers stay, and so do the flows, alerts and verdicts (checked by
tests/unit/capture/test_tunnel_captures.py against the session's own records). Every run writes
the same bytes.

One more, vxlan_kernel.pcap, is recorded, not built: two network namespaces this script creates
and deletes (dwvxphone, dwvxcloud), joined by a veth pair (the underlay, 192.0.2.1 and .2), each
with a Linux VXLAN interface (VNI 42, UDP 4789); the phone's real clients (dnspython, Python ssl)
look up mydjiflight.dji.com at the cloud's DNS server and POST 60 KB to its HTTPS server over the
overlay (10.77.0.2 -> 10.77.0.1, the cloud name on the documentation address 198.51.100.13), and
tcpdump records the underlay: the kernel's own VXLAN packets. Nothing leaves the namespaces.

    .venv/bin/python scripts/_record/tunnels.py [OUT_DIR]       # built captures (default
                                                               # pcaps/lab/tunnels)
    sudo .venv/bin/python scripts/_record/tunnels.py --kernel [OUT_DIR]   # vxlan_kernel.pcap
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from scapy.all import IP, UDP, Dot1Q, IPv6, Packet, Raw, raw
from scapy.contrib.erspan import ERSPAN_II, ERSPAN_III, ERSPAN_PlatformSpecific
from scapy.contrib.geneve import GENEVE
from scapy.contrib.mpls import MPLS
from scapy.layers.l2 import GRE, CookedLinux, CookedLinuxV2, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.layers.vxlan import VXLAN
from scapy.utils import RawPcapReader

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "pcaps" / "scenarios" / "dji_fly_ldm_on_violation.pcap"
INSPECTED = 32
"""Payload packets of a flow the analyzers see (EngineOptions.inspect_packets): kept whole."""
CUT = 96
"""Bytes kept of a later TCP segment's inner frame."""

# The mirroring switch, the collector and the underlay's MACs: documentation addresses.
SWITCH, COLLECTOR = "192.0.2.1", "192.0.2.200"
SWITCH6, COLLECTOR6 = "2001:db8:100::1", "2001:db8:100::200"
UNDERLAY = Ether(src="02:00:5e:10:00:01", dst="02:00:5e:10:00:c8")

Frame = tuple[int, int, bytes, int]
"""Seconds, microseconds, captured bytes, wire length."""
Carrier = Callable[[bytes, int], bytes]
"""(a whole inner frame, its index) -> the frame as the carrier delivers it, the inner frame's
bytes last (so a snap length cuts the carried frame where it cut the inner one)."""


def session() -> list[Frame]:
    """The recorded session's frames, TCP segments past the inspected ones cut to `CUT` bytes."""
    payloads: Counter[bytes] = Counter()
    out: list[Frame] = []
    for data, meta in RawPcapReader(str(SOURCE)):
        frame = bytes(data)
        cut = False
        if frame[12:14] == b"\x08\x00" and frame[23] == 6:  # IPv4, TCP
            ihl = (frame[14] & 0x0F) * 4
            tcp = 14 + ihl
            payload = len(frame) - tcp - (frame[tcp + 12] >> 4) * 4
            if payload > 0:
                payloads[flow_of(frame)] += 1
                cut = payloads[flow_of(frame)] > INSPECTED
        out.append((meta.sec, meta.usec, frame[:CUT] if cut else frame, meta.wirelen))
    return out


def flow_of(frame: bytes) -> bytes:
    """An IPv4 frame's addresses, ports and protocol, the same both ways."""
    ip = frame[14:]
    ihl = (ip[0] & 0x0F) * 4
    ends = sorted([ip[12:16] + ip[ihl : ihl + 2], ip[16:20] + ip[ihl + 2 : ihl + 4]])
    return ends[0] + ends[1] + ip[9:10]


def around(outer: Callable[[int, bytes], Packet]) -> Carrier:
    """A carrier whose headers scapy builds around the whole inner frame (lengths cover it)."""
    return lambda inner, index: raw(outer(index, inner) / Raw(inner))


def erspan_i(index: int, inner: bytes) -> Packet:
    return UNDERLAY / IP(src=SWITCH, dst=COLLECTOR, id=index) / GRE(proto=0x88BE)


def erspan_ii(index: int, inner: bytes) -> Packet:
    """A switch's port mirror (Cisco RSPAN over GRE): the underlay on VLAN 100, session 17."""
    return (
        UNDERLAY
        / Dot1Q(vlan=100)
        / IP(src=SWITCH, dst=COLLECTOR, id=index)
        / GRE(proto=0x88BE, seqnum_present=1, sequence_number=index)
        / ERSPAN_II(session_id=17, en=3, index=1)
    )


def erspan_iii(index: int, inner: bytes) -> Packet:
    return (
        UNDERLAY
        / IP(src=SWITCH, dst=COLLECTOR, id=index)
        / GRE(proto=0x22EB, seqnum_present=1, sequence_number=index)
        / ERSPAN_III(session_id=18, hw=5, timestamp=index * 1000, o=1)
        / ERSPAN_PlatformSpecific(platf_id=3)
    )


def gretap6(index: int, inner: bytes) -> Packet:
    return UNDERLAY / IPv6(src=SWITCH6, dst=COLLECTOR6) / GRE(proto=0x6558)


def vxlan(index: int, inner: bytes) -> Packet:
    """Cloud traffic mirroring: UDP 4789 from the mirrored interface's host to the target, a
    source port per inner flow, no UDP checksum (RFC 7348 5), the session's VNI."""
    sport = 49152 + zlib.crc32(flow_of(inner)) % 16384
    return (
        UNDERLAY
        / IP(src="10.0.1.17", dst="10.0.9.45", id=index)
        / UDP(sport=sport, dport=4789, chksum=0)
        / VXLAN(vni=0x5B1D, flags=0x08)
    )


def geneve(index: int, inner: bytes) -> Packet:
    """A gateway load balancer's Geneve: three options of class 0x0108, 8 bytes of data each."""
    options = b"".join(
        struct.pack("!HBB", 0x0108, kind, 2) + struct.pack("!Q", value)
        for kind, value in ((1, 0x2C17), (2, 0xE5), (3, 0x1F0))
    )
    return (
        UNDERLAY
        / IP(src="10.0.2.50", dst="10.0.2.60", id=index)
        / UDP(sport=60117, dport=6081, chksum=0)
        / GENEVE(vni=0, proto=0x6558, optionlen=len(options) // 4, options=options)
    )


def gre_key(inner: bytes, index: int) -> bytes:
    """Plain GRE between two routers, key 1001: the inner IP packet, without its frame."""
    return raw(
        UNDERLAY
        / IP(src=SWITCH, dst=COLLECTOR, id=index)
        / GRE(key_present=1, key=1001, proto=0x0800)
        / Raw(inner[14:])
    )


def mpls(inner: bytes, index: int) -> bytes:
    """The frame's own MACs, a transport label and a service label, then its IP packet."""
    labels = raw(MPLS(label=24001, s=0, ttl=63) / MPLS(label=100, s=1, ttl=63))
    return inner[:12] + b"\x88\x47" + labels + inner[14:]


def pppoe(inner: bytes, index: int) -> bytes:
    """An access link: the frame's MACs, VLAN 7, PPPoE session 0x2a31, PPP protocol IPv4."""
    header = raw(PPPoE(sessionid=0x2A31, len=len(inner) - 14 + 2) / PPP(proto=0x0021))
    return inner[:12] + b"\x81\x00\x00\x07\x88\x64" + header + inner[14:]


def qinq(inner: bytes, index: int) -> bytes:
    """A provider's S-tag 300 (802.1ad) over the customer's C-tag 20."""
    return inner[:12] + b"\x88\xa8\x01\x2c\x81\x00\x00\x14" + inner[12:]


def sll(inner: bytes, index: int) -> bytes:
    """`tcpdump -i any` on the phone (Linux cooked v1): sent by it, or to it."""
    header = CookedLinux(
        pkttype=4 if inner[6:12] in PHONE_MACS else 0,
        lladdrtype=1,
        lladdrlen=6,
        src=inner[6:12] + b"\0\0",
        proto=0x0800,
    )
    return raw(header / Raw(inner[14:]))


def sll2(inner: bytes, index: int) -> bytes:
    """The same in Linux cooked v2, which also names the interface."""
    header = CookedLinuxV2(
        proto=0x0800,
        ifindex=2 if inner[26] == 192 else 3,  # wlan0 toward the aircraft, rmnet0 the uplink
        lladdrtype=1,
        pkttype=4 if inner[6:12] in PHONE_MACS else 0,
        lladdrlen=6,
        src=inner[6:12] + b"\0\0",
    )
    return raw(header / Raw(inner[14:]))


PHONE_MACS: set[bytes] = set()
"""The phone's two MACs: the senders of its DNS query and of its DUML datagrams."""


def learn_phone(frames: list[Frame]) -> None:
    for _, _, data, _ in frames:
        if data[12:14] == b"\x08\x00" and data[26:30] in (b"\x0a\x4d\x00\x02", b"\xc0\xa8\x02\x14"):
            PHONE_MACS.add(data[6:12])


CARRIERS: dict[str, tuple[Carrier, int, bool]] = {
    # file name: (carrier, link type, IP frames only: the ARP frames are left out)
    "erspan_i": (around(erspan_i), 1, False),
    "erspan_ii_vlan": (around(erspan_ii), 1, False),
    "erspan_iii": (around(erspan_iii), 1, False),
    "gre_key": (gre_key, 1, True),
    "gretap_ipv6": (around(gretap6), 1, False),
    "vxlan": (around(vxlan), 1, False),
    "geneve": (around(geneve), 1, False),
    "mpls": (mpls, 1, True),
    "pppoe_vlan": (pppoe, 1, True),
    "qinq": (qinq, 1, False),
    "linux_sll": (sll, 113, True),
}


def pcap(frames: list[Frame], linktype: int) -> bytes:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype)]
    for sec, usec, data, wirelen in frames:
        out.append(struct.pack("<IIII", sec, usec, len(data), wirelen) + data)
    return b"".join(out)


def carry(frames: list[Frame], carrier: Carrier, ip_only: bool) -> list[Frame]:
    """Each frame in the carrier's headers, built around the frame as it was on the wire (its
    cut part as zeros) and cut again where the frame was cut."""
    out = []
    for index, (sec, usec, data, wirelen) in enumerate(frames):
        if ip_only and data[12:14] != b"\x08\x00":
            continue
        lost = wirelen - len(data)
        carried = carrier(data + bytes(lost), index & 0xFFFF)
        out.append((sec, usec, carried[: len(carried) - lost], len(carried)))
    return out


def two_interfaces(frames: list[Frame]) -> bytes:
    """pcapng with two interfaces, as dumpcap writes a capture of both of the phone's links:
    wlan0 (toward the aircraft: the DUML datagrams) in Ethernet, microseconds; rmnet0 (DNS, TLS)
    in Linux cooked v2, nanoseconds (if_tsresol 9); one enhanced packet block per packet. The
    times are the recording's, so a packet's time differs from the pcap's by float rounding only
    (the pcap adds microseconds to seconds, pcapng scales a count of units)."""

    def block(btype: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", btype, len(body) + 12) + body + struct.pack("<I", len(body) + 12)

    def idb(linktype: int, name: bytes, options: bytes = b"") -> bytes:
        name_opt = struct.pack("<HH", 2, len(name)) + name + bytes(-len(name) % 4)
        return block(1, struct.pack("<HHI", linktype, 0, 262144) + name_opt + options + bytes(4))

    out = [
        block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
        idb(1, b"wlan0"),
        idb(276, b"rmnet0", struct.pack("<HHB3x", 9, 1, 9)),
    ]
    for index, (sec, usec, data, wirelen) in enumerate(frames):
        if data[12:14] != b"\x08\x00":
            continue
        micros = sec * 1_000_000 + usec
        if data[26] == 192:  # 192.168.2.0/24: the aircraft link
            iface, frame, wire, units = 0, data, wirelen, micros
        else:
            lost = wirelen - len(data)
            carried = sll2(data + bytes(lost), index)
            iface, frame, wire = 1, carried[: len(carried) - lost], len(carried)
            units = micros * 1000
        head = struct.pack("<IIIII", iface, units >> 32, units & 0xFFFFFFFF, len(frame), wire)
        out.append(block(6, head + frame))
    return b"".join(out)


PHONE_NS, CLOUD_NS = "dwvxphone", "dwvxcloud"
VNI = 42
UPLOAD = 60_000


def record_kernel_vxlan(out: Path) -> None:
    """Record the phone's DNS lookup and TLS upload over a Linux VXLAN overlay, on its underlay."""
    import tempfile

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import util
    import zone

    work = Path(tempfile.mkdtemp(prefix="dw-vxlan-"))
    procs = util.Procs(work)
    try:
        for ns in (PHONE_NS, CLOUD_NS):
            util.netns_create(ns)
        util.veth(PHONE_NS, "ul0", "02:00:5e:10:00:01", CLOUD_NS, "ul0", "02:00:5e:10:00:02")
        util.addr(PHONE_NS, "ul0", "192.0.2.1/24")
        util.addr(CLOUD_NS, "ul0", "192.0.2.2/24")
        for ns, local, remote, mac, inner in (
            (PHONE_NS, "192.0.2.1", "192.0.2.2", "ae:3f:52:8c:77:02", "10.77.0.2/24"),
            (CLOUD_NS, "192.0.2.2", "192.0.2.1", "02:42:0a:4d:00:01", "10.77.0.1/24"),
        ):
            util.run(
                ["ip", "link", "add", "vx0", "address", mac, "type", "vxlan", "id", str(VNI),
                 "local", local, "remote", remote, "dstport", "4789", "dev", "ul0"],
                netns=ns,
            )  # fmt: skip
            util.run(["ethtool", "-K", "vx0", "tso", "off", "gso", "off", "tx", "off"], ns, False)
            util.run(["ip", "link", "set", "vx0", "up"], netns=ns)
            util.addr(ns, "vx0", inner)
        util.addr(CLOUD_NS, "vx0", "198.51.100.13/32")
        util.route(PHONE_NS, "198.51.100.0/24", "10.77.0.1")
        cert, key = util.make_cert(work, zone.CERT_NAMES)
        procs.agent("dns", ["dns", "10.77.0.1:53"], CLOUD_NS)
        procs.agent(
            "https", ["http", "0.0.0.0:443", "--cert", str(cert), "--key", str(key)], CLOUD_NS
        )
        raw_path = work / "underlay.pcap"
        capture = util.Capture(procs, "tcpdump-underlay", "ul0", raw_path, "", CLOUD_NS).start()
        phone = procs.start("phone", [util.PY, "-u", __file__, "--phone"], PHONE_NS)
        if phone.wait(60) != 0 or "PHONE DONE" not in phone.output():
            raise RuntimeError(f"phone failed:\n{phone.output()[-2000:]}")
        util.log(f"underlay: {capture.stop()} packets")
        out.write_bytes(raw_path.read_bytes())
    finally:
        procs.stop_all()
        for ns in (PHONE_NS, CLOUD_NS):
            util.netns_delete(ns)


def phone() -> None:
    """In the phone's namespace: look the name up, then upload over TLS (real clients)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import random

    import clients
    import zone

    name = "mydjiflight.dji.com"
    addrs = [a for a in clients.resolve("10.77.0.1", name) if a[0].isdigit()]
    body = random.Random(7).randbytes(UPLOAD)
    headers = {"User-Agent": zone.UA_DJI_FLY, "Content-Type": "application/zip"}
    clients.https_session(name, addrs[0], [("POST", "/api/v2/flight_log/zipupload", body, headers)])
    print("PHONE DONE", flush=True)


def main(argv: list[str]) -> int:
    if argv[1:2] == ["--phone"]:
        phone()
        return 0
    if argv[1:2] == ["--kernel"]:
        out_dir = Path(argv[2]) if len(argv) > 2 else ROOT / "pcaps" / "lab" / "tunnels"
        record_kernel_vxlan(out_dir / "vxlan_kernel.pcap")
        return 0
    out_dir = Path(argv[1]) if len(argv) > 1 else ROOT / "pcaps" / "lab" / "tunnels"
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = session()
    learn_phone(frames)
    for name, (carrier, linktype, ip_only) in CARRIERS.items():
        data = pcap(carry(frames, carrier, ip_only), linktype)
        (out_dir / f"{name}.pcap").write_bytes(data)
        print(f"{name}.pcap: {len(data):,} bytes")
    data = two_interfaces(frames)
    (out_dir / "two_interfaces.pcapng").write_bytes(data)
    print(f"two_interfaces.pcapng: {len(data):,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
