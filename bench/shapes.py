"""The benchmark's traffic shapes: one capture per shape of traffic a sensor meets, each about a
million packets, built reproducibly (fixed seeds) from the formats' documents (bench/wire.py) and
what drone apps plausibly do, not from one capture's addresses.

    .venv/bin/python bench/make_capture.py --shapes all          # builds bench/data/shapes/*
    .venv/bin/python bench/run.py --shapes all                   # times dronewatch and peers

Each shape's flows start at random (Poisson) times and their packets are merged in time order,
so flows overlap as on a real link. Clients are private addresses (phones on site networks);
servers are public-looking addresses drawn at random, a few per vendor-looking name, and the DNS
answers in the captures map the names to them. See SHAPES below for what each shape holds.
"""

from __future__ import annotations

import heapq
import random
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import wire  # noqa: E402
from sessions import (  # noqa: E402
    BASE_TS,
    GATEWAY_MAC,
    TLS_NAMES,
    UPLOAD_NAMES,
    Conn,
    Flows,
    Impair,
    Net,
    Packets,
    dns_flow,
    duml_udp,
    http_post_one_way,
    http_session,
    http_short,
    in_time_order,
    mavlink_udp,
    mqtt_telemetry,
    mqtt_tls_one_way,
    rtmp_upload,
    rtp_video,
    tls_session,
)
from wifi import Radio, bare_radio, radiotap_radio, wifi_flows  # noqa: E402
from wire import TCP_ACK, TCP_RST, TCP_SYN, Pool  # noqa: E402


def interleave(flows: Flows, limit: int, write: Callable[[float, bytes], None], label: str) -> int:
    """Merge the packets of flows in time order, writing the first `limit`; returns how many
    flows were started. Flows come in order of their start, and no packet of a flow is earlier
    than its start, which is what lets a flow wait until the merge reaches its start."""
    heap: list[tuple[float, int, bytes, Packets]] = []
    started = written = 0
    last = 0.0
    pending = next(flows, None)
    while written < limit:
        while pending is not None and (not heap or pending[0] <= heap[0][0]):
            packets = pending[1]
            first = next(packets, None)
            if first is not None:
                started += 1
                heapq.heappush(heap, (first[0], started, first[1], packets))
            pending = next(flows, None)
        if not heap:
            break
        ts, n, frame, packets = heapq.heappop(heap)
        if ts < last:
            raise AssertionError(f"{label}: packet at {ts} after one at {last}")
        last = ts
        write(ts, frame)
        written += 1
        if written % 200_000 == 0:
            print(f"  {label}: {written:,} packets, {started:,} flows", file=sys.stderr)
        following = next(packets, None)
        if following is not None:
            heapq.heappush(heap, (following[0], n, following[1], packets))
    return started


def one_way_flows(rng: random.Random, pool: Pool) -> Flows:
    """Client-to-server only (a one-way mirror): TLS uploads and downloads (the client's ACKs),
    HTTP POSTs of flight logs, MQTT-over-TLS telemetry, unanswered DNS queries."""
    net = Net(rng, 2000)
    t = BASE_TS
    while True:
        t += rng.expovariate(4.0)
        client = net.client()
        kind = rng.choices(("tls", "http", "mqtt", "dns"), weights=(45, 35, 8, 12))[0]
        if kind == "dns":
            name = rng.choice(TLS_NAMES)[0]
            yield t, dns_flow(rng, pool, net, t, client, name, net.addrs[name], answered=False)
        elif kind == "tls":
            name, port, alpn = rng.choice(TLS_NAMES[:-1])
            up = int(min(rng.lognormvariate(11, 1.6), 40e6)) if rng.random() < 0.4 else 0
            down = 0 if up else int(min(rng.lognormvariate(11.5, 1.5), 40e6))
            yield (
                t,
                tls_session(rng, pool, net, t, client, name, port, alpn, up, down, Impair(False)),
            )
        elif kind == "http":
            yield t, http_post_one_way(rng, pool, net, t, client)
        else:
            yield t, in_time_order(mqtt_tls_one_way(rng, pool, net, t, client))


