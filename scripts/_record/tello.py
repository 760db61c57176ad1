"""Both ends of a Tello SDK session: a simulated Tello EDU and the phone app that flies it.

The Tello SDK 2.0 User Guide (Ryze, 2018; endpoints.md section 6) is the only source of the
layout: the app sends text commands to 192.168.10.1:8889 from one UDP port and reads the answers
(`ok`, `error`, or a value for the read commands ending in `?`) on that port; once in SDK mode
(`command`) the drone sends its state string to the app's port 8890, and after `streamon` raw
H.264 to the app's port 11111. `rc a b c d` (stick values) has no answer.

The app binds its command socket to port 9000 as the SDK's sample program (Tello3.py) does.
The drone is SIMULATED (no Tello was available): it answers as the guide says, takes the time a
real one takes to move (scaled down), sends its SDK 2.0 state string at 10 Hz from its port 8889
and, while streaming, 30 frames a second of H.264 that ffmpeg encodes from a test pattern (x264,
baseline, 320x240 instead of the Tello's 960x720, to keep the capture small), each frame cut into
datagrams of at most 1460 bytes and sent from a socket of its own.
"""

from __future__ import annotations

import random
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

TELLO_CMD_PORT = 8889
TELLO_STATE_PORT = 8890
TELLO_VIDEO_PORT = 11111
APP_CMD_PORT = 9000
"""The app's command port (the SDK sample program's)."""
VIDEO_DATAGRAM = 1460
STATE_HZ = 10.0
LINGER_S = 2.0
"""The drone streams state while it moves and for this long after the app's last command, so
that no state datagram reaches the app after it closed its port (no ICMP in the capture)."""

SERIAL = "0TQZK5DED02H4K"
"""A made-up serial in the shape of a Tello EDU's."""

MOVES = {"takeoff": 3.0, "land": 3.0, "up": 1.5, "down": 1.5, "forward": 2.0, "back": 2.0}
MOVES |= {"left": 2.0, "right": 2.0, "cw": 1.0, "ccw": 1.0}
"""How long each motion command takes before its `ok` (scaled down from a real Tello)."""


def h264_frames(secs: float = 12.0) -> list[bytes]:
    """The access units of an H.264 Annex B stream that ffmpeg encodes (with AUD NAL units, so a
    frame starts at each `00 00 00 01 09`)."""
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
        "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=30", "-t", str(secs),
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
        "-profile:v", "baseline", "-pix_fmt", "yuv420p", "-b:v", "120k", "-g", "30",
        "-threads", "1", "-x264-params", "aud=1", "-f", "h264", "-",
    ]  # fmt: skip
    stream = subprocess.run(cmd, capture_output=True, check=True, timeout=120).stdout
    aud = b"\x00\x00\x00\x01\x09"
    return [aud + part for part in stream.split(aud) if part]


@dataclass
class _Drone:
    """What the simulated Tello knows about itself; `lock` guards every field."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    app: str | None = None
    sdk: bool = False
    streaming: bool = False
    active_until: float = 0.0
    flying: bool = False
    motor_s: float = 0.0
    h_cm: float = 0.0
    yaw: float = 0.0
    v: tuple[int, int, int] = (0, 0, 0)
    bat: float = 87.0
    temp: float = 58.0
    rng: random.Random = field(default_factory=lambda: random.Random(8889))

    def state(self) -> bytes:
        """The SDK 2.0 state string (mission pads off: mid -1, x y z 0)."""
        r = self.rng
        pitch, roll = (r.randint(-2, 2), r.randint(-2, 2)) if self.flying else (0, 0)
        yaw = round(self.yaw - 360 if self.yaw > 180 else self.yaw)
        vgx, vgy, vgz = self.v
        tof = 10 + round(self.h_cm) if self.h_cm > 0 else 10
        text = (
            f"mid:-1;x:0;y:0;z:0;mpry:0,0,0;pitch:{pitch};roll:{roll};yaw:{yaw};"
            f"vgx:{vgx};vgy:{vgy};vgz:{vgz};templ:{int(self.temp)};temph:{int(self.temp) + 2};"
            f"tof:{tof};h:{round(self.h_cm)};bat:{int(self.bat)};"
            f"baro:{151.27 + self.h_cm / 100 + r.uniform(-0.05, 0.05):.2f};"
            f"time:{int(self.motor_s)};agx:{r.uniform(-8, 8):.2f};agy:{r.uniform(-8, 8):.2f};"
            f"agz:{-1000 + r.uniform(-12, 12):.2f};\r\n"
        )
        return text.encode()


def _move(drone: _Drone, verb: str, arg: int, secs: float) -> None:
    """Change the drone's height, heading and speed over `secs`, as the command asks."""
    steps = max(1, int(secs * STATE_HZ))
    dh = {"takeoff": 80.0, "land": -drone.h_cm, "up": arg, "down": -arg}.get(verb, 0.0)
    dyaw = {"cw": arg, "ccw": -arg}.get(verb, 0)
    speed = int(arg / secs) if verb in ("forward", "back", "left", "right") else 0
    v = {"forward": (speed, 0, 0), "back": (-speed, 0, 0)}.get(verb, (0, 0, 0))
    v = {"left": (0, -speed, 0), "right": (0, speed, 0)}.get(verb, v)
    with drone.lock:
        drone.flying = drone.flying or verb == "takeoff"
        drone.v = (v[0], v[1], -int(dh / secs)) if dh else v
    for _ in range(steps):
        time.sleep(secs / steps)
        with drone.lock:
            drone.h_cm = max(0.0, drone.h_cm + dh / steps)
            drone.yaw = (drone.yaw + dyaw / steps) % 360
    with drone.lock:
        drone.v = (0, 0, 0)
        drone.flying = verb != "land" and drone.flying


