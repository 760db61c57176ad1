"""Both ends of two cheap Wi-Fi camera drones, and what their phone does on an access point
without uplink (scenarios wifi_toy_drone and wifi_unknown_drone).

Both aircraft are SIMULATED (none was available). The aircraft namespace is the access point:
dnsmasq there hands the phone its address, a default route and a DNS server that answers
NXDOMAIN to every name, and nothing forwards beyond it.

`wifi_toy_drone` follows the "WiFi UAV" family as docs/wifi-drones.md describes it (sources
[2] and [7] there): aircraft 192.168.169.1, the app sends `ef 00 04 00` (start video) to UDP
8800 from an ephemeral port, then ACK/request packets (`ef 02 <len LE> 02 02 00 01 <slots>...`,
the latest stick command `66 14 ... xor 99` at offset 18, quality bytes at 82, ACK slots from
88) every 40 ms; the aircraft sends JPEG fragments from its UDP 1234 to that ephemeral port,
each with the family's 56-byte header (`93 01 <len LE>`, sequences, fragment index/count, frame
length, width, height, quality) followed by at most 1024 bytes of the JPEG's entropy-coded data
(the app adds the JPEG header itself, as in [7]). The JPEGs are real (ffmpeg, test pattern,
256x144 at 8 fps instead of the family's 640x360 at ~15, to keep the capture small).

`wifi_unknown_drone` is MADE UP so that no rule pack names it: aircraft 172.16.10.1, 14-byte
stick packets `5a c3 <seq BE16> <roll pitch throttle yaw flags mode> 00 00 <sum> a5` to UDP
19798 at 40 Hz with 12-byte telemetry back at 5 Hz, and MJPEG over TCP 6061: after a 6-byte
hello the aircraft sends `d7 1e <length BE32> <frame BE32>` + a whole JFIF JPEG per frame.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable

WIFI_UAV_PORT = 8800
WIFI_UAV_VIDEO_SRC = 1234
WIFI_UAV_FRAGMENT = 1024
WIFI_UAV_HEADER = 56
ACK_EVERY_S = 0.040
"""ACK/request (with the stick command) every 40 ms: 25 Hz."""

UNKNOWN_CTRL_PORT = 19798
UNKNOWN_VIDEO_PORT = 6061
UNKNOWN_HELLO = bytes.fromhex("b30c01000000")
UNKNOWN_CTRL_EVERY_S = 0.025
"""Stick packets every 25 ms: 40 Hz."""

FPS = 8
IDLE_STOP_S = 0.6
"""The aircraft stops streaming when the app has been silent this long."""


def say(msg: str) -> None:
    print(msg, flush=True)


def jpeg_frames(secs: float, fps: int = FPS, size: str = "256x144", q: int = 12) -> list[bytes]:
    """Whole baseline JPEGs (JFIF, 4:2:0) that ffmpeg encodes from a test pattern."""
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(secs),
        "-c:v", "mjpeg", "-pix_fmt", "yuvj420p", "-q:v", str(q), "-f", "mjpeg", "-",
    ]  # fmt: skip
    stream = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    soi = b"\xff\xd8"
    return [soi + part for part in stream.split(soi) if part]


def jpeg_scan(jpeg: bytes) -> bytes:
    """The entropy-coded data of a JPEG: after the SOS segment, without the EOI."""
    pos = 2
    while pos + 4 <= len(jpeg):
        marker, length = jpeg[pos + 1], struct.unpack_from(">H", jpeg, pos + 2)[0]
        if marker == 0xDA:
            return jpeg[pos + 2 + length : -2 if jpeg.endswith(b"\xff\xd9") else None]
        pos += 2 + length
    raise ValueError("no SOS segment")


# --- WiFi UAV family ------------------------------------------------------------------------


def hy_command(roll: int, pitch: int, throttle: int, yaw: int, flags: int = 0) -> bytes:
    """The 20-byte stick command `66 14 <4 axes> <flags> <mode> 00*10 <xor of 2..17> 99`."""
    body = bytes([roll, pitch, throttle, yaw, flags, 0x02]) + bytes(10)
    x = 0
    for b in body:
        x ^= b
    return b"\x66\x14" + body + bytes([x, 0x99])


def wifi_uav_ack(cmd_seq: int, cmd: bytes, slots: list[tuple[int, int]]) -> bytes:
    """ACK/request packet: header, the queued command, quality bytes, then ACK slots (image
    sequence u64, status u32, slot length u32 = 16)."""
    body = struct.pack("<BxxxIH", len(slots), cmd_seq, len(cmd)) + cmd.ljust(64, b"\x00")
    body += bytes([0x32, 0x4B, 0x14, 0x2D, 0x00, 0x00])
    for seq, status in slots:
        body += struct.pack("<QII", seq, status, 16)
    head = b"\xef\x02" + struct.pack("<H", 8 + len(body)) + b"\x02\x02\x00\x01"
    return head + body


def wifi_uav_fragments(image_seq: int, msg_seq: int, jpeg: bytes) -> list[bytes]:
    """One frame as the family's `93 01` fragments (56-byte header + <= 1024 bytes of scan)."""
    scan = jpeg_scan(jpeg)
    parts = [scan[i : i + WIFI_UAV_FRAGMENT] for i in range(0, len(scan), WIFI_UAV_FRAGMENT)]
    out = []
    for idx, part in enumerate(parts):
        total = WIFI_UAV_HEADER + len(part)
        head = b"\x93\x01" + struct.pack("<HI", total, msg_seq + idx)
        head += struct.pack("<QQQ", image_seq, image_seq, max(image_seq - 1, 0))
        head += struct.pack("<III", idx, len(parts), len(scan))
        head += struct.pack("<HHB", 256, 144, 50) + b"\x00\x00\x00" + b"\x01\x00\x00\x00"
        out.append(head + part)
    return out