def tls_no_hello_flows(rng: random.Random, pool: Pool) -> Flows:
    """A DNS lookup of a vendor name, then TLS to its answer: the ClientHello (a third of them
    post-quantum, over two segments) and the upload seen, the ServerHello never. Half the
    sessions show no server packet at all; the other half its SYN-ACK and ACKs, not its data.
    1-5% of the client's segments are missing (gaps in sequence space)."""
    net = Net(rng, 3000, (10, 30))
    t = BASE_TS
    while True:
        t += rng.expovariate(5.0)
        client = net.client()
        name, port, alpn = rng.choice(TLS_NAMES)
        yield t, dns_flow(rng, pool, net, t, client, name, net.addrs[name])
        up = int(min(rng.lognormvariate(11.3, 1.6), 30e6))
        imp = Impair(
            server_seen=rng.random() < 0.5, server_hello_seen=False, loss=rng.uniform(0.01, 0.05)
        )
        start = t + rng.uniform(0.01, 0.1)
        yield t, tls_session(rng, pool, net, start, client, name, port, alpn, up, 0, imp)


def seq_gap_flows(rng: random.Random, pool: Pool) -> Flows:
    """Both directions of TLS (uploads, downloads) and HTTP downloads, with 0.5-4% of data
    segments missing and 1% of neighbours swapped."""
    net = Net(rng, 3000, (10, 40))
    t = BASE_TS
    while True:
        t += rng.expovariate(6.0)
        client = net.client()
        imp = Impair(loss=rng.uniform(0.005, 0.04), swap=0.01)
        if rng.random() < 0.3:
            yield t, http_session(rng, pool, net, t, client, imp)
            continue
        name, port, alpn = rng.choice(TLS_NAMES[:-1])
        up = int(min(rng.lognormvariate(10, 1.5), 20e6)) if rng.random() < 0.3 else 600
        down = int(min(rng.lognormvariate(11, 1.5), 20e6))
        yield t, tls_session(rng, pool, net, t, client, name, port, alpn, up, down, imp)


def mid_stream_flows(rng: random.Random, pool: Pool) -> Flows:
    """Sessions the capture joins after they opened (a mirror port enabled mid-session, a ring
    buffer's later file): TLS both ways, HTTP downloads and MQTT telemetry, each with its first
    1-4 packets (inside the handshake) or 5-60 packets (past it) never seen, so most flows start
    without a SYN and many without a ClientHello."""
    net = Net(rng, 3000, (10, 40))
    t = BASE_TS
    while True:
        t += rng.expovariate(6.0)
        client = net.client()
        kind = rng.choices(("tls", "http", "mqtt"), weights=(60, 30, 10))[0]
        if kind == "http":
            packets = http_session(rng, pool, net, t, client, Impair())
        elif kind == "mqtt":
            packets = mqtt_telemetry(rng, net, t, client, rng.randrange(50, 400))
        else:
            name, port, alpn = rng.choice(TLS_NAMES[:-1])
            up = int(min(rng.lognormvariate(10, 1.5), 20e6)) if rng.random() < 0.3 else 600
            down = int(min(rng.lognormvariate(11, 1.5), 20e6))
            packets = tls_session(rng, pool, net, t, client, name, port, alpn, up, down, Impair())
        cut = rng.randint(1, 4) if rng.random() < 0.5 else rng.randint(5, 60)
        packets = in_time_order(packets)
        for _ in range(cut):
            if next(packets, None) is None:
                break
        yield t, packets


def long_flows(rng: random.Random, pool: Pool) -> Flows:
    """About 80 flows of 5,000-25,000 packets: RTMP video uploads, TLS media sync, MAVLink and
    DJI DUML telemetry over UDP, DJI Cloud API MQTT telemetry, RTP video over UDP."""
    net = Net(rng, 500, (10, 50))
    kinds = (
        ["rtmp"] * 12
        + ["tls"] * 12
        + ["mavlink"] * 16
        + ["duml"] * 10
        + ["mqtt"] * 20
        + ["rtp"] * 5
    )
    rng.shuffle(kinds)
    starts = sorted(BASE_TS + rng.uniform(0, 600) for _ in kinds)
    for n, (t, kind) in enumerate(zip(starts, kinds, strict=True)):
        client = net.client()
        if kind == "rtmp":
            yield t, in_time_order(rtmp_upload(rng, pool, net, t, client, 25_000))
        elif kind == "tls":
            name = rng.choice(UPLOAD_NAMES)
            yield (
                t,
                tls_session(
                    rng, pool, net, t, client, name, 443, ("http/1.1",), 25_000 * 1000, 0, Impair()
                ),
            )
        elif kind == "mavlink":
            yield t, mavlink_udp(rng, t, bytes([10, 60, n, 1]), bytes([10, 60, n, 2]), 10_000)
        elif kind == "duml":
            yield t, duml_udp(rng, pool, t, bytes([10, 101, n, 1]), bytes([10, 101, n, 20]), 10_000)
        elif kind == "mqtt":
            yield t, mqtt_telemetry(rng, net, t, client, 5_000)
        else:
            yield t, rtp_video(rng, pool, t, bytes([10, 61, n, 2]), bytes([10, 61, n, 10]), 20_000)


