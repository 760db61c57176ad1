"""802.11 in monitor mode for the benchmark's Wi-Fi shapes (bench/shapes.py): drone Wi-Fi
sessions (Tello SDK and video, a DJI Wi-Fi DUML link, a Parrot Bebop's ARSDK and video, MAVLink
over an ESP8266 bridge whose beacons carry ASTM F3411 Remote ID), each access point's beacons,
the receivers' ACKs, and a neighbouring WPA2 network, as one monitor interface on channel 6 sees
them. Frames go through a `Radio`: with radiotap and FCS (link type 127) or bare (105).
"""

from __future__ import annotations

import heapq
import random
import struct
from collections.abc import Callable, Iterator

import wire
from sessions import BASE_TS, Flows, Packets, mavlink_messages
from wire import Pool

Radio = Callable[[bytes, float, int], bytes]
CHANNEL, FREQ = 6, 2437


class Bss:
    """One access point on the monitored channel and the stations talking through it."""

    def __init__(
        self, rng: random.Random, radio: Radio, bssid: bytes, ssid: str, amsdu: int = 1
    ) -> None:
        self.rng, self.radio, self.bssid, self.ssid = rng, radio, bssid, ssid
        self.signal = rng.randrange(-75, -35)
        self._seq: dict[bytes, int] = {}
        self.amsdu = amsdu
        """Packets of a stream (`stream`) sent in one A-MSDU (1: each in a frame of its own)."""
        self._held: dict[tuple[bytes, bool], list[bytes]] = {}

    def _next(self, mac: bytes) -> int:
        self._seq[mac] = n = self._seq.get(mac, 0) + 1
        return n

    def data(
        self, ts: float, sta: bytes, to_ap: bool, body: bytes, protected: bool = False
    ) -> Packets:
        """A data frame between a station and this AP, and the receiver's ACK (most of the
        time: a monitor misses some)."""
        if to_ap:
            frame = wire.dot11_data(
                True, self.bssid, sta, self.bssid, self._next(sta), body, protected
            )
        else:
            frame = wire.dot11_data(
                False, sta, self.bssid, self.bssid, self._next(self.bssid), body, protected
            )
        yield ts, self.radio(frame, ts, self.signal)
        if self.rng.random() < 0.8:
            ack = wire.dot11_ack(sta if to_ap else self.bssid)
            yield ts + 0.00005, self.radio(ack, ts + 0.00005, self.signal)

    def stream(self, ts: float, sta: bytes, to_ap: bool, body: bytes) -> Packets:
        """A packet of a steady stream (video, telemetry): with `amsdu` above 1, held until that
        many of the stream's direction are there, then sent as one A-MSDU (802.11n aggregation)
        with its ACK; else as `data` sends it."""
        if self.amsdu < 2:
            yield from self.data(ts, sta, to_ap, body)
            return
        held = self._held.setdefault((sta, to_ap), [])
        held.append(body)
        if len(held) < self.amsdu:
            return
        src, dst = (sta, self.bssid) if to_ap else (self.bssid, sta)
        subframes = wire.amsdu_subframes([(dst, src, body) for body in held])
        held.clear()
        a1, a2 = (self.bssid, sta) if to_ap else (sta, self.bssid)
        seq = self._next(sta if to_ap else self.bssid)
        frame = wire.dot11_data(to_ap, a1, a2, self.bssid, seq, subframes, amsdu=True)
        yield ts, self.radio(frame, ts, self.signal)
        if self.rng.random() < 0.8:
            ack = wire.dot11_ack(sta if to_ap else self.bssid)
            yield ts + 0.00005, self.radio(ack, ts + 0.00005, self.signal)

    def beacons(self, t: float, until: float, odid: bool = False) -> Packets:
        """Beacons every 102.4 ms; with `odid`, an ASTM F3411 Remote ID pack in each."""
        n = 0
        serial = f"1581F{self.rng.getrandbits(40):010X}"
        while t < until:
            extra = wire.odid_beacon_ie(n, serial, 47.39 + n * 1e-6, 8.52, 100.0) if odid else b""
            tsf = int((t - BASE_TS) * 1e6)
            frame = wire.dot11_beacon(
                self.bssid, self._next(self.bssid), tsf, self.ssid, CHANNEL, extra
            )
            yield t, self.radio(frame, t, self.signal)
            n += 1
            t += 0.1024


def snap_udp(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, ident: int) -> bytes:
    return wire.LLC_SNAP_IP4 + wire.ip4(src, dst, 17, wire.udp(sport, dport, payload), ident)


