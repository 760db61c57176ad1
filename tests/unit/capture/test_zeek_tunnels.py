"""Zeek's public tunnel traces (pcaps/third_party/zeek/tunnels/): the tunnel each flow names.

tests/golden/test_zeek.py compares these traces' inner connections and tunnels with Zeek's
conn.log and tunnel.log (the endpoints, the counters, the tunnel's type and outer addresses).
Zeek logs no VNI, session id or label there; this test holds what dronewatch records on each
flow (type, outer addresses, outer VLAN, VNI / session id / GRE key / bottom label) to the values
the traces carry, and to Zeek's own outputs where its tests print them (the VNI of each VXLAN
and Geneve packet, the PPPoE session id, the VLAN of a QinQ frame, the endpoints of a Linux
cooked v2 capture).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.flowlog import FlowRecord
from tests.golden.test_zeek import BASELINES, _tool
from tests.pcaps import THIRD_PARTY, capture

TRACES = THIRD_PARTY / "zeek" / "tunnels"
TUNNEL_FIELDS = ("tunnel", "tunnel_src", "tunnel_dst", "tunnel_vlan", "tunnel_id")

# trace -> the tunnels its flows name (tunnel, tunnel_src, tunnel_dst, tunnel_vlan, tunnel_id);
# ids as Wireshark reads them from the outer headers.
NAMED: dict[str, set[tuple[Any, ...]]] = {
    "erspanI.pcap": {("erspan_i", "192.168.1.1", "192.168.1.2", None, None)},
    # ERSPAN II span id 100 (the mirrored frame's VLAN 23 is the flow's own `vlan`)
    "erspanII.pcap": {("erspan_ii", "2.2.2.2", "1.1.1.1", None, 100)},
    "erspanIII.pcap": {("erspan_iii", "10.0.0.1", "10.0.0.2", None, 0)},
    # GRE carrying Ethernet (0x6558) with keys 0 and 0x02000000 (one per direction)
    "erspan.pcap": {
        ("gre", "10.200.0.3", "10.200.0.224", None, 0),
        ("gre", "10.200.0.3", "10.200.0.224", None, 0x02000000),
    },
    # GRE without a key; the one flow started by the other end names the other direction
    "gre-sample.pcap": {
        ("gre", "172.27.1.66", "66.59.109.137", None, None),
        ("gre", "66.59.109.137", "172.27.1.66", None, None),
    },
    # 802.11 frames from an Aruba access point (GRE 0x8240, the outer frame on VLAN 22)
    "gre-aruba-amsdu.pcap": {("gre", "10.226.22.9", "10.102.16.187", 22, None)},
    # plain 802.11 data frames (GRE 0x8200, the outer frame on VLAN 300): 27 flows of a station
    "gre-aruba.pcap": {("gre", "10.3.34.171", "10.33.10.23", 300, None)},
    # GRE inside GRE: the outermost tunnel (Zeek names the inner one, docs/zeek-differences.md)
    "gre-within-gre.pcap": {
        ("gre", "72.205.54.70", "86.106.164.150", None, None),
        ("gre", "86.106.164.150", "72.205.54.70", None, None),
    },
    "vxlan.pcap": {("vxlan", "192.168.56.11", "192.168.56.12", None, 123)},
    "geneve.pcap": {("geneve", "20.0.0.1", "20.0.0.2", None, 0)},
    "geneve-ipv6.pcap": {("geneve", "10.0.0.1", "10.0.0.2", None, 0x123456)},
    "geneve-many-options.pcap": {("geneve", "192.168.33.179", "192.168.179.33", None, 0x0C012E)},
    "vxlan-encapsulated-http.pcap": {("vxlan", "10.1.200.131", "10.1.1.172", None, 1)},
    # telnet under MPLS label 29, HTTP plain and on VLAN 4093 (the flow's own `vlan`)
    "mixed-vlan-mpls.pcap": {(None,) * 5, ("mpls", None, None, None, 29)},
    # one segment on VLAN 3199 without MPLS, one on VLAN 0 under label 16106, one on VLAN 3399
    # under labels 254 and 99 (the bottom one recorded)
    "mpls-in-vlan.pcap": {
        (None,) * 5,
        ("mpls", None, None, 0, 16106),
        ("mpls", None, None, 3399, 99),
    },
    "pppoe.pcap": {("pppoe", None, None, None, 0x11)},
    # S-tag 3704 over C-tag 2474, PPPoE session 0x0f07
    "pppoe-over-qinq.pcap": {("pppoe", None, None, 3704, 3847)},
    "q-in-q.pcap": {(None,) * 5},
    "linux_dlt_sll2.pcap": {(None,) * 5},
}


@functools.cache
def flows(name: str) -> tuple[FlowRecord, ...]:
    """The flow records of one trace, as `dronewatch analyze` writes them."""
    got: list[FlowRecord] = []
    run_source(
        FileSource(str(capture(TRACES / name))),
        lambda r: got.append(r) if isinstance(r, FlowRecord) else None,
        AnalysisConfig(),
    )
    return tuple(got)


def baseline(name: str, file: str) -> Path:
    """A file of Zeek's baseline for one of the traces."""
    return capture(BASELINES / f"tunnels_{name}" / file)


