"""Analyzers: one protocol per module; `default_analyzers()` lists the ones a run uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from dronewatch.analyzers.dhcp import DhcpAnalyzer
from dronewatch.analyzers.dji_droneid import DjiDroneIdAnalyzer, DjiDroneIdOptions
from dronewatch.analyzers.dji_wifi import DjiWifiAnalyzer, DjiWifiOptions
from dronewatch.analyzers.dns import DnsAnalyzer, DnsOptions
from dronewatch.analyzers.dtls import DtlsAnalyzer, DtlsOptions
from dronewatch.analyzers.http import HttpAnalyzer, HttpOptions
from dronewatch.analyzers.local_link import LocalLinkAnalyzer, LocalLinkOptions
from dronewatch.analyzers.mavlink import MavlinkAnalyzer, MavlinkOptions
from dronewatch.analyzers.mdns import MdnsAnalyzer, MdnsOptions
from dronewatch.analyzers.mqtt import MqttAnalyzer, MqttOptions
from dronewatch.analyzers.ndp import NdpAnalyzer
from dronewatch.analyzers.parrot import ParrotAnalyzer, ParrotOptions
from dronewatch.analyzers.quic import QuicAnalyzer, QuicOptions
from dronewatch.analyzers.remoteid import RemoteIdAnalyzer, RemoteIdOptions
from dronewatch.analyzers.rtmp import RtmpAnalyzer, RtmpOptions
from dronewatch.analyzers.rtsp import RtspAnalyzer, RtspOptions
from dronewatch.analyzers.tello import TelloAnalyzer, TelloOptions
from dronewatch.analyzers.tls import TlsAnalyzer, TlsOptions
from dronewatch.core.hooks import Analyzer, Context


@dataclass(frozen=True, slots=True)
class AnalyzerOptions:
    """The options of every built-in analyzer that has some, one field per analyzer, named as the
    analyzer is (`tls` holds `TlsAnalyzer`'s `TlsOptions`); each defaults to its analyzer's own."""

    tls: TlsOptions = field(default_factory=TlsOptions)
    quic: QuicOptions = field(default_factory=QuicOptions)
    dtls: DtlsOptions = field(default_factory=DtlsOptions)
    dns: DnsOptions = field(default_factory=DnsOptions)
    mdns: MdnsOptions = field(default_factory=MdnsOptions)
    http: HttpOptions = field(default_factory=HttpOptions)
    mqtt: MqttOptions = field(default_factory=MqttOptions)
    rtmp: RtmpOptions = field(default_factory=RtmpOptions)
    rtsp: RtspOptions = field(default_factory=RtspOptions)
    mavlink: MavlinkOptions = field(default_factory=MavlinkOptions)
    dji_wifi: DjiWifiOptions = field(default_factory=DjiWifiOptions)
    tello: TelloOptions = field(default_factory=TelloOptions)
    parrot: ParrotOptions = field(default_factory=ParrotOptions)
    remoteid: RemoteIdOptions = field(default_factory=RemoteIdOptions)
    dji_droneid: DjiDroneIdOptions = field(default_factory=DjiDroneIdOptions)
    local_link: LocalLinkOptions = field(default_factory=LocalLinkOptions)


def default_analyzers(ctx: Context, options: AnalyzerOptions | None = None) -> list[Analyzer]:
    """Every built-in analyzer, in dispatch order (the commonest protocols first), each with its
    options from `options` (default: the analyzers' own defaults). DNS and mDNS, which read their
    own ports only, come before QUIC and DTLS, which read every UDP flow: a lookup is named by
    its first datagram, and they let a flow another analyzer named go at once, so they are not
    handed the rest of it (the answer, in a flood of lookups)."""
    o = options or AnalyzerOptions()
    return [
        TlsAnalyzer(ctx, o.tls),
        DnsAnalyzer(ctx, o.dns),
        MdnsAnalyzer(ctx, o.mdns),
        QuicAnalyzer(ctx, o.quic),
        DtlsAnalyzer(ctx, o.dtls),
        HttpAnalyzer(ctx, o.http),
        DhcpAnalyzer(ctx),
        MqttAnalyzer(ctx, o.mqtt),
        RtmpAnalyzer(ctx, o.rtmp),
        RtspAnalyzer(ctx, o.rtsp),
        MavlinkAnalyzer(ctx, o.mavlink),
        DjiWifiAnalyzer(ctx, o.dji_wifi),
        TelloAnalyzer(ctx, o.tello),
        ParrotAnalyzer(ctx, o.parrot),
        RemoteIdAnalyzer(ctx, o.remoteid),
        DjiDroneIdAnalyzer(ctx, o.dji_droneid),
        LocalLinkAnalyzer(ctx, o.local_link),
        NdpAnalyzer(ctx),
    ]