def ticks(rng: random.Random, t: float, until: float, period: float) -> Iterator[float]:
    t += rng.uniform(0, period)
    while t < until:
        yield t
        t += period * rng.uniform(0.9, 1.1)


def wifi_flows(rng: random.Random, pool: Pool, radio: Radio, amsdu: int = 1) -> Flows:
    """Monitor mode on channel 6 at a flying field: drone Wi-Fi sessions one after another (Tello
    SDK and video, a DJI Wi-Fi DUML link, a Parrot Bebop's ARSDK and video stream, MAVLink over an
    ESP8266 bridge whose beacons carry Remote ID), each AP's beacons, ACKs, and a neighbouring
    WPA2 network's beacons and protected data. `amsdu`: the drones' video and telemetry
    downlinks sent that many packets to an A-MSDU (`Bss.stream`)."""
    home = Bss(rng, radio, bytes.fromhex("a0b1c2000001"), "Field-Office")
    yield BASE_TS, home.beacons(BASE_TS, float("inf"))
    yield BASE_TS, neighbour(rng, pool, home, BASE_TS)
    t = BASE_TS
    while True:
        t += rng.expovariate(1 / 60)
        until = t + rng.uniform(60, 240)
        kind = rng.choices(("tello", "dji", "parrot", "mavlink"), weights=(35, 30, 20, 15))[0]
        tail = rng.randbytes(3)
        phone = bytes.fromhex("da7e11") + rng.randbytes(3)
        if kind == "tello":
            ap = Bss(
                rng, radio, bytes.fromhex("60601f") + tail, f"TELLO-{tail.hex().upper()}", amsdu
            )
            yield t, ap.beacons(t, until)
            yield from tello_session(rng, pool, ap, phone, t, until)
        elif kind == "dji":
            ap = Bss(rng, radio, bytes.fromhex("60601f") + tail, f"Spark-{tail.hex()}", amsdu)
            yield t, ap.beacons(t, until)
            yield from dji_wifi_session(rng, pool, ap, phone, t, until)
        elif kind == "parrot":
            ap = Bss(rng, radio, bytes.fromhex("903ae6") + tail, f"Bebop2-{tail.hex()}", amsdu)
            yield t, ap.beacons(t, until)
            yield from parrot_session(rng, pool, ap, phone, t, until)
        else:
            ap = Bss(rng, radio, bytes.fromhex("5ccf7f") + tail, "ArduPilot")
            yield t, ap.beacons(t, until, odid=True)
            yield t, wifi_mavlink(rng, ap, phone, t, until)


def neighbour(rng: random.Random, pool: Pool, bss: Bss, t: float) -> Packets:
    """A WPA2 network's traffic: CCMP-protected data frames (opaque to every reader)."""
    stations = [bytes.fromhex("f4f5e8") + rng.randbytes(3) for _ in range(4)]
    while True:
        t += 0.0002 + rng.expovariate(40.0)
        body = rng.getrandbits(48).to_bytes(6) + b"\x00\x20" + pool.take(rng.randrange(60, 1500))
        yield from bss.data(t, rng.choice(stations), rng.random() < 0.4, body, protected=True)


def tello_session(
    rng: random.Random, pool: Pool, ap: Bss, phone: bytes, t: float, until: float
) -> Flows:
    drone, app = bytes([192, 168, 10, 1]), bytes([192, 168, 10, 2])
    cport = rng.randrange(40000, 60000)

    def commands() -> Packets:
        words = [b"command", b"streamon"]
        for i, ts in enumerate(ticks(rng, t, until, 0.05)):
            word = (
                words[i] if i < len(words) else (b"battery?" if i % 100 == 0 else b"rc 0 12 0 -4")
            )
            yield from ap.data(ts, phone, True, snap_udp(app, drone, cport, 8889, word, i))
            if not word.startswith(b"rc"):
                answer = b"ok" if i < len(words) else b"87"
                yield from ap.data(
                    ts + 0.01, phone, False, snap_udp(drone, app, 8889, cport, answer, i)
                )

    def state() -> Packets:
        for i, ts in enumerate(ticks(rng, t, until, 0.1)):
            text = f"pitch:0;roll:0;yaw:{i % 360};vgx:0;vgy:0;vgz:0;templ:60;temph:63;tof:10;"
            text += f"h:{i % 50};bat:87;baro:12.34;time:0;agx:-3.00;agy:1.00;agz:-999.00;\r\n"
            yield from ap.data(ts, phone, False, snap_udp(drone, app, 8889, 8890, text.encode(), i))

    def video() -> Packets:
        for i, ts in enumerate(ticks(rng, t + 1.0, until, 1 / 250)):
            yield from ap.stream(
                ts, phone, False, snap_udp(drone, app, 62512, 11111, pool.take(1460), i)
            )

    yield t, commands()
    yield t, state()
    yield t, video()  # its first frame a second later