def serve_wifi_uav(host: str) -> None:
    """The simulated aircraft: UDP 8800 for the app, video from UDP 1234 once it asked."""
    frames = jpeg_frames(30)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.bind((host, WIFI_UAV_PORT))
    vid = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    vid.bind((host, WIFI_UAV_VIDEO_SRC))
    state: dict[str, object] = {"app": None, "last": 0.0}
    lock = threading.Lock()

    def video() -> None:
        image_seq, msg_seq = 1, 1
        while True:
            with lock:
                app, last = state["app"], float(state["last"])  # type: ignore[arg-type]
            if app is None or time.monotonic() - last > IDLE_STOP_S:
                time.sleep(0.02)
                continue
            t0 = time.monotonic()
            frags = wifi_uav_fragments(image_seq, msg_seq, frames[image_seq % len(frames)])
            for f in frags:
                vid.sendto(f, app)  # type: ignore[arg-type]
            image_seq += 1
            msg_seq += len(frags)
            time.sleep(max(0.0, 1.0 / FPS - (time.monotonic() - t0)))

    threading.Thread(target=video, daemon=True).start()
    say(f"READY wifi_uav aircraft ({len(frames)} JPEG frames)")
    while True:
        data, addr = ctl.recvfrom(2048)
        if data[:1] != b"\xef":
            continue
        with lock:
            if data[:4] == b"\xef\x00\x04\x00" or state["app"] is not None:
                state["app"], state["last"] = addr, time.monotonic()


