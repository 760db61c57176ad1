"""Sessions of the benchmark's traffic shapes (bench/shapes.py): TCP connections with consistent
sequence numbers (TLS, HTTP, MQTT, RTMP), DNS lookups and drone-link streams over UDP (MAVLink,
DJI DUML, RTP), each a generator of (time, Ethernet frame) in time order.

Clients are private addresses (phones and docks on site networks); servers are public-looking
addresses drawn at random, a few per vendor-looking name (`Net`), and the DNS answers map the
names to them. Rates and sizes are plausible for drone apps: uploads of a few MB at 2-40 Mbit/s,
telemetry at the rates ArduPilot and DJI's links use, video at 3-8 Mbit/s.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import struct
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import wire
from wire import TCP_ACK, TCP_FIN, TCP_PSH, TCP_SYN, Pool

BASE_TS = 1_750_000_000.0
MSS = 1448
GATEWAY_MAC = bytes.fromhex("0090a27e1c01")
Packets = Iterator[tuple[float, bytes]]
Flows = Iterator[tuple[float, Packets]]

# (name, port, ALPN): hosts a drone app talks to, as the rule packs name them.
TLS_NAMES = (
    ("api.djiservice.org", 443, ("h2", "http/1.1")),
    ("mydjiflight.dji.com", 443, ("h2", "http/1.1")),
    ("flysafe-api.dji.com", 443, ("http/1.1",)),
    ("account.dji.com", 443, ("h2", "http/1.1")),
    ("statistical-report.djiservice.org", 443, ("http/1.1",)),
    ("djigo4-f53cb.firebaseio.com", 443, ("http/1.1",)),
    ("www.google-analytics.com", 443, ("h2", "http/1.1")),
    ("api.mapbox.com", 443, ("h2", "http/1.1")),
    ("app.airdata.com", 443, ("h2", "http/1.1")),
    ("accounts.parrot.com", 443, ("h2", "http/1.1")),
    ("api.skydio.com", 443, ("h2",)),
    ("app.autelrobotics.com", 443, ("http/1.1",)),
    ("drone-logs.autelrobotics.com", 443, ("http/1.1",)),
    ("api.ryzerobotics.com", 443, ("http/1.1",)),
    ("hub.flylitchi.com", 443, ("h2", "http/1.1")),
    ("api.dronedeploy.com", 443, ("h2", "http/1.1")),
    ("mqtt.dji.com", 8883, ()),
)
UPLOAD_NAMES = (
    "dji-media.oss-cn-shenzhen.aliyuncs.com",
    "skypixel-upload.oss-cn-hangzhou.aliyuncs.com",
    "cloud.pix4d.com",
    "api.dronedeploy.com",
    "clouddisk.autelrobotics.com",
)
HTTP_NAMES = ("flysafe.dji.com", "dl.djicdn.com", "firmware.ardupilot.org", "cdn.airmap.io")
AGENTS = ("DJI-Fly/1.14.2 (Android 14)", "okhttp/4.12.0", "FreeFlight7/7.4 (iOS 17.5)")
RESOLVER6 = bytes.fromhex("fd000000000000640000000000000053")
PUBLIC_FIRST = (3, 13, 18, 23, 34, 35, 39, 43, 47, 52, 54, 81, 101, 104, 110, 116, 120, 139, 151)


class Net:
    """Addresses of one shape: clients, and servers with the names that resolve to them."""

    def __init__(self, rng: random.Random, clients: int, prefix: tuple[int, int] = (10, 20)):
        self.rng = rng
        self.clients = clients
        self.prefix = prefix
        names = [n for n, _, _ in TLS_NAMES] + list(UPLOAD_NAMES) + list(HTTP_NAMES)
        self.addrs = {n: [self.public() for _ in range(rng.randint(1, 4))] for n in names}
        self.resolvers = [bytes([10, prefix[1], 0, 53]), bytes([8, 8, 8, 8])]

    def public(self) -> bytes:
        rng = self.rng
        return bytes(
            [
                rng.choice(PUBLIC_FIRST),
                rng.randrange(1, 255),
                rng.randrange(0, 256),
                rng.randrange(1, 255),
            ]
        )

    def client(self) -> bytes:
        i = self.rng.randrange(self.clients)
        return bytes(
            [self.prefix[0], self.prefix[1] + (i >> 16), (i >> 8) & 0xFF, 1 + (i & 0xFF) % 254]
        )


def ether_wrap(client: bytes) -> Callable[[bytes, bool, bool], bytes]:
    """Frames of one client's packets on the client's Ethernet (to and from its gateway)."""
    cmac = wire.mac_for(client)

    def wrap(ip: bytes, up: bool, v6: bool = False) -> bytes:
        etype = wire.ETH_IP6 if v6 else wire.ETH_IP4
        return (
            wire.ether(GATEWAY_MAC, cmac, etype, ip)
            if up
            else wire.ether(cmac, GATEWAY_MAC, etype, ip)
        )

    return wrap


class Conn:
    """One TCP connection: frames in each direction with consistent sequence numbers."""

    def __init__(
        self,
        rng: random.Random,
        client: bytes,
        server: bytes,
        cport: int,
        sport: int,
        wrap: Callable[[bytes, bool, bool], bytes] | None = None,
    ) -> None:
        self.c, self.s, self.cport, self.sport = client, server, cport, sport
        self.cseq, self.sseq = rng.getrandbits(32), rng.getrandbits(32)
        self.cid, self.sid = rng.getrandbits(16), rng.getrandbits(16)
        self.wrap = wrap or ether_wrap(client)
        self.v6 = len(client) == 16

    def _ip(self, src: bytes, dst: bytes, seg: bytes, ident: int) -> bytes:
        if self.v6:
            return wire.ip6(src, dst, 6, seg)
        return wire.ip4(src, dst, 6, seg, ident)

    def up(self, flags: int, payload: bytes = b"") -> bytes:
        """A segment from the client; it moves the client's sequence number on."""
        seg = wire.tcp(
            self.cport, self.sport, self.cseq, self.sseq if flags & TCP_ACK else 0, flags, payload
        )
        self.cseq = (
            self.cseq + len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        ) & 0xFFFFFFFF
        self.cid += 1
        return self.wrap(self._ip(self.c, self.s, seg, self.cid), True, self.v6)

    def down(self, flags: int, payload: bytes = b"") -> bytes:
        """A segment from the server; it moves the server's sequence number on."""
        seg = wire.tcp(
            self.sport, self.cport, self.sseq, self.cseq if flags & TCP_ACK else 0, flags, payload
        )
        self.sseq = (
            self.sseq + len(payload) + (1 if flags & (TCP_SYN | TCP_FIN) else 0)
        ) & 0xFFFFFFFF
        self.sid += 1
        return self.wrap(self._ip(self.s, self.c, seg, self.sid), False, self.v6)

    def unseen_down(self, n: int) -> None:
        """The server sent `n` sequence numbers the capture does not show (a one-way mirror)."""
        self.sseq = (self.sseq + n) & 0xFFFFFFFF


