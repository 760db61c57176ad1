"""The servers the recorded clients talk to: DNS, HTTP(S), QUIC/HTTP3, RTSP, and the simulated
aircraft ends of the drone links (DJI DUML on UDP 9003, Parrot ARSDK, a MAVLink vehicle).

Each `serve_*` function binds, prints READY and then serves until the process is ended.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
import socketserver
import ssl
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import zone
from links import (
    ARNET_ACK,
    ARNET_DATA,
    ARNET_DATA_WITH_ACK,
    BUF_D2C_EVENT,
    BUF_D2C_NAVDATA,
    BUF_PING,
    BUF_PONG,
    DEV_APP,
    DEV_FC,
    arcmd,
    arnet_frame,
    arnet_split,
    dev,
    duml_frame,
    duml_parse,
    ping_payload,
)


def ready(what: str) -> None:
    print(f"READY {what}", flush=True)


def forever() -> None:
    while True:
        time.sleep(3600)


def family_of(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


# --- HTTP responses shared by the HTTP, HTTPS and HTTP/3 servers -----------------------------


def http_response(method: str, path: str, received: int) -> tuple[str, bytes]:
    """(content type, body) for a request: tiles and firmware manifests get a sized binary or
    JSON body, everything else a small JSON acknowledgement."""
    rnd = random.Random(path)
    if "/tile/" in path or path.endswith((".png", ".webp", ".pbf", ".jpg")) or "/v4/" in path:
        return "image/png", b"\x89PNG\r\n\x1a\n" + rnd.randbytes(12_000 + rnd.randrange(6_000))
    if "manifest" in path:
        fw = [
            {
                "board_id": 140 + i,
                "vehicletype": "Copter",
                "format": "apj",
                "url": f"https://firmware.ardupilot.org/Copter/stable/board{i}/arducopter.apj",
                "mav-firmware-version": "4.5.7",
                "git-sha": rnd.randbytes(20).hex(),
            }
            for i in range(40)
        ]
        return "application/json", json.dumps({"format-version": "1.0.0", "firmware": fw}).encode()
    body = {"status": 0, "code": 0, "message": "ok", "method": method, "path": path.split("?")[0]}
    if received:
        body["received_bytes"] = received
    if "geofence" in path or "flysafe" in path:
        body["data"] = {
            "areas": [
                {"area_id": 1000 + i, "level": i % 3, "radius": 500 + 50 * i} for i in range(12)
            ]
        }
    return "application/json", json.dumps(body).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "nginx"
    sys_version = ""

    def _reply(self, received: int) -> None:
        ctype, body = http_response(self.command, self.path, received)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "keep-alive")
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def do_GET(self) -> None:  # noqa: N802
        self._reply(0)

    def do_POST(self) -> None:  # noqa: N802
        left = int(self.headers.get("Content-Length", "0"))
        got = 0
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                break
            got += len(chunk)
            left -= len(chunk)
        self._reply(got)

    do_PUT = do_POST  # noqa: N815

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        host = self.headers.get("Host", "-") if getattr(self, "headers", None) else "-"
        print(f"{self.client_address[0]} {host} " + (format % args), flush=True)


def _server_class(host: str, tls: ssl.SSLContext | None) -> type[ThreadingHTTPServer]:
    class Server(ThreadingHTTPServer):
        address_family = family_of(host)
        daemon_threads = True
        allow_reuse_address = True
        request_queue_size = 32

        def finish_request(self, request: Any, client_address: Any) -> None:
            if tls is None:
                super().finish_request(request, client_address)
                return
            try:
                conn = tls.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                print(f"tls handshake from {client_address[0]} failed: {exc}", flush=True)
                return
            print(
                f"tls {client_address[0]} sni={getattr(conn, 'sni', None)} "
                f"alpn={conn.selected_alpn_protocol()} {conn.version()}",
                flush=True,
            )
            self.RequestHandlerClass(conn, client_address, self)
            try:  # answer the client's close_notify with ours
                conn.unwrap()
            except (ssl.SSLError, OSError, ValueError):
                pass
            finally:
                conn.close()

    return Server


def tls_server_context(cert: str, key: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])

    def sni_cb(sock: ssl.SSLSocket, name: str | None, _ctx: ssl.SSLContext) -> None:
        sock.sni = name  # type: ignore[attr-defined]  # any name is accepted

    ctx.sni_callback = sni_cb
    return ctx


def serve_http(binds: list[tuple[str, int]], cert: str | None, key: str | None) -> None:
    """Plain HTTP/1.1 (no cert) or HTTPS (with cert) on each (host, port)."""
    tls = tls_server_context(cert, key) if cert and key else None
    for host, port in binds:
        srv = _server_class(host, tls)((host, port), Handler)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
    ready("https" if tls else "http")
    forever()


# --- QUIC / HTTP/3 --------------------------------------------------------------------------


def serve_quic(binds: list[tuple[str, int]], cert: str, key: str) -> None:
    """HTTP/3 over QUIC v1 and v2. One socket per address: a UDP server must answer from the
    address it was asked on."""
    from aioquic.asyncio import QuicConnectionProtocol, serve
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.h3.events import DataReceived, HeadersReceived
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import HandshakeCompleted, ProtocolNegotiated, QuicEvent

    class Proto(QuicConnectionProtocol):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            self.h3: H3Connection | None = None
            self.paths: dict[int, str] = {}

        def _respond(self, sid: int) -> None:
            assert self.h3 is not None
            path = self.paths.pop(sid, "/")
            ctype, body = http_response("GET", path, 0)
            self.h3.send_headers(
                sid,
                [
                    (b":status", b"200"),
                    (b"server", b"nginx"),
                    (b"content-type", ctype.encode()),
                    (b"content-length", str(len(body)).encode()),
                ],
            )
            self.h3.send_data(sid, body, end_stream=True)

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, ProtocolNegotiated) and event.alpn_protocol in H3_ALPN:
                self.h3 = H3Connection(self._quic)
            if isinstance(event, HandshakeCompleted):
                print(
                    f"quic handshake alpn={event.alpn_protocol} "
                    f"version=0x{self._quic._version:08x}",
                    flush=True,
                )
            if self.h3 is None:
                return
            for ev in self.h3.handle_event(event):
                if isinstance(ev, HeadersReceived):
                    h = dict(ev.headers)
                    self.paths[ev.stream_id] = h.get(b":path", b"/").decode()
                    print(
                        f"h3 {h.get(b':method', b'').decode()} "
                        f"{h.get(b':authority', b'').decode()}{self.paths[ev.stream_id]}",
                        flush=True,
                    )
                    if ev.stream_ended:
                        self._respond(ev.stream_id)
                elif isinstance(ev, DataReceived) and ev.stream_ended:
                    self._respond(ev.stream_id)
            self.transmit()

    async def main() -> None:
        cfg = QuicConfiguration(is_client=False, alpn_protocols=H3_ALPN)
        cfg.load_cert_chain(cert, key)
        for host, port in binds:
            await serve(host, port, configuration=cfg, create_protocol=Proto)
        ready("quic")
        await asyncio.Future()

    asyncio.run(main())


# --- DNS --------------------------------------------------------------------------------------


def dns_answer(wire: bytes) -> bytes:
    import dns.flags
    import dns.message
    import dns.rcode
    import dns.rdatatype
    import dns.rrset

    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    if not q.question:
        r.set_rcode(dns.rcode.FORMERR)
        return r.to_wire()
    qname = q.question[0].name.to_text().rstrip(".").lower()
    qtype = dns.rdatatype.to_text(q.question[0].rdtype)
    recs, exists = zone.lookup(qname)
    labels = qname.split(".")
    apex = ".".join(labels[-2:]) + "."
    soa = dns.rrset.from_text(
        apex, 300, "IN", "SOA", f"ns1.{apex} hostmaster.{apex} 2024060101 3600 600 86400 300"
    )
    if not exists:
        r.set_rcode(dns.rcode.NXDOMAIN)
        r.authority.append(soa)
    else:
        for owner, t, v in recs:
            if t == "CNAME" or t == qtype:
                r.answer.append(
                    dns.rrset.from_text(owner + ".", 300, "IN", t, v + "." if t == "CNAME" else v)
                )
        if not any(rr.rdtype == q.question[0].rdtype for rr in r.answer):
            r.authority.append(soa)
    print(
        f"dns {qname} {qtype} -> {dns.rcode.to_text(r.rcode())} "
        f"{[str(rr) for rrs in r.answer for rr in rrs]}",
        flush=True,
    )
    return r.to_wire()


def serve_dns(host: str, port: int) -> None:
    fam = family_of(host)
    udp = socket.socket(fam, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind((host, port))

    class TcpHandler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            sock: socket.socket = self.request
            f = sock.makefile("rb")
            while True:
                hdr = f.read(2)
                if len(hdr) < 2:
                    return
                (n,) = struct.unpack("!H", hdr)
                msg = f.read(n)
                out = dns_answer(msg)
                sock.sendall(struct.pack("!H", len(out)) + out)

    class TcpServer(socketserver.ThreadingTCPServer):
        address_family = fam
        allow_reuse_address = True
        daemon_threads = True

    tcp = TcpServer((host, port), TcpHandler)
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    ready("dns")
    while True:
        data, peer = udp.recvfrom(4096)
        try:
            udp.sendto(dns_answer(data), peer)
        except Exception as exc:  # a bad query must not stop the server
            print(f"dns error from {peer}: {exc}", flush=True)


# --- RTSP -------------------------------------------------------------------------------------

DEFAULT_SDP = (
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=dronewatch lab\r\nt=0 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 MP4V-ES/90000\r\na=control:streamid=0\r\n"
)


class RtspState:
    def __init__(self) -> None:
        self.sdp: str | None = None
        self.frames: list[tuple[float, int, bytes]] = []  # (offset s, channel, RTP/RTCP packet)


def serve_rtsp(host: str, port: int) -> None:
    """A small RTSP/1.0 server over TCP: a RECORD session (ANNOUNCE/SETUP/RECORD) stores the
    interleaved RTP stream; a PLAY session (DESCRIBE/SETUP/PLAY) of any path replays it."""
    state = RtspState()

    def handle(conn: socket.socket) -> None:
        f = conn.makefile("rb")
        wlock = threading.Lock()
        session = f"{random.Random(port).getrandbits(32):08X}"
        recording: list[float] = []
        stop = threading.Event()

        def send(data: bytes) -> None:
            with wlock:
                conn.sendall(data)

        def play(channels: dict[int, int]) -> None:
            start = time.monotonic()
            for off, ch, pkt in list(state.frames):
                if stop.is_set():
                    return
                delay = start + off - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                try:
                    send(b"$" + bytes([channels.get(ch, ch)]) + struct.pack("!H", len(pkt)) + pkt)
                except OSError:
                    return

        while True:
            first = f.read(1)
            if not first:
                break
            if first == b"$":
                ch = f.read(1)[0]
                (n,) = struct.unpack("!H", f.read(2))
                pkt = f.read(n)
                if recording:
                    state.frames.append((time.monotonic() - recording[0], ch, pkt))
                continue
            line = (first + f.readline()).decode("latin-1").strip()
            headers: dict[str, str] = {}
            while True:
                h = f.readline().decode("latin-1").rstrip("\r\n")
                if not h:
                    break
                k, _, v = h.partition(":")
                headers[k.strip().lower()] = v.strip()
            body = f.read(int(headers.get("content-length", "0") or 0))
            method, url, _ = (line.split(" ") + ["", ""])[:3]
            print(f"rtsp {method} {url}", flush=True)
            cseq = headers.get("cseq", "0")
            extra = ""
            payload = b""
            code = "200 OK"
            if method == "OPTIONS":
                extra = (
                    "Public: OPTIONS, DESCRIBE, SETUP, TEARDOWN, PLAY, PAUSE, ANNOUNCE, "
                    "RECORD, GET_PARAMETER\r\n"
                )
            elif method == "ANNOUNCE":
                state.sdp = body.decode("latin-1")
                state.frames.clear()
            elif method == "DESCRIBE":
                payload = (state.sdp or DEFAULT_SDP).encode()
                base = url if url.endswith("/") else url + "/"
                extra = f"Content-Base: {base}\r\nContent-Type: application/sdp\r\n"
            elif method == "SETUP":
                tr = headers.get("transport", "")
                m = re.search(r"interleaved=(\d+)-(\d+)", tr)
                if "TCP" not in tr.upper() or not m:
                    code = "461 Unsupported Transport"
                else:
                    extra = (
                        f"Transport: RTP/AVP/TCP;unicast;interleaved={m.group(1)}-"
                        f"{m.group(2)}\r\nSession: {session};timeout=60\r\n"
                    )
            elif method == "RECORD":
                recording.append(time.monotonic())
                extra = f"Session: {session}\r\n"
            elif method == "PLAY":
                extra = f"Session: {session}\r\nRange: npt=0.000-\r\n"
            elif method in ("GET_PARAMETER", "PAUSE"):
                extra = f"Session: {session}\r\n"
            elif method == "TEARDOWN":
                stop.set()
                extra = f"Session: {session}\r\n"
            else:
                code = "501 Not Implemented"
            head = (
                f"RTSP/1.0 {code}\r\nCSeq: {cseq}\r\nServer: dronewatch-lab-rtsp\r\n{extra}"
                f"Content-Length: {len(payload)}\r\n\r\n"
            )
            send(head.encode() + payload)
            if method == "PLAY":
                threading.Thread(target=play, args=({},), daemon=True).start()
            if method == "TEARDOWN":
                break
        stop.set()
        try:
            conn.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        conn.close()
        print(f"rtsp stored {len(state.frames)} interleaved frames", flush=True)

    srv = socket.socket(family_of(host), socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, port))
    srv.listen(8)
    ready("rtsp")
    while True:
        c, _ = srv.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


# --- simulated DJI aircraft: DUML over UDP 9003 ---------------------------------------------


def serve_duml(host: str, port: int) -> None:
    """Answer every DUML frame with a response frame (same seq, response bit set); every fifth
    request also gets a flight-controller OSD-style push (cmd set 0x03, id 0x43)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    ready("duml")
    n = 0
    push_seq = 0x4000
    while True:
        data, peer = s.recvfrom(2048)
        f = duml_parse(data)
        if f is None:
            continue
        n += 1
        ack = duml_frame(
            int(f["receiver"]),
            int(f["sender"]),
            int(f["seq"]),
            int(f["cmd_set"]),
            int(f["cmd_id"]),
            b"\x00" + bytes(f["payload"])[:8],
            response=True,
        )
        s.sendto(ack, peer)
        if n % 5 == 0:
            t = n / 10
            osd = struct.pack(
                "<ddhhhhhBB",
                math.radians(22.5431 + 0.0001 * math.sin(t)),
                math.radians(113.9581 + 0.0001 * math.cos(t)),
                int(10 * (30 + 2 * math.sin(t))),
                12,
                -7,
                3,
                int(10 * math.degrees(t) % 3600),
                14,
                87,
            )
            push_seq += 1
            s.sendto(duml_frame(dev(DEV_FC), dev(DEV_APP), push_seq, 0x03, 0x43, osd), peer)