def short_flows(rng: random.Random, pool: Pool) -> Flows:
    """About 300,000 short flows from 60,000 hosts: DNS lookups (one query, one answer; a tenth
    over IPv6, some NXDOMAIN), short HTTP and TLS requests, connections refused with a reset."""
    net = Net(rng, 60_000, (10, 64))
    cdn = ("akamaized.net", "cloudfront.net")
    names = [n for n, _, _ in TLS_NAMES]
    names += [f"{rng.getrandbits(32):08x}.cdn.{d}" for d in cdn for _ in range(5000)]
    t = BASE_TS
    while True:
        t += rng.expovariate(1500.0)
        client = net.client()
        kind = rng.choices(("dns", "http", "tls", "rst"), weights=(85, 5, 7, 3))[0]
        if kind == "dns":
            name = rng.choice(names)
            v6 = rng.random() < 0.1
            if v6:
                c6 = bytes.fromhex("fd00000000000064") + bytes(4) + client
                addrs = (
                    [bytes.fromhex("2600140000000000") + rng.randbytes(8)]
                    if rng.random() < 0.9
                    else []
                )
                yield t, dns_flow(rng, pool, net, t, c6, name, addrs)
            else:
                addrs = net.addrs.get(name) or (
                    [net.public() for _ in range(rng.randint(1, 4))] if rng.random() < 0.9 else []
                )
                yield t, dns_flow(rng, pool, net, t, client, name, addrs)
        elif kind == "http":
            yield t, http_short(rng, pool, net, t, client)
        elif kind == "tls":
            name, port, alpn = rng.choice(TLS_NAMES[:-1])
            yield (
                t,
                tls_session(
                    rng,
                    pool,
                    net,
                    t,
                    client,
                    name,
                    port,
                    alpn,
                    0,
                    rng.randrange(500, 6000),
                    Impair(),
                ),
            )
        else:
            conn = Conn(
                rng,
                client,
                net.public(),
                rng.randrange(32768, 61000),
                rng.choice((80, 443, 8080, 8883)),
            )
            yield t, iter(((t, conn.up(TCP_SYN)), (t + 0.03, conn.down(TCP_RST | TCP_ACK))))


def syn_scan(rng: random.Random, pool: Pool) -> Flows:
    """SYNs from two scanners to random hosts of a site's /16 and random ports at 20,000 a second:
    one masscan-like (fixed source port, no options), one nmap-like (random ports, options)."""
    net = Net(rng, 1)
    scanners = [(net.public(), 61000, False), (net.public(), 0, True)]
    top = (22, 23, 80, 443, 445, 3389, 8080, 8443, 1883, 8883, 554, 1935, 5760, 14550)
    t = BASE_TS
    ident = 0
    while True:
        t += rng.expovariate(20_000.0)
        src, sport, options = rng.choice(scanners)
        dst = bytes([10, 50, rng.randrange(256), rng.randrange(1, 255)])
        dport = rng.choice(top) if rng.random() < 0.2 else rng.randrange(1, 65536)
        seg = wire.tcp(
            sport or rng.randrange(1024, 65536),
            dport,
            rng.getrandbits(32),
            0,
            TCP_SYN,
            b"",
            options,
        )
        ident += 1
        ip = wire.ip4(src, dst, 6, seg, ident, ttl=rng.choice((49, 113, 241)))
        yield t, iter(((t, wire.ether(wire.mac_for(dst), GATEWAY_MAC, wire.ETH_IP4, ip)),))