def segments(data: bytes, mss: int = MSS) -> list[bytes]:
    return [data[i : i + mss] for i in range(0, len(data), mss)] or [b""]


def cut(messages: Iterator[bytes], total: int) -> Iterator[bytes]:
    """The first `total` bytes (rounded up to a segment) of a stream of messages, in MSS-sized
    segments."""
    buf = b""
    sent = 0
    while sent < total:
        while len(buf) < MSS:
            buf += next(messages)
        seg, buf = buf[:MSS], buf[MSS:]
        sent += MSS
        yield seg


def tls_stream(pool: Pool, total: int) -> Iterator[bytes]:
    """`total` bytes of TLS application-data records (16 KB each), cut in MSS-sized segments."""
    return cut(iter(lambda: b"\x17\x03\x03\x40\x11" + pool.take(16401), b""), total)


def dns_flow(
    rng: random.Random,
    pool: Pool,
    net: Net,
    t: float,
    client: bytes,
    name: str,
    addrs: Sequence[bytes],
    answered: bool = True,
) -> Packets:
    """One DNS lookup from a client's random port: a query and (if `answered`) its answer."""
    v6 = len(client) == 16
    resolver = RESOLVER6 if v6 else rng.choice(net.resolvers)
    qid, port = rng.getrandbits(16), rng.randrange(1024, 65536)
    qtype = 28 if addrs and len(addrs[0]) == 16 else 1
    wrap = ether_wrap(client if not v6 else client[-4:])
    query = wire.dns_query(qid, name, qtype)
    answer = wire.dns_answer(qid, name, addrs, qtype, ttl=rng.choice((60, 300, 600, 3600)))
    if v6:
        yield (
            t,
            wrap(
                wire.ip6(client, resolver, 17, wire.udp6(client, resolver, port, 53, query)),
                True,
                True,
            ),
        )
        if answered:
            t += rng.uniform(0.002, 0.06)
            yield (
                t,
                wrap(
                    wire.ip6(resolver, client, 17, wire.udp6(resolver, client, 53, port, answer)),
                    False,
                    True,
                ),
            )
        return
    ident = rng.getrandbits(16)
    yield t, wrap(wire.ip4(client, resolver, 17, wire.udp(port, 53, query), ident), True, False)
    if answered:
        t += rng.uniform(0.002, 0.06)
        yield (
            t,
            wrap(
                wire.ip4(resolver, client, 17, wire.udp(53, port, answer), ident + 7), False, False
            ),
        )