# --- simulated Parrot ANAFI: discovery on TCP 44444, ARSDK on UDP ----------------------------


def serve_arsdk(host: str, c2d_port: int) -> None:
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    udp.bind((host, c2d_port))
    peer: list[tuple[str, int]] = []
    lock = threading.Lock()
    seqs: dict[int, int] = {}
    last_heard = [0.0]

    def nextseq(buf: int) -> int:
        with lock:
            seqs[buf] = (seqs.get(buf, -1) + 1) & 0xFF
            return seqs[buf]

    def discovery() -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((host, 44444))
        srv.listen(4)
        while True:
            c, addr = srv.accept()
            buf = b""
            while b"\x00" not in buf:
                chunk = c.recv(4096)
                if not chunk:
                    break
                buf += chunk
            req = json.loads(buf.rstrip(b"\x00").decode())
            print(f"arsdk discovery from {addr[0]}: {req}", flush=True)
            reply = {
                "status": 0,
                "c2d_port": c2d_port,
                "c2d_update_port": 51,
                "c2d_user_port": 21,
                "arstream_fragment_size": 65000,
                "arstream_fragment_maximum_number": 4,
                "arstream_max_ack_interval": -1,
                "qos_mode": 0,
                "proto_v": 3,
            }
            c.sendall(json.dumps(reply, separators=(",", ":")).encode() + b"\x00")
            c.close()
            with lock:
                peer[:] = [(addr[0], int(req["d2c_port"]))]

    def navdata() -> None:
        t0 = time.monotonic()
        i = 0
        while True:
            time.sleep(0.1)
            with lock:
                if not peer or time.monotonic() - last_heard[0] > 0.5:
                    continue  # streams only while the controller is talking
                dst = peer[0]
            t = time.monotonic() - t0
            att = arcmd(1, 4, 6, struct.pack("<fff", 0.02 * math.sin(t), 0.01, 1.2 + 0.05 * t))
            pos = arcmd(1, 4, 4, struct.pack("<ddd", 48.8790 + 1e-5 * t, 2.3675, 25.0))
            alt = arcmd(1, 4, 8, struct.pack("<d", 25.0 + 0.1 * math.sin(t)))
            dg = b"".join(
                arnet_frame(ARNET_DATA, BUF_D2C_NAVDATA, nextseq(BUF_D2C_NAVDATA), p)
                for p in (att, pos, alt)
            )
            if i % 10 == 0:
                dg += arnet_frame(ARNET_DATA, BUF_PING, nextseq(BUF_PING), ping_payload(t))
                batt = arcmd(0, 5, 1, struct.pack("<B", max(20, 96 - i // 10)))
                dg += arnet_frame(ARNET_DATA_WITH_ACK, BUF_D2C_EVENT, nextseq(BUF_D2C_EVENT), batt)
            udp.sendto(dg, dst)
            i += 1

    threading.Thread(target=discovery, daemon=True).start()
    threading.Thread(target=navdata, daemon=True).start()
    ready("arsdk")
    while True:
        data, addr = udp.recvfrom(4096)
        with lock:
            last_heard[0] = time.monotonic()
            dst = peer[0] if peer else None
        if dst is None:
            continue
        out = b""
        for ftype, buf, seq, payload in arnet_split(data):
            if ftype == ARNET_DATA_WITH_ACK:
                out += arnet_frame(ARNET_ACK, 128 + buf, nextseq(128 + buf), bytes([seq]))
            elif buf == BUF_PING:
                out += arnet_frame(ARNET_DATA, BUF_PONG, nextseq(BUF_PONG), payload)
        if out:
            udp.sendto(out, dst)


# --- MAVLink vehicle (pymavlink encoder) ------------------------------------------------------


def serve_mavlink_vehicle(host: str, port: int, gcs_host: str, gcs_port: int, secs: float) -> None:
    from pymavlink.dialects.v20 import common as mav

    m = mav.MAVLink(None, srcSystem=1, srcComponent=1)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    s.settimeout(0.02)
    parser = mav.MAVLink(None, srcSystem=1, srcComponent=1)
    ready("mavlink")

    def send(msg: Any) -> None:
        s.sendto(msg.pack(m), (gcs_host, gcs_port))
        m.seq = (m.seq + 1) % 256

    t0 = time.monotonic()
    tick = 0
    while time.monotonic() - t0 < secs:
        t = time.monotonic() - t0
        boot_ms = int(t * 1000) + 360_000
        if tick % 10 == 0:
            send(
                m.heartbeat_encode(
                    mav.MAV_TYPE_QUADROTOR,
                    mav.MAV_AUTOPILOT_ARDUPILOTMEGA,
                    mav.MAV_MODE_FLAG_CUSTOM_MODE_ENABLED
                    | mav.MAV_MODE_FLAG_SAFETY_ARMED
                    | mav.MAV_MODE_FLAG_STABILIZE_ENABLED,
                    5,
                    mav.MAV_STATE_ACTIVE,
                )
            )
            send(
                m.sys_status_encode(
                    0x3FFFFF, 0x3FFFFF, 0x3FFFFF, 180, 15_820, 1_240, 78, 0, 0, 0, 0, 0, 0
                )
            )
        if tick % 2 == 0:
            send(
                m.global_position_int_encode(
                    boot_ms,
                    int((47.397742 + 1e-6 * t) * 1e7),
                    int(8.545594 * 1e7),
                    int(488_000 + 100 * t),
                    int(20_000 + 100 * t),
                    120,
                    -30,
                    -50,
                    int(9000 + 100 * t) % 36000,
                )
            )
        send(
            m.attitude_encode(
                boot_ms, 0.02 * math.sin(t), -0.03, 1.57 + 0.01 * t, 0.001, 0.002, 0.01
            )
        )
        tick += 1
        end = time.monotonic() + 0.1
        while time.monotonic() < end:
            try:
                data, _ = s.recvfrom(2048)
            except TimeoutError:
                continue
            for msg in parser.parse_buffer(data) or []:
                print(f"vehicle got {msg.get_type()} from sys {msg.get_srcSystem()}", flush=True)
    print("vehicle done", flush=True)
    s.settimeout(None)
    while True:  # keep the port open (no ICMP unreachable for the GCS's last heartbeats)
        s.recvfrom(2048)