def icmp_flows(rng: random.Random, pool: Pool) -> Flows:
    """ICMP and ICMPv6 as a site's network carries them: monitoring pings (echo request and
    reply every second for minutes, IPv4 and IPv6), neighbour solicitations and advertisements,
    router advertisements to all nodes, traceroutes (time exceeded from each hop) and
    unreachable ports answered to UDP probes."""
    net = Net(rng, 2_000, (10, 70))
    router6 = bytes.fromhex("fe800000000000000000000000000001")
    all_nodes = bytes.fromhex("ff020000000000000000000000000001")

    def v6(client: bytes) -> bytes:
        return bytes.fromhex("fd00000000000070") + bytes(4) + client

    def frame4(src: bytes, dst: bytes, message: bytes, ttl: int = 64) -> bytes:
        ip = wire.ip4(src, dst, 1, message, rng.getrandbits(16), ttl)
        return wire.ether(wire.mac_for(dst), wire.mac_for(src), wire.ETH_IP4, ip)

    def frame6(src: bytes, dst: bytes, kind: int, rest: bytes, payload: bytes) -> bytes:
        message = wire.icmp6(src, dst, kind, 0, rest, payload)
        ip = wire.ip6(src, dst, 58, message, 255 if kind >= 133 else 64)
        return wire.ether(wire.mac_for(dst[-4:]), wire.mac_for(src[-4:]), wire.ETH_IP6, ip)

    def ping(t: float, client: bytes, target: bytes, count: int, six: bool) -> Packets:
        ident, data = rng.getrandbits(16), pool.take(56)
        for seq in range(count):
            rest = struct.pack("!HH", ident, seq)
            at = t + seq + rng.uniform(0, 0.002)
            rtt = rng.uniform(0.0005, 0.04)
            if six:
                yield at, frame6(v6(client), v6(target), 128, rest, data)
                yield at + rtt, frame6(v6(target), v6(client), 129, rest, data)
            else:
                yield at, frame4(client, target, wire.icmp4(8, 0, rest, data))
                yield at + rtt, frame4(target, client, wire.icmp4(0, 0, rest, data))

    def neighbours(t: float, client: bytes, target: bytes) -> Packets:
        option = bytes([1, 1]) + wire.mac_for(client)
        yield t, frame6(v6(client), v6(target), 135, bytes(4), v6(target) + option)
        yield t + 0.0003, frame6(v6(target), v6(client), 136, b"\x60" + bytes(3), v6(target))

    def adverts(t: float) -> Packets:
        for n in range(600):  # every few seconds, to all nodes
            body = bytes([64, 0]) + struct.pack("!HII", 1800, 0, 0)
            yield t + n * 4, frame6(router6, all_nodes, 134, body[:4], body[4:])

    def traceroute(t: float, client: bytes, target: bytes) -> Packets:
        for hop in range(1, rng.randint(8, 16)):
            probe = wire.udp(rng.randrange(33434, 33534), 33434 + hop, bytes(32))
            sent = wire.ip4(client, target, 17, probe, rng.getrandbits(16), hop)
            router = bytes([10, 70, 255, hop])
            quoted = sent[:28]
            at = t + hop * 0.05
            yield at, wire.ether(GATEWAY_MAC, wire.mac_for(client), wire.ETH_IP4, sent)
            yield at + 0.01, frame4(router, client, wire.icmp4(11, 0, bytes(4), quoted))
        yield t + 1, frame4(target, client, wire.icmp4(3, 3, bytes(4), bytes(28)))

    yield BASE_TS, adverts(BASE_TS)
    t = BASE_TS
    while True:
        t += rng.expovariate(400.0)
        kind = rng.choices(("ping", "ping6", "nd", "trace"), weights=(30, 10, 55, 5))[0]
        client = net.client()
        if kind in ("ping", "ping6"):
            target = bytes([10, 70, rng.randrange(8), rng.randrange(1, 255)])
            yield t, ping(t, client, target, rng.randint(5, 300), kind == "ping6")
        elif kind == "nd":
            yield t, neighbours(t, client, net.client())
        else:
            yield t, traceroute(t, client, net.public())