@dataclass(slots=True)
class Impair:
    """What the capture loses of a session: segments never seen, and adjacent ones swapped."""

    server_seen: bool = True
    server_hello_seen: bool = True
    loss: float = 0.0
    swap: float = 0.0


def tls_session(
    rng: random.Random,
    pool: Pool,
    net: Net,
    t: float,
    client: bytes,
    name: str,
    port: int,
    alpn: Sequence[str],
    up_bytes: int,
    down_bytes: int,
    imp: Impair,
) -> Packets:
    """A TLS 1.3 connection: handshake, then the client's upload and the server's download (ACK
    every second segment), then FIN both ways; `imp` says what the capture misses."""
    server = rng.choice(net.addrs[name])
    conn = Conn(rng, client, server, rng.randrange(32768, 61000), port)
    rtt = rng.uniform(0.015, 0.25)
    rate = rng.uniform(2e6, 40e6) / 8  # bytes a second
    out: list[tuple[float, bytes, bool]] = []  # time, frame, whether the capture may lose it

    def srv(flags: int, payload: bytes = b"", hello: bool = False) -> None:
        frame = conn.down(flags, payload)
        if imp.server_seen and (imp.server_hello_seen or not hello):
            out.append((t, frame, bool(payload)))

    out.append((t, conn.up(TCP_SYN), False))
    t += rtt
    srv(TCP_SYN | TCP_ACK)
    t += 0.0003
    out.append((t, conn.up(TCP_ACK), False))
    hello = wire.client_hello(name, alpn, pool, pq=rng.random() < 0.3)
    for seg in segments(hello):
        out.append((t, conn.up(TCP_PSH | TCP_ACK, seg), True))
        t += 0.0001
    t += rtt
    for seg in segments(wire.server_hello(pool, rng.randrange(2500, 5200))):
        srv(TCP_ACK, seg, hello=True)
        t += 0.0002
    t += 0.001
    out.append(
        (t, conn.up(TCP_PSH | TCP_ACK, b"\x14\x03\x03\x00\x01\x01" + wire.app_data(pool, 53)), True)
    )
    t += 0.0005
    out.append((t, conn.up(TCP_PSH | TCP_ACK, wire.app_data(pool, rng.randrange(180, 700))), True))
    t += rtt
    for i, seg in enumerate(tls_stream(pool, up_bytes)):
        t += len(seg) / rate
        out.append((t, conn.up(TCP_ACK, seg), True))
        if i % 2:
            srv(TCP_ACK)
    for i, seg in enumerate(tls_stream(pool, down_bytes)):
        t += len(seg) / rate
        srv(TCP_ACK, seg)
        if i % 2:
            out.append((t, conn.up(TCP_ACK), False))
    t += rng.uniform(0.05, 5.0)
    out.append((t, conn.up(TCP_FIN | TCP_ACK), False))
    t += rtt
    srv(TCP_FIN | TCP_ACK)
    out.append((t, conn.up(TCP_ACK), False))
    yield from impaired(rng, out, imp)


