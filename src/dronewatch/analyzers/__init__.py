"""Analyzers: one protocol per module; `default_analyzers()` lists the ones a run uses."""

from __future__ import annotations

from dronewatch.analyzers.dhcp import DhcpAnalyzer
from dronewatch.analyzers.dji_droneid import DjiDroneIdAnalyzer
from dronewatch.analyzers.dji_wifi import DjiWifiAnalyzer
from dronewatch.analyzers.dns import DnsAnalyzer
from dronewatch.analyzers.http import HttpAnalyzer
from dronewatch.analyzers.mavlink import MavlinkAnalyzer
from dronewatch.analyzers.mdns import MdnsAnalyzer
from dronewatch.analyzers.mqtt import MqttAnalyzer
from dronewatch.analyzers.parrot import ParrotAnalyzer
from dronewatch.analyzers.quic import QuicAnalyzer
from dronewatch.analyzers.remoteid import RemoteIdAnalyzer
from dronewatch.analyzers.rtmp import RtmpAnalyzer
from dronewatch.analyzers.rtsp import RtspAnalyzer
from dronewatch.analyzers.tello import TelloAnalyzer
from dronewatch.analyzers.tls import TlsAnalyzer
from dronewatch.core.hooks import Analyzer, Context


def default_analyzers(ctx: Context) -> list[Analyzer]:
    """Every built-in analyzer, in dispatch order: the commonest protocols first."""
    return [
        TlsAnalyzer(ctx),
        QuicAnalyzer(ctx),
        DnsAnalyzer(ctx),
        MdnsAnalyzer(ctx),
        HttpAnalyzer(ctx),
        DhcpAnalyzer(ctx),
        MqttAnalyzer(ctx),
        RtmpAnalyzer(ctx),
        RtspAnalyzer(ctx),
        MavlinkAnalyzer(ctx),
        DjiWifiAnalyzer(ctx),
        TelloAnalyzer(ctx),
        ParrotAnalyzer(ctx),
        RemoteIdAnalyzer(ctx),
        DjiDroneIdAnalyzer(ctx),
    ]