def wifi_uav_app(drone: str, secs: float) -> None:
    """The app: start video three times, then ACK/request packets with sticks every 40 ms,
    while it counts the fragments and frames it gets back."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.settimeout(0.005)
    frags = frames = 0
    last_done = 0
    for _ in range(3):
        s.sendto(b"\xef\x00\x04\x00", (drone, WIFI_UAV_PORT))
        time.sleep(0.1)
    end = time.monotonic() + secs
    nxt = time.monotonic()
    seq = 1
    rnd = random.Random(8800)
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= nxt:
            t = now - (end - secs)
            thr = 0x80 + int(40 * min(1.0, t / 3)) if t < 12 else 0x80
            cmd = hy_command(0x80 + rnd.randint(-3, 3), 0x80, thr, 0x80, 0x01 if 2 < t < 3 else 0)
            s.sendto(wifi_uav_ack(seq, cmd, [(last_done, 1), (last_done + 1, 3)]), (drone, 8800))
            seq += 1
            nxt += ACK_EVERY_S
        try:
            data, _ = s.recvfrom(2048)
        except TimeoutError:
            continue
        if data[:2] == b"\x93\x01":
            frags += 1
            idx, count = struct.unpack_from("<II", data, 32)
            if idx == count - 1:
                frames += 1
                last_done = struct.unpack_from("<Q", data, 8)[0]
    time.sleep(IDLE_STOP_S + 0.5)  # the aircraft stops; drain what is in flight
    s.settimeout(0.2)
    try:
        while True:
            s.recvfrom(2048)
    except TimeoutError:
        pass
    s.close()
    say(f"wifi_uav: {seq - 1} ACK/requests sent, {frags} fragments, {frames} frames")


# --- the made-up drone ----------------------------------------------------------------------


def unknown_stick(seq: int, roll: int, pitch: int, thr: int, yaw: int, flags: int) -> bytes:
    body = b"\x5a\xc3" + struct.pack(">H", seq & 0xFFFF) + bytes([roll, pitch, thr, yaw, flags])
    body += b"\x01\x00\x00"
    return body + bytes([sum(body) & 0xFF, 0xA5])


def serve_unknown(host: str) -> None:
    """The made-up aircraft: sticks on UDP 19798 (telemetry back at 5 Hz), MJPEG on TCP 6061."""
    frames = jpeg_frames(30, fps=6, q=14)
    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.bind((host, UNKNOWN_CTRL_PORT))
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((host, UNKNOWN_VIDEO_PORT))
    srv.listen(2)
    state: dict[str, object] = {"app": None, "last": 0.0}
    lock = threading.Lock()

    def telemetry() -> None:
        bat, n = 96.0, 0
        while True:
            time.sleep(0.2)
            with lock:
                app, last = state["app"], float(state["last"])  # type: ignore[arg-type]
            if app is None or time.monotonic() - last > IDLE_STOP_S:
                continue
            bat -= 0.02
            n += 1
            pkt = b"\x5a\xc4" + struct.pack(">HBhhB", n, int(bat), 0, 120, 0x03)
            ctl.sendto(pkt + bytes([sum(pkt) & 0xFF, 0xA5]), app)  # type: ignore[arg-type]

    def video(conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            if conn.recv(64)[:2] != UNKNOWN_HELLO[:2]:
                return
            conn.setblocking(True)
            i = 0
            try:
                while True:
                    jpg = frames[i % len(frames)]
                    conn.sendall(b"\xd7\x1e" + struct.pack(">II", len(jpg), i) + jpg)
                    i += 1
                    time.sleep(1.0 / 6)
            except OSError:
                pass

    def accept() -> None:
        while True:
            conn, _ = srv.accept()
            threading.Thread(target=video, args=(conn,), daemon=True).start()

    threading.Thread(target=telemetry, daemon=True).start()
    threading.Thread(target=accept, daemon=True).start()
    say(f"READY unknown aircraft ({len(frames)} JPEG frames)")
    while True:
        data, addr = ctl.recvfrom(2048)
        if data[:2] == b"\x5a\xc3":
            with lock:
                state["app"], state["last"] = addr, time.monotonic()


def unknown_app(drone: str, secs: float) -> None:
    """The made-up app: stick packets at 40 Hz, MJPEG read from TCP 6061."""
    got = {"bytes": 0, "frames": 0}
    stop = threading.Event()

    def video() -> None:
        with socket.create_connection((drone, UNKNOWN_VIDEO_PORT), timeout=5) as c:
            c.sendall(UNKNOWN_HELLO)
            c.settimeout(0.5)
            buf = b""
            while not stop.is_set():
                try:
                    chunk = c.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                got["bytes"] += len(chunk)
                buf += chunk
                while len(buf) >= 10:
                    (n,) = struct.unpack_from(">I", buf, 2)
                    if len(buf) < 10 + n:
                        break
                    got["frames"] += 1
                    buf = buf[10 + n :]

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 0))
    s.setblocking(False)
    t = threading.Thread(target=video, daemon=True)
    t.start()
    telem = 0
    end = time.monotonic() + secs
    nxt, seq = time.monotonic(), 0
    while time.monotonic() < end:
        flags = 0x01 if 2 < secs - (end - time.monotonic()) < 2.5 else 0
        s.sendto(unknown_stick(seq, 0x80, 0x80, 0x90, 0x80, flags), (drone, UNKNOWN_CTRL_PORT))
        seq += 1
        nxt += UNKNOWN_CTRL_EVERY_S
        while True:
            try:
                s.recvfrom(256)
                telem += 1
            except BlockingIOError:
                break
        time.sleep(max(0.0, nxt - time.monotonic()))
    stop.set()
    t.join(3)
    time.sleep(IDLE_STOP_S + 0.5)
    s.close()
    say(f"unknown: {seq} stick packets, {telem} telemetry, {got['frames']} frames")


# --- the phone on an access point without uplink --------------------------------------------

UDHCPC_SCRIPT = """#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    echo "LEASE ip=$ip mask=$mask router=$router dns=$dns" ;;
esac
"""


def dhcp(iface: str = "wlan0", hostname: str = "Pixel-7") -> dict[str, str]:
    """Get an address with busybox udhcpc (hostname and vendor class as an Android phone
    sends them); the lease's fields. Any other hostname than letters, digits and `-` goes as
    option 12 by number and in hex (`-x 0x0c:HEX`: udhcpc sends those bytes as they are, where
    `-x hostname:` would cut the name at spaces and commas)."""
    name_opt = f"hostname:{hostname}"
    if not hostname.replace("-", "").isalnum() or not hostname.isascii():
        name_opt = f"0x0c:{hostname.encode().hex()}"
    with tempfile.NamedTemporaryFile("w", suffix=".sh", delete=False) as f:
        f.write(UDHCPC_SCRIPT)
    os.chmod(f.name, 0o755)
    try:
        out = subprocess.run(
            [
                "udhcpc",
                "-i",
                iface,
                "-f",
                "-q",
                "-n",
                "-t",
                "5",
                "-T",
                "2",
                "-s",
                f.name,
                "-x",
                name_opt,
                "-V",
                "android-dhcp-13",
            ],  # fmt: skip
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    finally:
        os.unlink(f.name)
    line = next(ln for ln in out.splitlines() if ln.startswith("LEASE "))
    lease = dict(kv.split("=", 1) for kv in line.split()[1:])
    say(f"dhcp: {lease}")
    return lease


OFF_DEVICE_NAMES = [
    ("api.example-drone-cloud.com", "A"),
    ("connectivitycheck.gstatic.com", "A"),
    ("www.google.com", "A"),
    ("graph.facebook.com", "A"),
    ("android.clients.google.com", "A"),
    ("time.android.com", "A"),
]
"""Names an app and the phone look up on a Wi-Fi without internet: the app's cloud, Android's
captive-portal check, an ads/analytics SDK, the OS update and time hosts."""

OFF_DEVICE_TCP = [("203.0.113.20", 443), ("203.0.113.21", 443), ("198.51.100.30", 80)]
"""Public-looking addresses the phone tries to reach (hard-coded or cached): nothing answers."""

OFF_DEVICE_UDP = ("203.0.113.123", 123)
"""One NTP client request, unanswered."""


def off_device(dns: str) -> None:
    """What leaves for the internet and never arrives: lookups (NXDOMAIN from the aircraft),
    TCP SYNs and one UDP datagram to public-looking addresses (the aircraft drops them)."""
    from clients import resolve

    for name, rdtype in OFF_DEVICE_NAMES:
        try:
            resolve(dns, name, rdtype)
        except Exception as exc:  # timeouts or SERVFAIL are what such a phone gets too
            say(f"dns {name}: {type(exc).__name__}")

    def syn(addr: tuple[str, int]) -> None:
        try:
            socket.create_connection(addr, timeout=3.5).close()
            say(f"tcp {addr}: connected (unexpected)")
        except OSError as exc:
            say(f"tcp {addr}: {type(exc).__name__}")

    ts = [threading.Thread(target=syn, args=(a,)) for a in OFF_DEVICE_TCP]
    for t in ts:
        t.start()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"\x23" + bytes(47), OFF_DEVICE_UDP)  # NTP v4 client request
    for t in ts:
        t.join(10)


def toy_phone(app: Callable[[str, float], None], secs: float) -> None:
    """DHCP, then the app's link for SECS while the phone tries the internet twice."""
    lease = dhcp()
    drone, dns = lease["router"].split()[0], lease["dns"].split()[0]
    t = threading.Thread(target=app, args=(drone, secs), daemon=True)
    t.start()
    time.sleep(2.0)
    off_device(dns)
    time.sleep(6.0)
    off_device(dns)  # apps retry
    t.join(secs + 10)
