"""Flows between two local hosts that no drone-link analyzer reads: how a Wi-Fi drone of a family
nobody catalogued still shows itself.

A Wi-Fi camera drone is an access point; its app keeps a periodic stream of small control
datagrams going to the aircraft and gets video back (docs/wifi-drones.md). For every UDP or TCP
flow whose two ends are local, this analyzer reads the packets the engine lets it inspect and
publishes, in `flow.meta`:

- `first_payload`: the first `FIRST_PAYLOAD_BYTES` bytes of the flow's first payload, as hex, which
  the rule packs' `payload_prefix` conditions match (rules/wifi_drones.yaml);
- `video` (`jpeg`, `h264` or `rtp`) and `video_from` (`orig` or `resp`): a video signature in what
  one end sends, or `bulk` for a fast run of large payloads without one (the WiFi UAV family sends
  JPEG scan data with no JPEG header, docs/wifi-drones.md);
- `control_hz` and `control_from`: one end sends small datagrams at a steady rate.

It writes no log of its own: the monitor's device book (`dronewatch.judge.devices`) takes a host
that sends a control stream to a local address and gets video back from it for a ground station,
and says so in devices.jsonl.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field

from dronewatch.core.flow import IP_PROTO_TCP, IP_PROTO_UDP, Flow, Packet
from dronewatch.core.hooks import Context

FIRST_PAYLOAD_BYTES = 16
"""Bytes of the first payload kept for the rule packs' `payload_prefix`."""

SIGNATURE_WINDOW = 64
"""Bytes from the start of a payload searched for a video signature: toy-drone video protocols
put a header of their own (frame number, fragment index) before the JPEG or H.264 data."""

JPEG_SOI = b"\xff\xd8\xff"
"""JPEG start of image, then the first marker's 0xFF (ITU T.81 B.1.1.2)."""
JPEG_FIRST_MARKERS = frozenset((0xDB, 0xC0, 0xC4, 0xFE, *range(0xE0, 0xF0)))
"""Markers that follow SOI in real files: DQT, SOF0, DHT, COM, APP0-APP15."""

H264_SPS = 7
H264_IDR = 5
H264_PROFILES = frozenset((66, 77, 88, 100, 110, 122, 244, 44, 83, 86, 118, 128))
"""profile_idc values of ITU-T H.264 (A.2, G, H): the byte after an SPS NAL header."""

RTP_VIDEO_PAYLOAD_TYPES = frozenset((26, 32, 33, 34, *range(96, 128)))
"""RTP payload types a video stream uses: JPEG, MPV, MP2T, H.263 (RFC 3551) and the dynamic
range that H.264, H.265 and MJPEG sessions negotiate."""


@dataclass(frozen=True, slots=True)
class LocalLinkOptions:
    """Thresholds of the local-link reader."""

    video_min_payload: int = 200
    """A JPEG or IDR signature counts only in a payload at least this long (video datagrams are
    large; a short control message that happens to hold the bytes is not video)."""
    rtp_min_packets: int = 3
    """Datagrams of one RTP stream (one SSRC, rising sequence numbers) that make it video."""
    bulk_min_payload: int = 500
    """A payload at least this long counts towards a video stream without a signature."""
    bulk_min_packets: int = 16
    """Large payloads from one end, among those inspected, that make a `bulk` video stream."""
    bulk_min_hz: float = 10.0
    """The rate those large payloads must come at (video runs at 10 frames a second or more)."""
    control_max_payload: int = 128
    """Largest payload of a control datagram (toy drones send 8-30 bytes, MAVLink up to 280)."""
    control_min_packets: int = 12
    """Control datagrams from one end needed to call the stream periodic."""
    control_min_hz: float = 5.0
    """Slowest rate of a control stream (drones send roughly 10-100 Hz)."""
    control_max_hz: float = 200.0
    """Fastest rate of a control stream."""
    control_regularity: float = 0.75
    """Share of the gaps between control datagrams within half to one and a half times their
    median: a steady stream, not a burst."""

    def __post_init__(self) -> None:
        if not 0.0 < self.control_regularity <= 1.0:
            raise ValueError("control_regularity is a share between 0 and 1")
        if self.control_min_hz >= self.control_max_hz:
            raise ValueError("control_min_hz must be below control_max_hz")


@dataclass(slots=True)
class _Side:
    """What one end of a flow sent, while inspected."""

    control_ts: list[float] = field(default_factory=list)
    bulk_ts: list[float] = field(default_factory=list)
    rtp_ssrc: int | None = None
    rtp_seq: int = -1
    rtp_run: int = 0


@dataclass(slots=True)
class _State:
    sides: tuple[_Side, _Side] = field(default_factory=lambda: (_Side(), _Side()))


