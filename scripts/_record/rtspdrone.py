"""Both ends of a cheap Wi-Fi camera drone that serves its live video over RTSP, and what its
phone does on an access point without uplink (scenario wifi_rtsp_drone).

The aircraft is SIMULATED (none was available); the RTSP server and client are real. It follows
the Macrochip / "HY" family in its RTSP mode, as docs/wifi-drones.md (section 1, source [1]:
turbodrone `docs/research/S2x.md`, "Ruko Drone 1.7.6 notes") describes the Ruko Drone app
(`com.vison.macrochip.ruko.drone`):

- the aircraft is the phone's DHCP gateway, 172.16.10.1, and the access point: dnsmasq there hands
  the phone its address, a default route and a DNS server that answers NXDOMAIN to every name, and
  nothing forwards beyond it (as in scripts/_record/toydrone.py);
- the app sends its default HACK_FLY stick packet every 100 ms (10 Hz) to the aircraft's UDP 8080:
  17 bytes `68 01 0D <13-byte payload> <xor of bytes 1..15>`. The 13 payload bytes are written by
  a native library ([1] documents the fields, not their layout): here the four sticks (centre
  0x80; the throttle raised over the first seconds), a flag byte (take-off for half a second),
  then zeros for the trims and modes;
- the app pulls the video from `rtsp://172.16.10.1:554/livestream/12` ([1]): OPTIONS, DESCRIBE
  (SDP), SETUP with RTP over UDP (`RTP/AVP;unicast;client_port=...`), PLAY, then RTP (RFC 3550)
  with H.264 (RFC 6184, payload type 96) and RTCP from the aircraft's server ports to the phone's
  client ports, and TEARDOWN at the end. The codec and the transport are not in [1] (Ruko plays
  the URL with its own `RTSPClient`; LOILEY FLY, of the same family, with IJKPlayer, which is
  built on ffmpeg): H.264 is what the family's own UDP and TCP video modes carry (besides JPEG
  and H.265), and RTP over UDP is what the CooingDV drones negotiate (SETUP
  `RTP/AVP/UDP;unicast`, [3] [9] [18] there). These are inferred (I).

The server is GStreamer's RTSP server (gst-rtsp-server, through PyGObject: the Debian packages
python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-base, -good and -ugly), which runs
under the system Python (`SYSTEM_PYTHON`) since the venv has no PyGObject. It encodes a live,
scrolling test pattern with x264 at 320x180, 10 frames a second and 64 kbit/s instead of the
camera's HD stream, to keep the capture small (about 220 KB for 24 s). The client is ffmpeg
(`-rtsp_transport udp`), the library IJKPlayer is built on. The aircraft's UDP 8080 takes the
stick packets and answers nothing (the telemetry [1] mentions comes back to another port, in a
format it does not give); the Macrochip keepalives (`08`/`09` + the phone's IPv4 every second)
and the 12-byte HACK_FLY extend packet are left out.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

CTRL_PORT = 8080
CTRL_EVERY_S = 0.100
"""HACK_FLY stick packets every 100 ms: 10 Hz ([1])."""
RTSP_PORT = 554
RTSP_PATH = "/livestream/12"
SYSTEM_PYTHON = "/usr/bin/python3"
"""The Debian Python with PyGObject (python3-gi) that runs the GStreamer RTSP server."""

PIPELINE = (
    "( videotestsrc is-live=true pattern=smpte horizontal-speed=3 "
    "! video/x-raw,width=320,height=180,framerate=10/1 "
    "! x264enc tune=zerolatency speed-preset=ultrafast bitrate=64 key-int-max=20 aud=false "
    "! video/x-h264,profile=constrained-baseline "
    "! rtph264pay name=pay0 pt=96 config-interval=-1 mtu=1400 )"
)
"""The media the aircraft serves: a live test pattern scrolling 3 pixels a frame, x264 in
constrained baseline profile (a key frame every 2 s, no access unit delimiters), packetised by
rtph264pay (RFC 6184: single NAL units and FU-A fragments, SPS and PPS before every key frame)."""


def say(msg: str) -> None:
    print(msg, flush=True)


def hack_fly(roll: int, pitch: int, throttle: int, yaw: int, flags: int = 0) -> bytes:
    """The 17-byte HACK_FLY stick packet `68 01 0D <13 bytes> <xor of bytes 1..15>`."""
    body = b"\x01\x0d" + bytes([roll, pitch, throttle, yaw, flags]) + bytes(8)
    x = 0
    for b in body:
        x ^= b
    return b"\x68" + body + bytes([x])


def server_missing() -> str | None:
    """What is missing for the aircraft's RTSP server, or None when it can run."""
    probe = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst; Gst.init(None);"
        "assert all(Gst.ElementFactory.find(e) for e in "
        "('videotestsrc', 'x264enc', 'rtph264pay')), 'GStreamer element'"
    )
    if not Path(SYSTEM_PYTHON).exists():
        return f"{SYSTEM_PYTHON} (Debian python3)"
    res = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True, check=False)
    if res.returncode:
        return (
            "gst-rtsp-server for the system Python (apt-get install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
            "gstreamer1.0-plugins-ugly): " + (res.stderr.strip().splitlines() or ["?"])[-1]
        )
    return None


