"""Real protocol clients used by the recordings: Python ssl/http.client, aioquic, dnspython,
paho-mqtt, ffmpeg, and the phone ends of the drone links.

Every function takes the server's IP address literally, so nothing ever asks the system resolver:
names travel only as SNI, Host headers, tcUrl and DNS queries to the lab's own DNS server.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import socket
import ssl
import struct
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import zone
from links import (
    ARNET_ACK,
    ARNET_DATA,
    ARNET_DATA_WITH_ACK,
    BUF_C2D_ACK,
    BUF_C2D_NONACK,
    BUF_PING,
    BUF_PONG,
    DEV_APP,
    DEV_CAMERA,
    DEV_FC,
    DEV_GIMBAL,
    arcmd,
    arnet_frame,
    arnet_split,
    dev,
    duml_frame,
    ping_payload,
)


def say(msg: str) -> None:
    print(msg, flush=True)


# --- DNS --------------------------------------------------------------------------------------


def resolve(server: str, name: str, rdtype: str = "A", port: int = 53) -> list[str]:
    """Resolve NAME with dnspython's stub resolver pointed at SERVER only (no system config)."""
    import dns.resolver

    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [server]
    r.port = port
    r.timeout = r.lifetime = 3.0
    r.cache = None
    try:
        ans = r.resolve(name, rdtype, search=False)
    except dns.resolver.NXDOMAIN:
        say(f"dns {name} {rdtype}: NXDOMAIN")
        return []
    out = [rr.to_text() for rr in ans]
    say(f"dns {name} {rdtype}: {out} (canonical {ans.canonical_name})")
    return out


def resolve_tcp(server: str, name: str, rdtype: str = "A", port: int = 53) -> list[str]:
    import dns.message
    import dns.query

    q = dns.message.make_query(name, rdtype, use_edns=0)
    resp = dns.query.tcp(q, server, port=port, timeout=3.0)
    out = [rr.to_text() for rrs in resp.answer for rr in rrs]
    say(f"dns/tcp {name} {rdtype}: {out}")
    return out


# --- HTTPS over Python ssl --------------------------------------------------------------------


def client_context(alpn: Sequence[str] = ("h2", "http/1.1")) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # lab certificate is self-signed
    ctx.set_alpn_protocols(list(alpn))
    return ctx


class PinnedHTTPS(http.client.HTTPSConnection):
    """HTTPS to a fixed IP with SNI and Host = the service name (like a phone after its DNS
    lookup); never asks the system resolver."""

    def __init__(
        self, name: str, ip: str, port: int = 443, ctx: ssl.SSLContext | None = None
    ) -> None:
        self._ctx = ctx or client_context()
        super().__init__(name, port, context=self._ctx, timeout=15)
        self.ip = ip

    def connect(self) -> None:
        fam = socket.AF_INET6 if ":" in self.ip else socket.AF_INET
        raw = socket.socket(fam, socket.SOCK_STREAM)
        raw.settimeout(self.timeout)
        raw.connect((self.ip, self.port))
        self.sock = self._ctx.wrap_socket(raw, server_hostname=self.host)
        tls = self.sock
        alpn = tls.selected_alpn_protocol()
        say(f"tls {self.host}@{self.ip}:{self.port} {tls.version()} alpn={alpn}")

    def close_notify(self) -> None:
        """Send close_notify, wait for the server's, close TCP."""
        sock = self.sock
        if isinstance(sock, ssl.SSLSocket):
            try:
                sock.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
        self.close()


Request = tuple[str, str, bytes | None, dict[str, str]]