def on_drone_link(frame: bytes) -> bool:
    """Whether an Ethernet frame of the bench mix is on a drone link: an aircraft's 192.168.x.x
    address, or a phone's drone-link address as `make_capture.rewrite` gives it (10.100/10.101)."""
    if frame[12:14] != wire.ETH_IP4:
        return False
    return any(
        frame[at] == 192 or (frame[at] == 10 and frame[at + 1] in (100, 101)) for at in (26, 30)
    )


Wrap = Callable[[bytes, int, int], bytes]
"""How a frame of the bench mix reaches the capture, given its repetition and frame number."""


def vlan_tags(frame: bytes, rep: int, n: int) -> bytes:
    """Each repetition a phone on its own VLAN (802.1Q, VIDs 100-107), every fifth behind a
    provider tag too (802.1ad QinQ, outer VIDs 2000-2003)."""
    host = (rep % 65000) + 1
    vid = 100 + host % 8
    tags = [0x8100_0000 | vid] if rep % 5 else [0x88A8_0000 | 2000 + host % 4, 0x8100_0000 | vid]
    return frame[:12] + b"".join(t.to_bytes(4, "big") for t in tags) + frame[12:]


COLLECTOR = bytes([192, 0, 2, 50])
"""The host that receives the remote mirror sessions (RFC 5737 documentation address)."""
_COLLECTOR_MAC = bytes.fromhex("02c0000232ff")
_SWITCH_MAC = bytes.fromhex("02c000020001")


def remote_mirror(frame: bytes, rep: int, n: int) -> bytes:
    """The frame as a remote mirror sends it to a collector: repetitions alternate between a
    switch's ERSPAN type II session over GRE (GRE with a sequence number, protocol 0x88BE; the
    ERSPAN header's session id 7, its index the frame's number) and a VXLAN overlay (RFC 7348,
    UDP 4789, VNI 5001), each from its own source address."""
    if rep % 2:
        erspan = struct.pack("!HHI", 0x1000 | 0, 7, n & 0xFFFFF)  # version 1 (type II), VLAN 0
        gre = struct.pack("!HHI", 0x1000, 0x88BE, n & 0xFFFFFFFF)  # S bit: a sequence number
        packet = wire.ip4(bytes([192, 0, 2, 11]), COLLECTOR, 47, gre + erspan + frame, n)
    else:
        vxlan = struct.pack("!II", 0x08000000, 5001 << 8)
        sport = 49152 + (n % 16384)  # a hash of the inner flow, as VTEPs pick it
        packet = wire.ip4(
            bytes([192, 0, 2, 12]), COLLECTOR, 17, wire.udp(sport, 4789, vxlan + frame), n
        )
    return wire.ether(_COLLECTOR_MAC, _SWITCH_MAC, b"\x08\x00", packet)


def bench_mix(writer: wire.PcapWriter, packets: int, wrap: Wrap) -> None:
    """The scenario sessions of bench.pcap (bench/make_capture.py), each repetition a phone of
    its own address, its frames as `wrap` gives them; drone-link frames on interface 1 and the
    rest on interface 0 (pcapng)."""
    from make_capture import load_sessions, rewrite

    session = load_sessions()
    span = session[-1][0] + 1.0
    written = rep = 0
    while written < packets:
        rep += 1
        host = (rep % 65000) + 1
        for ts, frame in session:
            frame = rewrite(frame, host)
            iface = 1 if on_drone_link(frame) else 0
            writer.write(BASE_TS + rep * span + ts, wrap(frame, rep, written), iface)
            written += 1
            if written >= packets:
                break
        if rep % 100 == 0:
            print(f"  bench mix: {written:,} packets", file=sys.stderr)


@dataclass(frozen=True, slots=True)
class Shape:
    name: str
    summary: str
    suffix: str = ".pcap"
    linktype: int = wire.LINKTYPE_ETHERNET
    flows: Callable[[random.Random, Pool], Flows] | None = None
    radio: Radio | None = None
    wrap: Wrap = vlan_tags
    """With neither flows nor radio: how the bench mix's frames are framed."""
    packets: int = 1_000_000
    """Packets a capture of the shape has unless asked otherwise."""
    amsdu: int = 1
    """With a radio: the packets of a drone's downlink stream to an 802.11 A-MSDU."""