def http_session(
    rng: random.Random, pool: Pool, net: Net, t: float, client: bytes, imp: Impair
) -> Packets:
    """An HTTP/1.1 GET of a file (map tiles, firmware, a flight-safety database)."""
    name = rng.choice(HTTP_NAMES)
    conn = Conn(rng, client, rng.choice(net.addrs[name]), rng.randrange(32768, 61000), 80)
    rtt = rng.uniform(0.015, 0.25)
    out: list[tuple[float, bytes, bool]] = [(t, conn.up(TCP_SYN), False)]
    t += rtt
    out.append((t, conn.down(TCP_SYN | TCP_ACK), False))
    out.append((t + 0.0003, conn.up(TCP_ACK), False))
    path = f"/v1/{rng.choice(('tiles', 'firmware', 'flysafe/db', 'nfz'))}/{rng.getrandbits(32):08x}"
    request = wire.http_request("GET", name, path, rng.choice(AGENTS))
    out.append((t + 0.0004, conn.up(TCP_PSH | TCP_ACK, request), True))
    t += rtt
    size = int(min(rng.lognormvariate(10.5, 1.5), 20e6))
    for i, seg in enumerate(segments(wire.http_response(pool, size, "application/octet-stream"))):
        t += len(seg) / 2e6
        out.append((t, conn.down(TCP_ACK | (TCP_PSH if len(seg) < MSS else 0), seg), True))
        if i % 2:
            out.append((t + 0.0001, conn.up(TCP_ACK), False))
    t += rng.uniform(0.1, 10.0)
    out.append((t, conn.up(TCP_FIN | TCP_ACK), False))
    out.append((t + rtt, conn.down(TCP_FIN | TCP_ACK), False))
    out.append((t + rtt + 0.0002, conn.up(TCP_ACK), False))
    yield from impaired(rng, out, imp)


def impaired(rng: random.Random, out: list[tuple[float, bytes, bool]], imp: Impair) -> Packets:
    """The session as the capture saw it: lossy segments dropped (a gap in sequence space, as a
    mirror port under load drops them), some adjacent segments swapped; times stay in order."""
    out.sort(key=lambda p: p[0])  # stable: a side's packets keep their order
    if not imp.loss and not imp.swap:
        for ts, frame, _ in out:
            yield ts, frame
        return
    kept = [(ts, frame) for ts, frame, lossy in out if not (lossy and rng.random() < imp.loss)]
    frames = [f for _, f in kept]
    for i in range(len(frames) - 1):
        if rng.random() < imp.swap:
            frames[i], frames[i + 1] = frames[i + 1], frames[i]
    for (ts, _), frame in zip(kept, frames, strict=True):
        yield ts, frame