def https_session(
    name: str,
    ip: str,
    requests: Sequence[Request],
    port: int = 443,
    alpn: Sequence[str] = ("h2", "http/1.1"),
) -> None:
    """Several HTTP/1.1 requests on one TLS connection, then a clean close."""
    conn = PinnedHTTPS(name, ip, port, client_context(alpn))
    try:
        for method, path, body, headers in requests:
            conn.request(method, path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            say(f"https {method} {name}{path} -> {resp.status} ({len(data)} bytes)")
    finally:
        conn.close_notify()


def http_session(ip: str, host: str, requests: Sequence[Request], port: int = 80) -> None:
    """Plain HTTP/1.1 keep-alive: several requests on one connection with http.client."""
    conn = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        for method, path, body, headers in requests:
            conn.request(method, path, body=body, headers={"Host": host, **headers})
            resp = conn.getresponse()
            data = resp.read()
            say(f"http {method} {host}{path} -> {resp.status} ({len(data)} bytes)")
    finally:
        conn.close()


def tls_split_hello(
    name: str, ip: str, path: str, ua: str, port: int = 443, pieces: Sequence[int] = (40, 170)
) -> None:
    """One HTTPS request whose ClientHello leaves in three TCP segments: the handshake runs over
    ssl.MemoryBIO and the first flight is written to a TCP_NODELAY socket in pieces."""
    ctx = client_context()
    raw = socket.create_connection((ip, port), timeout=10)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=name)
    first = True
    while True:
        try:
            obj.do_handshake()
            done = True
        except ssl.SSLWantReadError:
            done = False
        data = out.read()
        if data and first:
            cuts = [0, *pieces, len(data)]
            for a, b in zip(cuts, cuts[1:], strict=False):
                raw.sendall(data[a:b])
                time.sleep(0.05)
            say(f"split ClientHello of {len(data)} bytes at {list(pieces)}")
            first = False
        elif data:
            raw.sendall(data)
        if done:
            break
        chunk = raw.recv(65536)
        if not chunk:
            raise ConnectionError("server closed during handshake")
        inc.write(chunk)
    req = (
        f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: {ua}\r\n"
        "Accept: application/json\r\nConnection: keep-alive\r\n\r\n"
    ).encode()
    obj.write(req)
    raw.sendall(out.read())
    buf = b""
    while True:
        head, sep, rest = buf.partition(b"\r\n\r\n")
        if sep:
            clen = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    clen = int(line.split(b":")[1])
            if len(rest) >= clen:
                break
        try:
            buf += obj.read(65536)
        except ssl.SSLWantReadError:
            chunk = raw.recv(65536)
            if not chunk:
                break
            inc.write(chunk)
    status_line = head.split(b"\r\n")[0].decode()
    say(f"split-hello GET {name}{path} -> {status_line}")
    try:
        obj.unwrap()
    except ssl.SSLWantReadError:
        raw.sendall(out.read())
        chunk = raw.recv(65536)
        inc.write(chunk)
        try:
            obj.unwrap()
        except ssl.SSLError:
            pass
    raw.close()


# --- QUIC / HTTP/3 with aioquic ---------------------------------------------------------------


def quic_get(
    name: str,
    ip: str,
    paths: Sequence[str],
    version: str = "v1",
    port: int = 443,
    ua: str = zone.UA_DJI_FLY,
) -> None:
    from aioquic.asyncio import QuicConnectionProtocol, connect
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, H3Event, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent
    from aioquic.quic.packet import QuicProtocolVersion

    class Client(QuicConnectionProtocol):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.h3 = H3Connection(self._quic)
            self.waiters: dict[int, asyncio.Future[int]] = {}
            self.sizes: dict[int, int] = {}

        def quic_event_received(self, event: QuicEvent) -> None:
            for ev in self.h3.handle_event(event):
                self._h3(ev)

        def _h3(self, ev: H3Event) -> None:
            if isinstance(ev, DataReceived):
                self.sizes[ev.stream_id] = self.sizes.get(ev.stream_id, 0) + len(ev.data)
            if isinstance(ev, (DataReceived, HeadersReceived)) and ev.stream_ended:
                fut = self.waiters.pop(ev.stream_id, None)
                if fut and not fut.done():
                    fut.set_result(self.sizes.get(ev.stream_id, 0))

        async def get(self, path: str) -> int:
            sid = self._quic.get_next_available_stream_id()
            self.h3.send_headers(
                sid,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"https"),
                    (b":authority", name.encode()),
                    (b":path", path.encode()),
                    (b"user-agent", ua.encode()),
                    (b"accept", b"image/webp,image/png,*/*"),
                ],
                end_stream=True,
            )
            fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            self.waiters[sid] = fut
            self.transmit()
            return await asyncio.wait_for(fut, 10)

    ver = {"v1": QuicProtocolVersion.VERSION_1, "v2": QuicProtocolVersion.VERSION_2}[version]

    async def main() -> None:
        cfg = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, server_name=name, verify_mode=ssl.CERT_NONE
        )
        cfg.supported_versions = [ver]
        async with connect(ip, port, configuration=cfg, create_protocol=Client) as client:
            assert isinstance(client, Client)
            say(f"quic {name}@{ip}:{port} version=0x{client._quic._version:08x} connected")
            for p in paths:
                n = await client.get(p)
                say(f"h3 GET {name}{p} -> {n} bytes")
            client.close()
            await client.wait_closed()

    asyncio.run(main())