def serve_rtsp_drone(host: str) -> None:
    """The simulated aircraft: GStreamer's RTSP server on HOST:554 and the stick port UDP 8080.

    Started by agent.py under the venv's Python, it replaces itself with the system Python,
    which has PyGObject."""
    try:
        import gi
    except ImportError:
        os.execv(SYSTEM_PYTHON, [SYSTEM_PYTHON, "-u", str(Path(__file__).resolve()), host])
    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(host)
    server.set_service(str(RTSP_PORT))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(PIPELINE)
    factory.set_shared(False)  # one pipeline per session: a fresh stream from a key frame
    server.get_mount_points().add_factory(RTSP_PATH, factory)
    if not server.attach(None):
        raise RuntimeError(f"RTSP server could not listen on {host}:{RTSP_PORT}")

    ctl = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ctl.bind((host, CTRL_PORT))

    def sticks() -> None:
        got = 0
        while True:
            data, _ = ctl.recvfrom(2048)
            if data[:3] == b"\x68\x01\x0d":
                got += 1
                if got % 50 == 1:
                    say(f"sticks: {got} HACK_FLY packets")

    threading.Thread(target=sticks, daemon=True).start()
    say(f"READY rtsp aircraft rtsp://{host}:{RTSP_PORT}{RTSP_PATH} ({Gst.version_string()})")
    GLib.MainLoop().run()


def rtsp_app(drone: str, secs: float) -> None:
    """The app: HACK_FLY sticks at 10 Hz to UDP 8080 while ffmpeg plays the RTSP video over
    RTP/UDP for SECS seconds."""
    stop = threading.Event()
    sent = [0]

    def sticks() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            start = nxt = time.monotonic()
            while not stop.is_set():
                t = time.monotonic() - start
                thr = 0x80 + int(40 * min(1.0, t / 3)) if t < 12 else 0x80
                flags = 0x01 if 1.5 < t < 2.0 else 0  # take-off
                s.sendto(hack_fly(0x80, 0x80, thr, 0x80, flags), (drone, CTRL_PORT))
                sent[0] += 1
                nxt += CTRL_EVERY_S
                time.sleep(max(0.0, nxt - time.monotonic()))

    t = threading.Thread(target=sticks, daemon=True)
    t.start()
    time.sleep(0.3)
    url = f"rtsp://{drone}:{RTSP_PORT}{RTSP_PATH}"
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "info",
        "-rtsp_transport", "udp", "-i", url, "-t", str(secs), "-c", "copy", "-f", "null", "-",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=secs + 30, check=False)
    frames = re.findall(r"frame=\s*(\d+)", res.stderr)
    if res.returncode or not frames:
        raise RuntimeError(f"ffmpeg failed ({res.returncode}):\n{res.stderr[-2000:]}")
    time.sleep(0.5)
    stop.set()
    t.join(2)
    say(f"rtsp: {sent[0]} HACK_FLY packets sent, ffmpeg played {frames[-1]} frames of {url}")


if __name__ == "__main__":
    serve_rtsp_drone(sys.argv[1])