SHAPES: dict[str, Shape] = {
    s.name: s
    for s in (
        Shape(
            "one_way_tcp",
            "client-to-server only: SYN and data, no SYN-ACK, no server packet",
            flows=one_way_flows,
        ),
        Shape(
            "tls_no_serverhello",
            "DNS, then TLS ClientHello and upload, ServerHello never seen, gaps",
            flows=tls_no_hello_flows,
        ),
        Shape(
            "seq_gaps",
            "both directions of TLS and HTTP, 0.5-4% of segments lost, 1% swapped",
            flows=seq_gap_flows,
        ),
        Shape(
            "long_flows",
            "~80 flows of 5k-25k packets: RTMP, TLS upload, MAVLink, DUML, MQTT, RTP",
            flows=long_flows,
        ),
        Shape(
            "short_flows",
            "~300k short flows from 60k hosts: DNS (85%), short HTTP/TLS, resets",
            flows=short_flows,
        ),
        Shape(
            "wifi_radiotap",
            "802.11 monitor mode, radiotap and FCS (link type 127): drone Wi-Fi links",
            linktype=wire.LINKTYPE_IEEE802_11_RADIOTAP,
            radio=radiotap_radio,
        ),
        Shape(
            "wifi_dot11",
            "the same 802.11 frames without radiotap (link type 105)",
            linktype=wire.LINKTYPE_IEEE802_11,
            radio=bare_radio,
        ),
        Shape(
            "wifi_amsdu",
            "the same 802.11 mix, drones' downlinks aggregated 3 packets to an A-MSDU (802.11n)",
            linktype=wire.LINKTYPE_IEEE802_11_RADIOTAP,
            radio=radiotap_radio,
            amsdu=3,
        ),
        Shape(
            "pcapng_vlan",
            "the bench mix as pcapng (2 interfaces), 802.1Q tags, a fifth QinQ",
            suffix=".pcapng",
        ),
        Shape("vlan_pcap", "the same tagged frames as classic pcap (VLAN apart from pcapng)"),
        Shape(
            "tunnels",
            "the bench mix from remote mirrors: ERSPAN II over GRE and VXLAN, alternately",
            wrap=remote_mirror,
        ),
        Shape(
            "mid_stream",
            "TLS, HTTP and MQTT joined mid-session: no SYN, often no ClientHello",
            flows=mid_stream_flows,
        ),
        Shape(
            "icmp",
            "ICMP and ICMPv6: pings for minutes, neighbour discovery, router adverts, traceroutes",
            flows=icmp_flows,
        ),
        Shape(
            "syn_scan",
            "one SYN per flow to random hosts and ports, 20,000 a second (250,000 SYNs)",
            flows=syn_scan,
            packets=250_000,
        ),
    )
}


SEEDS = {"wifi_dot11": "wifi_radiotap", "vlan_pcap": "pcapng_vlan", "tunnels": "pcapng_vlan"}
"""Shapes built from the same random draws as another: the same traffic, another framing."""


def path_of(name: str, directory: Path) -> Path:
    return directory / f"{name}{SHAPES[name].suffix}"


def build(name: str, out: Path, packets: int, seed: int = 1) -> int:
    """Write shape `name` to `out`; returns the flows (or sessions) its generator started."""
    shape = SHAPES[name]
    rng = random.Random(f"{SEEDS.get(name, name)}:{seed}")
    pool = Pool(rng)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as fh:
        if shape.suffix == ".pcapng":
            writer: wire.PcapWriter = wire.PcapngWriter(
                fh,
                [(wire.LINKTYPE_ETHERNET, "mirror0", 6), (wire.LINKTYPE_ETHERNET, "dronelink0", 9)],
            )
        else:
            writer = wire.PcapWriter(fh, shape.linktype)
        if shape.flows is not None:
            started = interleave(shape.flows(rng, pool), packets, writer.write, name)
        elif shape.radio is not None:
            flows = wifi_flows(rng, pool, shape.radio, shape.amsdu)
            started = interleave(flows, packets, writer.write, name)
        else:
            bench_mix(writer, packets, shape.wrap)
            started = 0
        writer.close()
    return started
