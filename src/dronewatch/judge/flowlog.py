"""flows.jsonl: one record per flow when it ends, with what the analyzers learnt about it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from dronewatch.core import tcp
from dronewatch.core.community_id import community_id
from dronewatch.core.engine import conn_state
from dronewatch.core.flow import Flow, ip_str, mac_str
from dronewatch.core.hooks import Record, make_record
from dronewatch.geoip.base import GeoInfo
from dronewatch.judge.classify import Classification

NAME_KEYS = ("sni", "quic_sni", "http_host", "dns_name")
"""Meta keys naming the destination, best first."""


@dataclass(frozen=True, slots=True)
class FlowRecord(Record):
    """A finished flow (Zeek conn.log in spirit)."""

    log: ClassVar[str] = "flows"
    uid: str
    community_id: str
    proto: str
    orig_h: str
    orig_p: int
    resp_h: str
    resp_p: int
    duration_s: float
    orig_pkts: int
    orig_bytes: int
    """IP-level bytes sent by the originator."""
    resp_pkts: int
    resp_bytes: int
    orig_payload_bytes: int
    resp_payload_bytes: int
    conn_state: str
    end_reason: str
    orig_mac: str | None = None
    resp_mac: str | None = None
    vlan: int | None = None
    history: str | None = None
    missed_bytes: int | None = None
    """Bytes of the flow's content gaps: TCP data the peer acknowledged that the capture never
    showed (packet loss on the way to the capture; `dronewatch.core.tcp`); None when not TCP."""
    service: str | None = None
    server_name: str | None = None
    """The destination's name: TLS/QUIC SNI, HTTP host, or the DNS name that resolved to it."""
    link: str | None = None
    """Drone-link protocol when the flow is a local drone link."""
    video: str | None = None
    """Video format one end of a local flow sent (jpeg, h264, rtp), by signature."""
    video_from: str | None = None
    """orig or resp: the end that sent the video."""
    control_hz: float | None = None
    """Rate of the steady stream of small datagrams one end of a local flow sent."""
    control_from: str | None = None
    """orig or resp: the end that sent the control stream."""
    vendor: str | None = None
    app: str | None = None
    category: str | None = None
    rule_id: str | None = None
    confidence: float | None = None
    orig_scope: str | None = None
    """local or public: whether the originator is on the local network."""
    resp_scope: str | None = None
    """local or public: whether the responder is off the local network."""
    resp_country: str | None = None
    resp_asn: int | None = None
    resp_as_org: str | None = None
    tunnel: str | None = None
    """The encapsulation the flow's packets came in (`erspan_i`, `erspan_ii`, `erspan_iii`, `gre`,
    `vxlan`, `geneve`, `mpls`, `pppoe`: the outermost one), None when seen directly. The flow is
    keyed and judged by its inner packets; the tunnel is the first packet's."""
    tunnel_src: str | None = None
    """Outer source IP address of the tunnel (GRE, ERSPAN, VXLAN, Geneve)."""
    tunnel_dst: str | None = None
    """Outer destination IP address of the tunnel."""
    tunnel_vlan: int | None = None
    """VLAN id of the outer frame, when tagged (`vlan` is the inner frame's)."""
    tunnel_id: int | None = None
    """VXLAN/Geneve VNI, ERSPAN session id, PPPoE session id, GRE key, or bottom MPLS label."""
    inspection: str | None = None
    """Set only when the engine stopped inspecting the flow early because every analyzer reading
    it waited for something that did not come (`EngineOptions.stall_packets`): "stopped: tls
    waited for ServerHello (12 packets, 14400 bytes)"; the rest of the flow was counted, not read.
    None for a flow inspected as far as usual."""


def server_name(flow: Flow) -> str | None:
    """The best name known for the flow's responder."""
    for key in NAME_KEYS:
        value = flow.meta.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def flow_record(
    flow: Flow,
    cls: Classification | None = None,
    geo: GeoInfo | None = None,
    orig_geo: GeoInfo | None = None,
) -> FlowRecord:
    """The flows.jsonl record of a flow, with its classification and the responder's geo."""
    tunnel = flow.tunnel
    if flow.meta:
        link = flow.meta.get("link")
        name = server_name(flow)
        video, video_from = _text(flow, "video"), _text(flow, "video_from")
        hz, control_from = _text(flow, "control_hz"), _text(flow, "control_from")
    else:  # no analyzer published a fact (a scan's SYN, most short flows): nothing to read
        link = name = video = video_from = hz = control_from = None
    # In field order (`make_record`: 45 fields, one record per flow).
    return make_record(
        FlowRecord,
        (
            flow.first_ts,  # ts
            flow.uid,
            community_id(flow.proto, flow.orig_h, flow.orig_p, flow.resp_h, flow.resp_p),
            flow.proto_name,  # proto
            flow.orig_ip,  # orig_h
            flow.orig_p,
            flow.resp_ip,  # resp_h
            flow.resp_p,
            round(flow.duration_s, 6),  # duration_s
            flow.orig_pkts,
            flow.orig_bytes,
            flow.resp_pkts,
            flow.resp_bytes,
            flow.orig_payload_bytes,
            flow.resp_payload_bytes,
            conn_state(flow),
            flow.end_reason,
            mac_str(flow.orig_mac) or None,  # orig_mac
            mac_str(flow.resp_mac) or None,  # resp_mac
            flow.vlan,
            flow.history or None,  # history
            None if flow.tcp is None else tcp.missed_bytes(flow.tcp),  # missed_bytes
            flow.service or None,  # service
            name,  # server_name
            link if isinstance(link, str) else None,  # link
            video,
            video_from,
            float(hz) if hz else None,  # control_hz
            control_from,
            cls.vendor if cls else None,  # vendor
            cls.app if cls else None,  # app
            cls.category if cls else None,  # category
            cls.rule_id if cls else None,  # rule_id
            cls.confidence if cls else None,  # confidence
            orig_geo.scope if orig_geo else None,  # orig_scope
            geo.scope if geo else None,  # resp_scope
            geo.country_code if geo else None,  # resp_country
            geo.asn if geo else None,  # resp_asn
            geo.as_org if geo else None,  # resp_as_org
            tunnel.kind if tunnel else None,  # tunnel
            (ip_str(tunnel.src) or None) if tunnel else None,  # tunnel_src
            (ip_str(tunnel.dst) or None) if tunnel else None,  # tunnel_dst
            tunnel.vlan if tunnel else None,  # tunnel_vlan
            tunnel.ident if tunnel else None,  # tunnel_id
            flow.inspection or None,  # inspection
        ),
    )


def _text(flow: Flow, key: str) -> str | None:
    value = flow.meta.get(key)
    return value if isinstance(value, str) else None