def dji_wifi_session(
    rng: random.Random, pool: Pool, ap: Bss, phone: bytes, t: float, until: float
) -> Flows:
    aircraft, app = bytes([192, 168, 2, 1]), bytes([192, 168, 2, 20])
    port = rng.randrange(40000, 60000)

    def down() -> Packets:
        for i, ts in enumerate(ticks(rng, t, until, 0.02)):
            frame = wire.duml(i, 0x03, 0x02, 0x00, 0x03, 0x43, pool.take(48))
            yield from ap.data(ts, phone, False, snap_udp(aircraft, app, 9003, port, frame, i))

    def up() -> Packets:
        for i, ts in enumerate(ticks(rng, t, until, 0.05)):
            frame = wire.duml(i, 0x02, 0x03, 0x40, 0x03, 0x41, pool.take(12))
            yield from ap.data(ts, phone, True, snap_udp(app, aircraft, port, 9003, frame, i))

    def video() -> Packets:
        for i, ts in enumerate(ticks(rng, t + 1.0, until, 1 / 300)):
            yield from ap.stream(
                ts, phone, False, snap_udp(aircraft, app, 9004, port + 1, pool.take(1400), i)
            )

    yield t, down()
    yield t, up()
    yield t, video()  # its first frame a second later


def parrot_session(
    rng: random.Random, pool: Pool, ap: Bss, phone: bytes, t: float, until: float
) -> Flows:
    drone, app = bytes([192, 168, 42, 1]), bytes([192, 168, 42, 10])

    def c2d() -> Packets:
        for i, ts in enumerate(ticks(rng, t, until, 0.025)):
            pcmd = struct.pack("<BBHBbbbbI", 1, 0, 2, 1, 0, 10, 0, 0, i)
            frame = wire.arnetworkal(2, 10, i, pcmd)
            yield from ap.data(ts, phone, True, snap_udp(app, drone, 43210, 54321, frame, i))

    def d2c() -> Packets:
        for i, ts in enumerate(ticks(rng, t, until, 1 / 150)):
            if i % 30 == 0:
                event = struct.pack("<BBHddd", 1, 4, 4, 48.87, 2.35, 50.0 + i % 20)
                frame = wire.arnetworkal(2, 127, i // 30, event)
            else:
                frame = wire.arnetworkal(3, 125, i, pool.take(1000))
            yield from ap.stream(ts, phone, False, snap_udp(drone, app, 54321, 43210, frame, i))

    yield t, c2d()
    yield t, d2c()


def wifi_mavlink(rng: random.Random, ap: Bss, phone: bytes, t: float, until: float) -> Packets:
    vehicle, app = bytes([192, 168, 4, 1]), bytes([192, 168, 4, 2])
    streams = list(mavlink_messages(rng))
    due = [(t + rng.uniform(0, p), i) for i, (p, _, _) in enumerate(streams)] + [(t + 0.5, -1)]
    heapq.heapify(due)
    seq = 0
    while True:
        ts, i = heapq.heappop(due)
        if ts >= until:
            return
        seq += 1
        if i < 0:
            hb = wire.mavlink2(seq, 255, 190, 0, struct.pack("<IBBBBB", 0, 6, 8, 0, 0, 3))
            yield from ap.data(ts, phone, True, snap_udp(app, vehicle, 14550, 14555, hb, seq))
            heapq.heappush(due, (ts + 1.0, -1))
            continue
        period, msgid, payload = streams[i]
        frame = wire.mavlink2(seq, 1, 1, msgid, payload)
        yield from ap.data(ts, phone, False, snap_udp(vehicle, app, 14555, 14550, frame, seq))
        heapq.heappush(due, (ts + period, i))


def radiotap_radio(frame: bytes, ts: float, signal: int) -> bytes:
    return wire.radiotap(frame, int((ts - BASE_TS) * 1e6), FREQ, signal)


def bare_radio(frame: bytes, ts: float, signal: int) -> bytes:
    return frame