def http_post_one_way(rng: random.Random, pool: Pool, net: Net, t: float, client: bytes) -> Packets:
    name = rng.choice(HTTP_NAMES)
    conn = Conn(rng, client, rng.choice(net.addrs[name]), rng.randrange(32768, 61000), 80)
    rtt = rng.uniform(0.015, 0.25)
    yield t, conn.up(TCP_SYN)
    conn.unseen_down(1)
    t += rtt
    yield t, conn.up(TCP_ACK)
    body = json.dumps(
        {"sn": f"1581F{rng.getrandbits(40):010X}", "log": pool.take(600).hex()}
    ).encode()
    request = wire.http_request("POST", name, "/api/v2/flight-records", rng.choice(AGENTS), body)
    for seg in segments(request):
        t += 0.0002
        yield t, conn.up(TCP_PSH | TCP_ACK, seg)
    t += rtt
    conn.unseen_down(rng.randrange(200, 3000))
    yield t, conn.up(TCP_ACK)
    t += rng.uniform(0.05, 2.0)
    yield t, conn.up(TCP_FIN | TCP_ACK)
    conn.unseen_down(1)
    yield t + rtt, conn.up(TCP_ACK)


def mqtt_tls_one_way(rng: random.Random, pool: Pool, net: Net, t: float, client: bytes) -> Packets:
    conn = Conn(
        rng, client, rng.choice(net.addrs["mqtt.dji.com"]), rng.randrange(32768, 61000), 8883
    )
    rtt = rng.uniform(0.015, 0.25)
    yield t, conn.up(TCP_SYN)
    conn.unseen_down(1)
    t += rtt
    yield t, conn.up(TCP_ACK)
    yield t, conn.up(TCP_PSH | TCP_ACK, wire.client_hello("mqtt.dji.com", (), pool))
    t += rtt
    conn.unseen_down(rng.randrange(2500, 5000))
    yield t, conn.up(TCP_PSH | TCP_ACK, b"\x14\x03\x03\x00\x01\x01" + wire.app_data(pool, 53))
    period = rng.choice((0.1, 0.2, 0.5, 1.0))
    for i in range(rng.randrange(300, 3000)):
        t += period * rng.uniform(0.9, 1.1)
        yield t, conn.up(TCP_PSH | TCP_ACK, wire.app_data(pool, rng.randrange(120, 600)))
        if i % 4 == 3:
            conn.unseen_down(31)
            yield t + rtt, conn.up(TCP_ACK)
    yield t + 1.0, conn.up(TCP_FIN | TCP_ACK)


def http_short(rng: random.Random, pool: Pool, net: Net, t: float, client: bytes) -> Packets:
    name = rng.choice(HTTP_NAMES)
    conn = Conn(rng, client, rng.choice(net.addrs[name]), rng.randrange(32768, 61000), 80)
    rtt = rng.uniform(0.01, 0.1)
    yield t, conn.up(TCP_SYN)
    yield t + rtt, conn.down(TCP_SYN | TCP_ACK)
    t += rtt
    yield t, conn.up(TCP_ACK)
    yield (
        t,
        conn.up(
            TCP_PSH | TCP_ACK, wire.http_request("GET", name, "/generate_204", rng.choice(AGENTS))
        ),
    )
    t += rtt
    yield t, conn.down(TCP_PSH | TCP_ACK, wire.http_response(pool, rng.randrange(0, 1200)))
    yield t, conn.up(TCP_ACK)
    yield t + 0.001, conn.up(TCP_FIN | TCP_ACK)
    yield t + rtt, conn.down(TCP_FIN | TCP_ACK)
    yield t + rtt, conn.up(TCP_ACK)


def in_time_order(packets: Packets) -> Packets:
    """A session's packets sorted by time (those written as each side sends, the other side's
    ACKs half a round trip later)."""
    return iter(sorted(packets, key=lambda p: p[0]))


