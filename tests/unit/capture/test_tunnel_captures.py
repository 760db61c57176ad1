"""The same session through every carrier (pcaps/lab/tunnels/): judged as if seen directly.

Each built capture holds the frames of pcaps/scenarios/dji_fly_ldm_on_violation.pcap inside one
encapsulation or link type (scripts/_record/tunnels.py): its records with LDM on must be the
session's own (flows, DNS, TLS, the DUML link, devices, egress, the alert and the verdicts), the
flows naming the tunnel that carried them; the kernel's VXLAN capture raises its alert too.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, CaptureRecord, run_source
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.alert import Alert
from dronewatch.judge.classify import Classifier
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.policy import Policy
from tests.pcaps import PCAPS, capture

SESSION = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
TUNNELS = PCAPS / "lab" / "tunnels"
TUNNEL_FIELDS = ("tunnel", "tunnel_src", "tunnel_dst", "tunnel_vlan", "tunnel_id")

# capture -> (the tunnel its flows name, what it cannot show: no inner MACs, the outer VLAN in
# `vlan`, times from a count of pcapng units)
CARRIED: dict[str, tuple[tuple[Any, ...], frozenset[str]]] = {
    "erspan_i.pcap": (("erspan_i", "192.0.2.1", "192.0.2.200", None, None), frozenset()),
    "erspan_ii_vlan.pcap": (("erspan_ii", "192.0.2.1", "192.0.2.200", 100, 17), frozenset()),
    "erspan_iii.pcap": (("erspan_iii", "192.0.2.1", "192.0.2.200", None, 18), frozenset()),
    "gre_key.pcap": (("gre", "192.0.2.1", "192.0.2.200", None, 1001), frozenset({"mac"})),
    "gretap_ipv6.pcap": (("gre", "2001:db8:100::1", "2001:db8:100::200", None, None), frozenset()),
    "vxlan.pcap": (("vxlan", "10.0.1.17", "10.0.9.45", None, 0x5B1D), frozenset()),
    "geneve.pcap": (("geneve", "10.0.2.50", "10.0.2.60", None, 0), frozenset()),
    "mpls.pcap": (("mpls", None, None, None, 100), frozenset()),
    "pppoe_vlan.pcap": (("pppoe", None, None, 7, 0x2A31), frozenset()),
    "qinq.pcap": ((None,) * 5, frozenset({"vlan"})),
    "linux_sll.pcap": ((None,) * 5, frozenset({"mac"})),
    "two_interfaces.pcapng": ((None,) * 5, frozenset({"mac", "time"})),
}


def config() -> AnalysisConfig:
    return AnalysisConfig(
        policy=Policy().with_ldm(True),
        classifier=_classifier(),
        resolver=MaxMindResolver.bundled(),
    )


@functools.cache
def _classifier() -> Classifier:
    return Classifier.load()


def records(path: Path) -> list[Record]:
    got: list[Record] = []
    run_source(FileSource(str(capture(path))), got.append, config())
    return got


@functools.cache
def session_records() -> tuple[Record, ...]:
    return tuple(records(SESSION))


def normal(record: Record, unseen: frozenset[str]) -> dict[str, Any]:
    """A record as data, without the tunnel fields and what the carrier cannot show."""
    out = {}
    for key, value in record.to_dict().items():
        if key in TUNNEL_FIELDS or ("mac" in unseen and ("mac" in key or key == "vendor_oui")):
            continue
        if "vlan" in unseen and key == "vlan":
            continue
        if "time" in unseen:
            if key in ("uid", "uids"):
                continue
            if isinstance(value, float):
                value = round(value, 6)
        out[key] = value
    return out


@pytest.mark.parametrize("name", sorted(CARRIED))
def test_session_through_a_carrier_is_judged_as_seen_directly(name: str) -> None:
    """The session's records and its alert come out of the carrier unchanged, and each flow
    names the tunnel that carried its first packet."""
    tunnel, unseen = CARRIED[name]
    got = [r for r in records(TUNNELS / name) if not isinstance(r, CaptureRecord)]
    want = [r for r in session_records() if not isinstance(r, CaptureRecord)]
    assert [normal(r, unseen) for r in got] == [normal(r, unseen) for r in want]
    flows = [r for r in got if isinstance(r, FlowRecord)]
    assert len(flows) == 3
    assert {tuple(getattr(f, field) for field in TUNNEL_FIELDS) for f in flows} == {tunnel}
    alerts = [r for r in got if isinstance(r, Alert)]
    assert [(a.rule_id, a.bytes_out, a.dest_name) for a in alerts] == [
        ("dji.mydjiflight.api", 520_843, "mydjiflight.dji.com")
    ]


def test_every_built_capture_is_checked() -> None:
    """No capture under pcaps/lab/tunnels/ escapes the comparison but the recorded one."""
    on_disk = {p.name for p in TUNNELS.iterdir() if p.is_file()}
    assert on_disk == set(CARRIED) | {"vxlan_kernel.pcap"}


def test_kernel_vxlan_capture_raises_the_alert_and_names_the_tunnel() -> None:
    """The Linux kernel's own VXLAN packets (recorded on the underlay): the phone's DNS lookup
    and TLS upload come out of VNI 42 between the two VTEPs and raise the LDM alert."""
    got = records(TUNNELS / "vxlan_kernel.pcap")
    flows = [r for r in got if isinstance(r, FlowRecord)]
    assert {(f.service, f.orig_h, f.resp_p) for f in flows} == {
        ("dns", "10.77.0.2", 53),
        ("tls", "10.77.0.2", 443),
    }
    assert {tuple(getattr(f, field) for field in TUNNEL_FIELDS) for f in flows} == {
        ("vxlan", "192.0.2.1", "192.0.2.2", None, 42)
    }
    alerts = [r for r in got if isinstance(r, Alert)]
    assert [(a.rule_id, a.dest_name, a.device_mac) for a in alerts] == [
        ("dji.mydjiflight.api", "mydjiflight.dji.com", "ae:3f:52:8c:77:02")
    ]
    assert alerts[0].bytes_out > 60_000
    cap = next(r for r in got if isinstance(r, CaptureRecord))
    assert cap.non_ip == {"arp": 4} and cap.malformed == 0