# --- MQTT with paho -------------------------------------------------------------------------


def osd_json(i: int) -> bytes:
    return json.dumps(
        {
            "tid": f"6a7bfe89-c386-4043-b600-b518e10096c{i % 10}",
            "bid": "42a19f36-5117-4520-bd13-fd61d818d52e",
            "timestamp": 1718000000000 + 500 * i,
            "gateway": "5YSZL9A00100AB",
            "data": {
                "latitude": 22.5431 + 1e-5 * i,
                "longitude": 113.9581,
                "height": 120.5 + i,
                "elevation": 30.2,
                "attitude_head": 88.1,
                "horizontal_speed": 4.2,
                "battery": {"capacity_percent": 87 - i},
                "mode_code": 4,
            },
        }
    ).encode()


def mqtt_session(
    ip: str,
    port: int,
    version: int,
    osd_count: int,
    status: bool,
    events: bool,
    on_subscribed: Callable[[], None] | None = None,
    wait_message: float = 0.0,
) -> None:
    """A DJI Pilot 2 style MQTT session: SUBSCRIBE services, PUBLISH osd (QoS 0) several times,
    status/events (QoS 1), receive what the cloud sends, DISCONNECT."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    v5 = version == 5
    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=zone.DJI_CLIENT_ID,
        protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
    )
    connected, subscribed, got = threading.Event(), threading.Event(), threading.Event()
    c.on_connect = lambda *a: connected.set()
    c.on_subscribe = lambda *a: subscribed.set()

    def on_message(_c: Any, _u: Any, msg: Any) -> None:
        say(f"mqtt got {msg.topic}: {msg.payload[:60]!r}")
        got.set()

    c.on_message = on_message
    if v5:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 0
        c.connect(ip, port, keepalive=60, clean_start=True, properties=props)
    else:
        c.connect(ip, port, keepalive=60)
    c.loop_start()
    try:
        if not connected.wait(10):
            raise TimeoutError("mqtt connect")
        c.subscribe(zone.TOPIC_SERVICES, qos=1)
        if not subscribed.wait(10):
            raise TimeoutError("mqtt subscribe")
        say("SUBSCRIBED")
        if on_subscribed:
            on_subscribed()
        for i in range(osd_count):
            c.publish(zone.TOPIC_OSD, osd_json(i), qos=0)
            time.sleep(0.3)
        if status:
            body = json.dumps(
                {
                    "tid": "f0e5c1d4",
                    "bid": "0d7c1b4a",
                    "timestamp": 1718000004000,
                    "method": "update_topo",
                    "data": {
                        "domain": "2",
                        "type": 144,
                        "sub_type": 0,
                        "device_secret": "",
                        "nonce": "",
                        "sub_devices": [{"sn": "1581F5FHD22AB00D0123", "type": 67}],
                    },
                }
            )
            c.publish(zone.TOPIC_STATUS, body.encode(), qos=1).wait_for_publish(10)
        if events:
            body = json.dumps(
                {
                    "tid": "a1b2c3d4",
                    "bid": "e5f6a7b8",
                    "timestamp": 1718000005000,
                    "method": "flighttask_progress",
                    "need_reply": 1,
                    "data": {
                        "output": {
                            "status": "in_progress",
                            "progress": {"current_step": 7, "percent": 40},
                        }
                    },
                }
            )
            c.publish(zone.TOPIC_EVENTS, body.encode(), qos=1).wait_for_publish(10)
        if wait_message and not got.wait(wait_message):
            say("mqtt: no services message arrived")
        time.sleep(0.3)
    finally:
        c.disconnect()
        c.loop_stop()
    say("mqtt done")


def mqtt_cloud_publish(ip: str, port: int, version: int) -> None:
    """The fleet server's side: publish one services request to the device."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id="fleet-server-01",
        protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
    )
    c.connect(ip, port, keepalive=30)
    c.loop_start()
    body = json.dumps(
        {
            "tid": "9c1f0b2e",
            "bid": "77aa0c3d",
            "timestamp": 1718000003000,
            "method": "flighttask_prepare",
            "data": {"flight_id": "lab-0001"},
        }
    )
    c.publish(zone.TOPIC_SERVICES, body.encode(), qos=1).wait_for_publish(10)
    c.disconnect()
    c.loop_stop()