def rtmp_upload(
    rng: random.Random, pool: Pool, net: Net, t: float, client: bytes, packets: int
) -> Packets:
    """A live stream to an RTMP ingest server (TCP 1935): handshake, `connect` and `publish`,
    then 3-8 Mbit/s of H.264 video, the server ACKing every second segment half a round trip
    later (in time order: `in_time_order`)."""
    conn = Conn(rng, client, net.public(), rng.randrange(32768, 61000), 1935)
    rtt = rng.uniform(0.02, 0.2)
    yield t, conn.up(TCP_SYN)
    t += rtt
    yield t, conn.down(TCP_SYN | TCP_ACK)
    yield t, conn.up(TCP_ACK)
    for seg in segments(b"\x03" + bytes(8) + pool.take(1528)):  # C0 C1
        yield t, conn.up(TCP_PSH | TCP_ACK, seg)
    t += rtt
    for seg in segments(b"\x03" + bytes(8) + pool.take(1528) + bytes(8) + pool.take(1528)):
        yield t, conn.down(TCP_ACK, seg)  # S0 S1 S2
    for seg in segments(bytes(8) + pool.take(1528)):  # C2
        yield t, conn.up(TCP_PSH | TCP_ACK, seg)
    key = f"{rng.getrandbits(64):016x}"
    publish = wire.rtmp_publish("live2", "rtmp://a.rtmp.youtube.com/live2", key)
    for seg in segments(publish):
        yield t, conn.up(TCP_PSH | TCP_ACK, seg)
    t += rtt
    yield t, conn.down(TCP_PSH | TCP_ACK, wire.rtmp_publish_replies())
    rate = rng.uniform(3e6, 8e6) / 8
    frames = (wire.rtmp_video(pool, n) for n in itertools.count())
    for i, seg in enumerate(cut(frames, packets * 2 // 3 * MSS)):
        t += MSS / rate
        yield t, conn.up(TCP_ACK, seg)
        if i % 2:
            yield t + rtt / 2, conn.down(TCP_ACK)
    yield t + 0.1, conn.up(TCP_FIN | TCP_ACK)
    yield t + 0.1 + rtt, conn.down(TCP_FIN | TCP_ACK)


def udp_pair(a: bytes, b: bytes) -> Callable[[bytes, bool, int, int], bytes]:
    """Frames between two hosts on one Ethernet (a drone link or a site LAN)."""
    mac_a, mac_b = wire.mac_for(a), wire.mac_for(b)
    ids = [0]

    def frame(payload: bytes, a_to_b: bool, sport: int, dport: int) -> bytes:
        ids[0] += 1
        src, dst = (a, b) if a_to_b else (b, a)
        ip = wire.ip4(src, dst, 17, wire.udp(sport, dport, payload), ids[0])
        return (
            wire.ether(mac_b, mac_a, wire.ETH_IP4, ip)
            if a_to_b
            else wire.ether(mac_a, mac_b, wire.ETH_IP4, ip)
        )

    return frame


def mavlink_messages(rng: random.Random) -> Iterator[tuple[float, int, bytes]]:
    """(period s, message id, payload) of a vehicle's telemetry stream, ArduPilot-like rates."""
    lat, lon = rng.uniform(35, 55), rng.uniform(-5, 25)
    yield 1.0, 0, struct.pack("<IBBBBB", 0, 2, 3, 0x81, 4, 3)
    yield 0.1, 30, struct.pack("<I6f", 0, 0.01, -0.02, 1.5, 0.0, 0.0, 0.0)
    yield (
        0.2,
        33,
        struct.pack("<I4i3hH", 0, int(lat * 1e7), int(lon * 1e7), 120000, 40000, 120, -30, 0, 9000),
    )
    yield 0.25, 74, struct.pack("<4fhH", 5.0, 5.2, 40.0, 0.1, 90, 45)
    yield (
        0.5,
        1,
        struct.pack("<3IHHh6Hb", 0xFFFF, 0xFFFF, 0xFFFF, 300, 15800, 1200, 0, 0, 0, 0, 0, 0, 78),
    )
    yield (
        0.5,
        24,
        struct.pack(
            "<Q3i4HBB", 0, int(lat * 1e7), int(lon * 1e7), 120000, 80, 120, 500, 9000, 3, 14
        ),
    )


def mavlink_udp(rng: random.Random, t: float, vehicle: bytes, gcs: bytes, packets: int) -> Packets:
    """A vehicle's MAVLink v2 stream to its ground station (UDP 14550) and the station's
    heartbeats back."""
    frame = udp_pair(vehicle, gcs)
    streams = list(mavlink_messages(rng))
    due = [(t + rng.uniform(0, p), i) for i, (p, _, _) in enumerate(streams)] + [(t + 0.5, -1)]
    heapq.heapify(due)
    seq = gseq = 0
    for _ in range(packets):
        ts, i = heapq.heappop(due)
        if i < 0:
            hb = struct.pack("<IBBBBB", 0, 6, 8, 0, 0, 3)
            yield ts, frame(wire.mavlink2(gseq, 255, 190, 0, hb), False, 14550, 14555)
            gseq += 1
            heapq.heappush(due, (ts + 1.0, -1))
            continue
        period, msgid, payload = streams[i]
        yield ts, frame(wire.mavlink2(seq, 1, 1, msgid, payload), True, 14555, 14550)
        seq += 1
        heapq.heappush(due, (ts + period * rng.uniform(0.97, 1.03), i))


def duml_udp(
    rng: random.Random, pool: Pool, t: float, aircraft: bytes, phone: bytes, packets: int
) -> Packets:
    """A Wi-Fi DJI aircraft's DUML link on UDP 9003: OSD pushes down at 50 Hz, the app's
    heartbeat and stick commands up at 20 Hz."""
    frame = udp_pair(aircraft, phone)
    port = rng.randrange(40000, 60000)
    seq_down = seq_up = 0
    for i in range(packets):
        t += rng.uniform(0.9, 1.1) / 70
        if i % 7 < 5:
            payload = wire.duml(seq_down, 0x03, 0x02, 0x00, 0x03, 0x43, pool.take(48))
            seq_down += 1
            yield t, frame(payload, True, 9003, port)
        else:
            payload = wire.duml(seq_up, 0x02, 0x03, 0x40, 0x03, 0x41, pool.take(12))
            seq_up += 1
            yield t, frame(payload, False, port, 9003)


def mqtt_telemetry(rng: random.Random, net: Net, t: float, client: bytes, packets: int) -> Packets:
    """A DJI Cloud API dock's MQTT session (TCP 1883): CONNECT, then OSD publishes at 2 Hz and
    the broker's ACKs."""
    conn = Conn(rng, client, net.public(), rng.randrange(32768, 61000), 1883)
    sn = f"4TADK{rng.getrandbits(36):09X}"
    yield t, conn.up(TCP_SYN)
    t += 0.03
    yield t, conn.down(TCP_SYN | TCP_ACK)
    yield t, conn.up(TCP_ACK)
    yield t, conn.up(TCP_PSH | TCP_ACK, wire.mqtt_connect(f"dock-{sn}"))
    t += 0.03
    yield t, conn.down(TCP_PSH | TCP_ACK, b"\x20\x02\x00\x00")
    for i in range(packets // 2):
        t += 0.5 * rng.uniform(0.95, 1.05)
        data = {"latitude": 22.5 + i * 1e-6, "longitude": 113.9, "height": 120.5, "battery": 80}
        osd = {"tid": f"{rng.getrandbits(64):016x}", "timestamp": int(t * 1000), "data": data}
        yield (
            t,
            conn.up(
                TCP_PSH | TCP_ACK,
                wire.mqtt_publish(f"thing/product/{sn}/osd", json.dumps(osd).encode()),
            ),
        )
        yield t + 0.03, conn.down(TCP_ACK)


def rtp_video(
    rng: random.Random, pool: Pool, t: float, src: bytes, dst: bytes, packets: int
) -> Packets:
    """H.264 over RTP (RFC 6184) from a companion computer to a ground station, UDP 5600."""
    frame = udp_pair(src, dst)
    ssrc = rng.getrandbits(32)
    for seq in range(packets):
        t += 1 / 400 * rng.uniform(0.5, 1.5)
        head = struct.pack("!BBHII", 0x80, 96, seq & 0xFFFF, int(t * 90000) & 0xFFFFFFFF, ssrc)
        yield t, frame(head + b"\x7c\x85" + pool.take(1200), True, 5600, 5600)
