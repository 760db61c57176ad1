"""Which hosts are ground stations and which are aircraft: facts of the drone links.

A ground-station device is found by, strongest first: the drone link it speaks (the end that is
not the aircraft), a local rule of a rule pack that names the aircraft's end (`responder`, as
rules/wifi_drones.yaml does for the generic Wi-Fi drone families), its behaviour with an aircraft
of a family nobody catalogued (it sends a steady control stream to a local address that sends it
video back, read by the local-link analyzer), traffic classified to a drone vendor's cloud, or a
drone maker's MAC prefix (smart controllers are made by the drone makers). The aircraft end of a
link is told by the vendor's fixed aircraft addresses and ports (../shared/research/endpoints.md
sections 1c, 2, 6, 7). Each host keeps the reasons it was taken for what it is, with the
confidence of the strongest, for devices.jsonl.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from dronewatch.core.flow import Flow, ip_str, mac_str

# IEEE MA-L assignments of the drone makers (public OUI registry).
VENDOR_OUIS = {
    "60:60:1f": "DJI",
    "34:d2:62": "DJI",
    "48:1c:b9": "DJI",
    "90:03:b7": "Parrot",
    "00:12:1c": "Parrot",
    "00:26:7e": "Parrot",
    "a0:14:3d": "Parrot",
    "90:3a:e6": "Parrot",
}

AIRCRAFT_ADDRESSES = {
    "192.168.1.1": "Parrot AR.Drone 2.0",
    "192.168.2.1": "DJI aircraft (Wi-Fi link)",
    "192.168.10.1": "Ryze/DJI Tello",
    "192.168.42.1": "Parrot ANAFI / Yuneec camera",
    "192.168.43.1": "Parrot ANAFI",
}
"""Fixed addresses of aircraft on their own Wi-Fi (endpoints.md 1c, 2, 5, 6)."""

AIRCRAFT_PORTS = {
    "dji_wifi": frozenset({9003}),
    "tello": frozenset({8889}),
    "parrot_arsdk": frozenset({44444, 2233, 54321}),
    "ardrone": frozenset({5554, 5556}),
}
"""The port the aircraft listens on, per link (the other end is the ground station)."""

GCS_PORTS = {"mavlink": frozenset({14550})}
"""The port a MAVLink ground station listens on (QGroundControl's default)."""

CONFIDENCE_LINK = 0.95
"""A drone link an analyzer decoded."""
CONFIDENCE_BEHAVIOUR = 0.8
"""A control stream out and video back between two local hosts."""
CONFIDENCE_BEHAVIOUR_AP = 0.9
"""The same, with the aircraft at the first address of its subnet, as a Wi-Fi drone's own access
point is (192.168.0.1, 192.168.1.1, 172.16.10.1...)."""
CONFIDENCE_OUI = 0.6
"""Only a drone maker's MAC prefix."""
CONFIDENCE_PHONE_SIDE = 0.9
"""The one local host every flow of the capture has at one end (a capture made on the device)."""
CONFIDENCE_DECLARED = 1.0
"""Named by the user (`--device`, the policy file, the devices API)."""


class LinkFlow(Protocol):
    """What the device book reads of a flow: its ends and ports, its service and the facts the
    link analyzers published (`LINK_META`). A `Flow` is one; so is a `LocalFlow`."""

    @property
    def orig_h(self) -> bytes: ...
    @property
    def orig_mac(self) -> bytes: ...
    @property
    def orig_p(self) -> int: ...
    @property
    def resp_h(self) -> bytes: ...
    @property
    def resp_mac(self) -> bytes: ...
    @property
    def resp_p(self) -> int: ...
    @property
    def service(self) -> str: ...
    @property
    def meta(self) -> Mapping[str, object]: ...


LINK_META = ("link_gcs_side", "control_hz", "control_from", "video", "video_from")
"""The facts of a flow the device book reads (`ground_station_side`, `observe_streams`)."""


class LocalFlow(NamedTuple):
    """Of a finished flow between two local hosts or on a drone link, what the device book reads
    (`LinkFlow`): `Monitor.settle` keeps this, not the flow with all its analyzers' state, and
    a process of a shared capture sends it to the parent in a few hundred bytes."""

    orig_h: bytes
    orig_mac: bytes
    orig_p: int
    resp_h: bytes
    resp_mac: bytes
    resp_p: int
    service: str
    meta: Mapping[str, object]

    @classmethod
    def of(cls, flow: Flow) -> LocalFlow:
        meta = flow.meta
        return cls(
            flow.orig_h,
            flow.orig_mac,
            flow.orig_p,
            flow.resp_h,
            flow.resp_mac,
            flow.resp_p,
            flow.service,
            {k: meta[k] for k in LINK_META if k in meta} if meta else {},
        )


def oui_vendor(mac: str | None) -> str | None:
    """The drone maker owning a MAC address prefix, if any."""
    return VENDOR_OUIS.get(mac[:8]) if mac else None


def ground_station_side(flow: LinkFlow, link: str) -> bool | None:
    """True when the originator is the ground station of a drone-link flow, False for the
    responder, None when the flow does not say.

    What the link's analyzer read from its content wins over the fixed addresses and ports."""
    side = flow.meta.get("link_gcs_side")
    if side in ("orig", "resp"):
        return side == "orig"  # the link's own content said (a MAVLink heartbeat, system 255)
    orig, resp = ip_str(flow.orig_h), ip_str(flow.resp_h)
    if resp in AIRCRAFT_ADDRESSES and orig not in AIRCRAFT_ADDRESSES:
        return True
    if orig in AIRCRAFT_ADDRESSES and resp not in AIRCRAFT_ADDRESSES:
        return False
    gcs = GCS_PORTS.get(link)
    if gcs is not None:
        if flow.resp_p in gcs:
            return False
        if flow.orig_p in gcs:
            return True
    air = AIRCRAFT_PORTS.get(link, frozenset())
    if flow.resp_p in air and flow.orig_p not in air:
        return True
    if flow.orig_p in air and flow.resp_p not in air:
        return False
    return None


@dataclass(slots=True)
class Host:
    """What is known about one local host."""

    ip: str
    mac: str | None = None
    hostname: str | None = None
    vendor_oui: str | None = None
    roles: set[str] = field(default_factory=set)
    """ground_station and/or aircraft."""
    reasons: list[str] = field(default_factory=list)
    """Why the roles were given (bounded)."""
    confidence: float = 0.0
    """How sure the strongest reason is (the `CONFIDENCE_` constants, a rule's confidence)."""

    def mark(self, role: str, reason: str, confidence: float = CONFIDENCE_LINK) -> None:
        self.roles.add(role)
        self.confidence = max(self.confidence, confidence)
        if reason not in self.reasons and len(self.reasons) < 8:
            self.reasons.append(reason)


@dataclass(slots=True)
class _Pair:
    """What passed between a possible ground station and a possible aircraft (local hosts)."""

    control_hz: float | None = None
    """The steady stream of small datagrams the first sent the second."""
    video: str | None = None
    """The video format the second sent the first."""


class DeviceBook:
    """Hosts seen on the local side, and which of them are ground stations."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}
        self._pairs: dict[tuple[str, str], _Pair] = {}

    def host(self, ip: str, mac: bytes | str = b"") -> Host:
        entry = self.hosts.get(ip)
        mac_text = mac if isinstance(mac, str) else mac_str(mac)
        if entry is None:
            entry = Host(ip=ip)
            self.hosts[ip] = entry
        if mac_text and entry.mac is None:
            entry.mac = mac_text
            entry.vendor_oui = oui_vendor(mac_text)
        return entry

    def observe_link(self, flow: LinkFlow, link: str) -> None:
        """A drone-link flow: mark its ground station and its aircraft."""
        side = ground_station_side(flow, link)
        if side is None:
            return
        gcs_ip, gcs_mac = (flow.orig_h, flow.orig_mac) if side else (flow.resp_h, flow.resp_mac)
        air_ip, air_mac = (flow.resp_h, flow.resp_mac) if side else (flow.orig_h, flow.orig_mac)
        air = self.host(ip_str(air_ip), air_mac)
        air.mark("aircraft", f"{link} link")
        self.host(ip_str(gcs_ip), gcs_mac).mark(
            "ground_station", f"{link} link with {ip_str(air_ip)}"
        )

    def observe_vendor_traffic(
        self, ip: str, mac: bytes | str, vendor: str, rule_id: str, confidence: float
    ) -> None:
        """A local host talking to a drone vendor's cloud is a ground station."""
        self.host(ip, mac).mark("ground_station", f"{vendor} traffic ({rule_id})", confidence)

    def observe_local_rule(
        self, flow: LinkFlow, responder: str, vendor: str, rule_id: str, confidence: float
    ) -> None:
        """A local flow a rule pack's local rule matched, the rule saying which end `responder`
        (aircraft or ground_station) the flow's responder is."""
        air_is_resp = responder == "aircraft"
        gcs = (flow.orig_h, flow.orig_mac) if air_is_resp else (flow.resp_h, flow.resp_mac)
        air = (flow.resp_h, flow.resp_mac) if air_is_resp else (flow.orig_h, flow.orig_mac)
        air_ip = ip_str(air[0])
        self.host(air_ip, air[1]).mark("aircraft", f"{vendor} link ({rule_id})", confidence)
        self.host(ip_str(gcs[0]), gcs[1]).mark(
            "ground_station", f"{vendor} link with {air_ip} ({rule_id})", confidence
        )

    def observe_streams(self, flow: LinkFlow) -> None:
        """A flow between two local hosts: the control stream and the video the local-link
        analyzer read off it (meta `control_hz`/`control_from`, `video`/`video_from`), or the
        video an RTSP server on the local network serves. A host that sends a steady control
        stream to a local address and gets video back from it is taken for a ground station,
        and that address for its aircraft."""
        meta = flow.meta
        ends = {"orig": (flow.orig_h, flow.orig_mac), "resp": (flow.resp_h, flow.resp_mac)}
        other = {"orig": "resp", "resp": "orig"}
        hz, sender = meta.get("control_hz"), meta.get("control_from")
        if isinstance(hz, str) and sender in ends:
            pair = self._pair(ends[sender], ends[other[sender]])
            pair.control_hz = pair.control_hz or float(hz)
            self._recognise(ends[sender], ends[other[sender]])
        video, sender = meta.get("video"), meta.get("video_from")
        if not isinstance(video, str) and flow.service == "rtsp":
            video, sender = "rtsp", "resp"  # the RTSP server serves the stream
        if isinstance(video, str) and sender in ends:
            pair = self._pair(ends[other[sender]], ends[sender])
            pair.video = pair.video or video
            self._recognise(ends[other[sender]], ends[sender])

    def _pair(self, gcs: tuple[bytes, bytes], air: tuple[bytes, bytes]) -> _Pair:
        self.host(ip_str(gcs[0]), gcs[1])
        self.host(ip_str(air[0]), air[1])
        key = (ip_str(gcs[0]), ip_str(air[0]))
        pair = self._pairs.get(key)
        if pair is None:
            pair = self._pairs[key] = _Pair()
        return pair

    def _recognise(self, gcs: tuple[bytes, bytes], air: tuple[bytes, bytes]) -> None:
        gcs_ip, air_ip = ip_str(gcs[0]), ip_str(air[0])
        pair = self._pairs[(gcs_ip, air_ip)]
        if pair.control_hz is None or pair.video is None:
            return
        first = first_address(air_ip)
        confidence = CONFIDENCE_BEHAVIOUR_AP if first else CONFIDENCE_BEHAVIOUR
        where = ", the first address of its subnet like a drone's access point" if first else ""
        self.hosts[gcs_ip].mark(
            "ground_station",
            f"sends a {pair.control_hz:.0f} Hz control stream to {air_ip} and gets "
            f"{pair.video} video back (behaviour{where})",
            confidence,
        )
        self.hosts[air_ip].mark(
            "aircraft",
            f"sends {pair.video} video to {gcs_ip} and gets its control stream (behaviour)",
            confidence,
        )

    def not_judged(self, host: Host) -> str:
        """Why a local host was not taken for a ground station, in words."""
        if "aircraft" in host.roles:
            return "it is an aircraft (" + "; ".join(host.reasons) + ")"
        half = []
        for (gcs, air), pair in self._pairs.items():
            if gcs == host.ip and pair.control_hz is not None:
                half.append(
                    f"it sends a {pair.control_hz:.0f} Hz control stream to {air}, but no video "
                    "came back"
                )
            if gcs == host.ip and pair.video is not None and pair.control_hz is None:
                half.append(f"it gets {pair.video} video from {air}, but sends it no control")
        if half:
            return "; ".join(half)
        return "no drone link, no drone-vendor traffic, no control stream with video back"

    def ground_stations(self) -> list[Host]:
        """Hosts found to be ground stations, and hosts with a maker's OUI that are not aircraft."""
        out = []
        for host in self.hosts.values():
            if "ground_station" in host.roles:
                out.append(host)
            elif (
                host.vendor_oui
                and "aircraft" not in host.roles
                and host.ip not in AIRCRAFT_ADDRESSES
            ):
                host.mark("ground_station", f"{host.vendor_oui} MAC prefix", CONFIDENCE_OUI)
                out.append(host)
        return sorted(out, key=lambda h: h.ip)


def first_address(ip: str) -> bool:
    """Whether an IPv4 address is the first host address of its /24 (x.y.z.1), where a Wi-Fi
    drone's own access point usually sits."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return addr.version == 4 and addr.packed[3] == 1