def test_every_public_tunnel_trace_is_named() -> None:
    """Every trace copied to pcaps/third_party/zeek/tunnels/ has its tunnels listed here."""
    assert {p.name for p in TRACES.iterdir() if p.is_file()} == set(NAMED)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_flows_name_the_tunnel_that_carried_them(name: str) -> None:
    """Each flow of a public trace names its tunnel: type, outer addresses, outer VLAN and the
    VNI, session id or bottom label the outer headers carry."""
    got = {tuple(getattr(f, k) for k in TUNNEL_FIELDS) for f in flows(name)}
    assert got == NAMED[name]


@pytest.mark.parametrize("name", ["vxlan.pcap", "geneve.pcap", "geneve-many-options.pcap"])
def test_vni_is_the_one_zeek_prints(name: str) -> None:
    """The VNI on the flows is the one Zeek's vxlan_packet / geneve_packet events print."""
    lines = baseline(name, "out").read_text().splitlines()
    vnis = {int(line.rsplit(", ", 1)[1]) for line in lines if line.endswith(tuple("0123456789"))}
    assert vnis and {f.tunnel_id for f in flows(name)} == vnis


def test_pppoe_session_id_is_the_one_zeek_logs() -> None:
    """PPPoE over QinQ: the session id on the flow is Zeek's pppoe_session_id of the same
    connection (the policy script's conn.log)."""
    rows = _tool().read_zeek_log(baseline("pppoe-over-qinq.pcap", "conn.log.cut"))
    want = {(r["id.orig_h"], int(r["id.orig_p"]), int(r["pppoe_session_id"])) for r in rows}
    got = {(f.orig_h, f.orig_p, f.tunnel_id) for f in flows("pppoe-over-qinq.pcap")}
    assert want and got == want


def test_qinq_vlan_is_the_outer_tag_zeek_logs() -> None:
    """QinQ: a flow's `vlan` is Zeek's `vlan` (the outer tag) of the same connection."""
    rows = _tool().read_zeek_log(baseline("q-in-q.pcap", "vlan-logging.conn.log"))
    want = {(r["id.orig_h"], int(r["id.orig_p"]), int(r["vlan"])) for r in rows}
    got = {(f.orig_h, f.orig_p, f.vlan) for f in flows("q-in-q.pcap")}
    assert want and got == want


_CONN_ID = re.compile(
    r"\[orig_h=(?P<oh>[^,]+), orig_p=(?P<op>\d+)/\w+, resp_h=(?P<rh>[^,]+), resp_p=(?P<rp>\d+)/"
)


def test_linux_cooked_v2_connections_are_zeeks() -> None:
    """Linux cooked v2 (link type 276): the flows are the ICMP and ICMPv6 connections whose ids
    Zeek's test prints."""
    text = baseline("linux_dlt_sll2.pcap", "stdout").read_text()
    want = {(m["oh"], int(m["op"]), m["rh"], int(m["rp"])) for m in _CONN_ID.finditer(text)}
    got = {(f.orig_h, f.orig_p, f.resp_h, f.resp_p) for f in flows("linux_dlt_sll2.pcap")}
    assert len(want) == 2 and got == want


def test_an_aruba_a_msdu_gives_both_of_its_packets() -> None:
    """Zeek's Aruba trace: one GRE packet carrying an 802.11 A-MSDU of two TCP segments from
    157.240.18.16:443 (Zeek's conn.log: 2 packets, 356 IP bytes, `tests/golden/test_zeek.py`);
    the flow's MACs are the subframes' destination and source, as Wireshark reads them."""
    (flow,) = flows("gre-aruba-amsdu.pcap")
    assert (flow.resp_h, flow.resp_p, flow.resp_pkts, flow.resp_bytes) == (
        "157.240.18.16",
        443,
        2,
        356,
    )
    assert (flow.orig_mac, flow.resp_mac) == ("66:15:48:3c:47:e7", "88:e0:f3:7f:ae:c0")