# --- ffmpeg RTMP / RTSP clients -------------------------------------------------------------


def ffmpeg(args: Sequence[str], timeout: float = 60) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "warning", *args]
    say("run " + " ".join(cmd))
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if res.stderr.strip():
        say(res.stderr.strip()[-800:])
    if res.returncode != 0:
        raise RuntimeError(f"ffmpeg exited {res.returncode}")


TESTSRC = ["-re", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=10"]


def rtmp_publish(
    ip: str, app: str, stream: str, tcurl: str | None, secs: float = 3.0, port: int = 1935
) -> None:
    args = [*TESTSRC, "-t", str(secs), "-an", "-c:v", "flv1", "-b:v", "48k", "-g", "10"]
    if tcurl:
        args += ["-rtmp_tcurl", tcurl]
    ffmpeg([*args, "-f", "flv", f"rtmp://{ip}:{port}/{app}/{stream}"])


# --- phone ends of the drone links ---------------------------------------------------------


def _drain(s: socket.socket, secs: float) -> None:
    end = time.monotonic() + secs
    while time.monotonic() < end:
        try:
            s.recvfrom(4096)
        except TimeoutError:
            pass


def duml_link(
    drone: str, stop: threading.Event, port: int = 9003, sport: int = 12346, hz: float = 10.0
) -> int:
    """The app's side of the DJI Wi-Fi link: DUML requests from UDP 12346 to the aircraft's 9003
    (heartbeat-style requests to the flight controller, gimbal and camera), reading its answers."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.settimeout(0.01)
    seq = 0x1200
    sent = 0
    targets = [
        (DEV_FC, 0x00, 0x0E),
        (DEV_GIMBAL, 0x04, 0x05),
        (DEV_CAMERA, 0x02, 0x80),
        (DEV_FC, 0x03, 0x43),
    ]
    while not stop.is_set():
        kind, cset, cid = targets[sent % len(targets)]
        payload = struct.pack("<I", sent) if cset == 0 else b"\x01"
        s.sendto(duml_frame(dev(DEV_APP), dev(kind), seq, cset, cid, payload, ack=2), (drone, port))
        seq = (seq + 1) & 0xFFFF
        sent += 1
        end = time.monotonic() + 1.0 / hz
        while time.monotonic() < end:
            try:
                s.recvfrom(2048)
            except TimeoutError:
                pass
    _drain(s, 0.5)  # the last answers are still on their way: no ICMP port unreachable
    s.close()
    say(f"duml link: {sent} frames sent")
    return sent


def parrot_discovery(drone: str, d2c_port: int = 9988) -> int:
    req = {
        "controller_type": "computer",
        "controller_name": "dronewatch-lab",
        "d2c_port": d2c_port,
        "proto_v_min": 1,
        "proto_v_max": 3,
    }
    with socket.create_connection((drone, 44444), timeout=5) as c:
        c.sendall(json.dumps(req, separators=(",", ":")).encode() + b"\x00")
        buf = b""
        while b"\x00" not in buf:
            chunk = c.recv(4096)
            if not chunk:
                break
            buf += chunk
    reply = json.loads(buf.rstrip(b"\x00").decode())
    say(f"parrot discovery reply: {reply}")
    return int(reply["c2d_port"])


def arsdk_controller(drone: str, c2d_port: int, secs: float, d2c_port: int = 9988) -> None:
    """FreeFlight's side of ARSDK: PCMD at 20 Hz (non-ack buffer 10), AllStates/TakeOff/Landing
    (ack buffer 11), answering pings and acknowledging the drone's event buffer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", d2c_port))
    s.settimeout(0.01)
    seqs: dict[int, int] = {}

    def nxt(buf: int) -> int:
        seqs[buf] = (seqs.get(buf, -1) + 1) & 0xFF
        return seqs[buf]

    def send(ftype: int, buf: int, payload: bytes) -> None:
        s.sendto(arnet_frame(ftype, buf, nxt(buf), payload), (drone, c2d_port))

    send(ARNET_DATA_WITH_ACK, BUF_C2D_ACK, arcmd(0, 4, 0))  # Common.Common.AllStates
    send(ARNET_DATA_WITH_ACK, BUF_C2D_ACK, arcmd(1, 2, 0))  # ARDrone3.Settings.AllSettings
    t0 = time.monotonic()
    i = 0
    took_off = landed = False
    while time.monotonic() - t0 < secs:
        t = time.monotonic() - t0
        if not took_off and t > 1.0:
            send(ARNET_DATA_WITH_ACK, BUF_C2D_ACK, arcmd(1, 0, 1))  # Piloting.TakeOff
            took_off = True
        if not landed and t > secs - 1.0:
            send(ARNET_DATA_WITH_ACK, BUF_C2D_ACK, arcmd(1, 0, 3))  # Piloting.Landing
            landed = True
        pitch = int(20 * math.sin(t)) if took_off and not landed else 0
        pcmd = struct.pack("<BbbbbI", 1 if pitch else 0, 0, pitch, 0, 0, i & 0xFFFFFF)
        send(ARNET_DATA, BUF_C2D_NONACK, arcmd(1, 0, 2, pcmd))  # Piloting.PCMD
        if i % 20 == 0:
            send(ARNET_DATA, BUF_PING, ping_payload(t))
        i += 1
        end = time.monotonic() + 0.05
        while time.monotonic() < end:
            try:
                data, _ = s.recvfrom(4096)
            except TimeoutError:
                continue
            for ftype, buf, seq, payload in arnet_split(data):
                if ftype == ARNET_DATA_WITH_ACK:
                    send(ARNET_ACK, 128 + buf, bytes([seq]))
                elif buf == BUF_PING:
                    send(ARNET_DATA, BUF_PONG, payload)
    _drain(s, 1.2)  # the drone stops streaming when the controller falls silent
    s.close()
    say(f"arsdk controller: {i} PCMD frames")


def mavlink_gcs(secs: float, port: int = 14550) -> None:
    """QGroundControl's side: listen on UDP 14550, send a GCS HEARTBEAT at 1 Hz to the vehicle."""
    from pymavlink.dialects.v20 import common as mav

    m = mav.MAVLink(None, srcSystem=255, srcComponent=mav.MAV_COMP_ID_MISSIONPLANNER)
    parser = mav.MAVLink(None, srcSystem=255, srcComponent=190)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    s.settimeout(0.05)
    say("GCS LISTENING")
    vehicle = None
    seen: dict[str, int] = {}
    t0 = time.monotonic()
    last_hb = 0.0
    while time.monotonic() - t0 < secs:
        try:
            data, addr = s.recvfrom(2048)
            vehicle = addr
            for msg in parser.parse_buffer(data) or []:
                seen[msg.get_type()] = seen.get(msg.get_type(), 0) + 1
        except TimeoutError:
            pass
        if vehicle and time.monotonic() - last_hb >= 1.0:
            hb = m.heartbeat_encode(
                mav.MAV_TYPE_GCS, mav.MAV_AUTOPILOT_INVALID, 0, 0, mav.MAV_STATE_ACTIVE
            )
            s.sendto(hb.pack(m), vehicle)
            m.seq = (m.seq + 1) % 256
            last_hb = time.monotonic()
    s.close()
    say(f"mavlink gcs saw {seen}")
