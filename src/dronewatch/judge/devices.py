"""Which hosts are ground stations and which are aircraft: facts of the drone links.

A ground-station device is found by: the drone link it speaks (the end that is not the
aircraft), traffic classified to a drone vendor's cloud, or a drone maker's MAC prefix (smart
controllers are made by the drone makers). The aircraft end of a link is told by the vendor's fixed
aircraft addresses and ports (../shared/research/endpoints.md sections 1c, 2, 6, 7).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def oui_vendor(mac: str | None) -> str | None:
    """The drone maker owning a MAC address prefix, if any."""
    return VENDOR_OUIS.get(mac[:8]) if mac else None


def ground_station_side(flow: Flow, link: str) -> bool | None:
    """True when the originator is the ground station of a drone-link flow, False for the
    responder, None when the flow does not say.

    What the link's analyzer read from its content wins over the fixed addresses and ports."""
    side = flow.meta.get("link_gcs_side")
    if side in ("orig", "resp"):
        return side == "orig"  # the link's own content said (a MAVLink heartbeat, system 255)
    orig, resp = flow.orig_ip, flow.resp_ip
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

    def mark(self, role: str, reason: str) -> None:
        self.roles.add(role)
        if reason not in self.reasons and len(self.reasons) < 8:
            self.reasons.append(reason)


class DeviceBook:
    """Hosts seen on the local side, and which of them are ground stations."""

    def __init__(self) -> None:
        self.hosts: dict[str, Host] = {}

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

    def observe_link(self, flow: Flow, link: str) -> None:
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

    def observe_vendor_traffic(self, ip: str, mac: bytes, vendor: str, rule_id: str) -> None:
        """A local host talking to a drone vendor's cloud is a ground station."""
        self.host(ip, mac).mark("ground_station", f"{vendor} traffic ({rule_id})")

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
                host.mark("ground_station", f"{host.vendor_oui} MAC prefix")
                out.append(host)
        return sorted(out, key=lambda h: h.ip)