class LocalLinkAnalyzer:
    """Reads flows between two local hosts for a video signature and a periodic control stream."""

    name = "local_link"

    def __init__(self, ctx: Context, options: LocalLinkOptions | None = None) -> None:
        self.ctx = ctx
        self.options = options or LocalLinkOptions()
        self._local = ctx.local  # the run's local networks: what the monitor takes for local
        self._state: dict[str, _State] = {}  # keyed by flow.uid, dropped in flow_end

    def wants(self, flow: Flow) -> bool:
        """UDP and TCP between two local hosts (not a host talking to itself over loopback)."""
        if flow.proto not in (IP_PROTO_UDP, IP_PROTO_TCP):
            return False
        local = self._local.reason
        orig, resp = local(flow.orig_h), local(flow.resp_h)
        return orig is not None and resp is not None and "loopback" not in (orig, resp)

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Read one payload of a local flow."""
        payload = pkt.payload
        if not payload:
            return
        if "link" in flow.meta or flow.service:
            # A drone-link analyzer, or a protocol analyzer (TLS, QUIC, HTTP, RTSP...), read it:
            # a known protocol is not an unknown drone's link.
            flow.decline(self.name)
            return
        flow.add_meta("first_payload", payload[:FIRST_PAYLOAD_BYTES].hex())
        state = self._state.get(flow.uid)
        if state is None:
            state = self._state[flow.uid] = _State()
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        side = state.sides[0 if from_orig else 1]
        who = "orig" if from_orig else "resp"
        if "video" not in flow.meta:
            codec = self._video(side, payload, flow.proto == IP_PROTO_UDP)
            if codec is not None:
                flow.add_meta("video", codec)
                flow.add_meta("video_from", who)
        if len(payload) <= self.options.control_max_payload:
            side.control_ts.append(pkt.ts)
        elif len(payload) >= self.options.bulk_min_payload:
            side.bulk_ts.append(pkt.ts)

    def flow_end(self, flow: Flow) -> None:
        """Publish the control stream of the flow's periodic end, and drop its state."""
        state = self._state.pop(flow.uid, None)
        if state is None:
            return
        o = self.options
        for who, side in zip(("orig", "resp"), state.sides, strict=True):
            hz = self._periodic(side.control_ts)
            if hz is not None and "control_hz" not in flow.meta:
                flow.add_meta("control_hz", f"{hz:.1f}")
                flow.add_meta("control_from", who)
            bulk = side.bulk_ts
            if "video" not in flow.meta and len(bulk) >= o.bulk_min_packets:
                span = bulk[-1] - bulk[0]
                if span <= 0 or (len(bulk) - 1) / span >= o.bulk_min_hz:
                    flow.add_meta("video", "bulk")
                    flow.add_meta("video_from", who)

    def _video(self, side: _Side, payload: bytes, udp: bool) -> str | None:
        """The video format a payload shows, if any."""
        o = self.options
        head = payload[: SIGNATURE_WINDOW + 8]
        at = head.find(JPEG_SOI)
        if (
            0 <= at <= SIGNATURE_WINDOW
            and len(payload) >= o.video_min_payload
            and at + 3 < len(head)
            and head[at + 3] in JPEG_FIRST_MARKERS
        ):
            return "jpeg"
        if _h264(head, len(payload) >= o.video_min_payload):
            return "h264"
        if udp and self._rtp(side, payload):
            return "rtp"
        return None

    def _rtp(self, side: _Side, payload: bytes) -> bool:
        """Whether this datagram extends a run of one RTP video stream to `rtp_min_packets`."""
        if len(payload) < 12 or payload[0] >> 6 != 2:
            side.rtp_run = 0
            return False
        if payload[1] & 0x7F not in RTP_VIDEO_PAYLOAD_TYPES:
            side.rtp_run = 0
            return False
        ssrc = int.from_bytes(payload[8:12], "big")
        seq = int.from_bytes(payload[2:4], "big")
        if ssrc == side.rtp_ssrc and 0 < (seq - side.rtp_seq) % 65536 < 64:
            side.rtp_run += 1
        else:
            side.rtp_run = 1
        side.rtp_ssrc, side.rtp_seq = ssrc, seq
        return side.rtp_run >= self.options.rtp_min_packets

    def _periodic(self, times: list[float]) -> float | None:
        """The rate of a steady stream of datagrams at these times, or None."""
        o = self.options
        if len(times) < o.control_min_packets:
            return None
        gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
        median = statistics.median(gaps)
        if median <= 0 or not o.control_min_hz <= 1.0 / median <= o.control_max_hz:
            return None
        steady = sum(1 for g in gaps if 0.5 * median <= g <= 1.5 * median)
        if steady < o.control_regularity * len(gaps):
            return None
        return 1.0 / median


def _h264(head: bytes, large: bool) -> bool:
    """An H.264 Annex B start code near the start, before a sequence parameter set (with a known
    profile), or before an IDR slice in a large payload."""
    at = head.find(b"\x00\x00\x01")
    while 0 <= at <= SIGNATURE_WINDOW and at + 4 < len(head):
        nal = head[at + 3]
        kind, ref = nal & 0x1F, nal >> 5 & 0x3
        if not nal & 0x80 and ref:
            if kind == H264_SPS and head[at + 4] in H264_PROFILES:
                return True
            if kind == H264_IDR and large:
                return True
        at = head.find(b"\x00\x00\x01", at + 3)
    return False