def _answer(drone: _Drone, text: str) -> str | None:
    """The answer to one SDK command (None for `rc` and empty datagrams), after the time it
    takes."""
    if not text.split():
        return None
    verb, *args = text.split()
    arg = int(args[0]) if args and args[0].lstrip("-").isdigit() else 0
    with drone.lock:
        drone.active_until = time.monotonic() + MOVES.get(verb, 0.0) + LINGER_S
        flying = drone.flying
    if verb == "command":
        with drone.lock:
            drone.sdk = True
        return "ok"
    values = {
        "battery?": lambda: str(int(drone.bat)),
        "sdk?": lambda: "20",
        "sn?": lambda: SERIAL,
        "wifi?": lambda: "90",
        "speed?": lambda: "100.0",
        "time?": lambda: f"{int(drone.motor_s)}s",
    }
    if verb in values:
        with drone.lock:
            return values[verb]()
    if verb in ("streamon", "streamoff"):
        with drone.lock:
            drone.streaming = verb == "streamon"
        return "ok"
    if verb == "rc":
        return None
    if verb in MOVES:
        if (verb == "takeoff") == flying:
            return "error"
        _move(drone, verb, arg, MOVES[verb])
        return "ok"
    return f"unknown command: {verb}"


def _state_loop(drone: _Drone, sock: socket.socket) -> None:
    while True:
        time.sleep(1.0 / STATE_HZ)
        with drone.lock:
            if drone.flying:
                drone.motor_s += 1.0 / STATE_HZ
                drone.bat -= 0.015
                drone.temp = min(66.0, drone.temp + 0.05)
            live = drone.sdk and drone.app is not None and time.monotonic() < drone.active_until
            app, payload = drone.app, drone.state()
        if live and app is not None:
            sock.sendto(payload, (app, TELLO_STATE_PORT))


def _video_loop(drone: _Drone, frames: list[bytes]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    i = 0
    while True:
        start = time.monotonic()
        with drone.lock:
            app = drone.app if drone.streaming else None
        if app is None:
            i = 0  # a new stream starts with the first frame (SPS, PPS, an IDR picture)
        else:
            frame = frames[i % len(frames)]
            for pos in range(0, len(frame), VIDEO_DATAGRAM):
                sock.sendto(frame[pos : pos + VIDEO_DATAGRAM], (app, TELLO_VIDEO_PORT))
            i += 1
        time.sleep(max(0.0, 1 / 30 - (time.monotonic() - start)))


def serve_tello(host: str) -> None:
    """The simulated Tello on `host`: SDK commands on UDP 8889, state to the app's 8890, video
    to the app's 11111 after `streamon`. Prints READY, then serves until ended."""
    frames = h264_frames()
    drone = _Drone()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, TELLO_CMD_PORT))
    threading.Thread(target=_state_loop, args=(drone, sock), daemon=True).start()
    threading.Thread(target=_video_loop, args=(drone, frames), daemon=True).start()
    print(f"READY tello ({len(frames)} video frames)", flush=True)
    while True:
        data, (addr, port) = sock.recvfrom(2048)
        with drone.lock:
            drone.app = addr
        reply = _answer(drone, data.decode("ascii", "replace").strip())
        if reply is not None:
            sock.sendto(reply.encode(), (addr, port))


# --- the app ---------------------------------------------------------------------------------


class _Counter:
    """Datagrams and bytes read on one port by a background thread, until `stop`."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("0.0.0.0", port))
        self.sock.settimeout(0.1)
        self.datagrams = self.bytes = 0
        self.last = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.datagrams += 1
            self.bytes += len(data)
            self.last = time.monotonic()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def sdk_session(drone: str = "192.168.10.1") -> None:
    """An SDK app's flight: enter SDK mode, read the drone's facts, start the video, take off, fly
    a square's first leg with a turn each way, hover on the sticks, land, stop the video; then
    wait for the drone's state to stop before closing its ports."""
    state = _Counter(TELLO_STATE_PORT)
    video = _Counter(TELLO_VIDEO_PORT)
    cmd = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    cmd.bind(("0.0.0.0", APP_CMD_PORT))

    def send(text: str, timeout: float = 8.0) -> str | None:
        cmd.sendto(text.encode(), (drone, TELLO_CMD_PORT))
        if text.startswith("rc "):
            return None
        cmd.settimeout(timeout)
        answer = cmd.recv(1024).decode()
        print(f"{text} -> {answer}", flush=True)
        return answer

    if send("command") != "ok":
        raise RuntimeError("the Tello did not enter SDK mode")
    for query in ("sdk?", "sn?", "battery?", "wifi?"):
        send(query)
    send("streamon")
    time.sleep(1.0)
    for step in ("takeoff", "up 50", "cw 90", "forward 100"):
        if send(step) != "ok":
            raise RuntimeError(f"{step} failed")
    for _ in range(10):  # hover on the sticks for a second
        send("rc 0 0 0 0")
        time.sleep(0.1)
    for step in ("ccw 90", "battery?", "land", "streamoff", "time?"):
        send(step)
    while time.monotonic() - state.last < 1.0:  # the drone stops LINGER_S after the last command
        time.sleep(0.1)
    time.sleep(0.5)
    cmd.close()
    state.stop()
    video.stop()
    print(
        f"tello app: {state.datagrams} state datagrams, "
        f"{video.datagrams} video datagrams ({video.bytes} bytes)",
        flush=True,
    )
