"""ARP (RFC 826, RFC 5227) on a site whose hosts have public IPv4 addresses: a request shows its
sender on the link, a probe the address its sender is taking, and an end of a flow at such an
address is local; a reply or a request's target (what a proxy may answer for, what a host may
ask for by mistake) is not taken. In one process or several, on either path."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from dronewatch.core.engine import owner
from dronewatch.core.flow import IP_PROTO_TCP
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import CaptureRecord
from dronewatch.judge.flowlog import FlowRecord
from tests.factories import records_by_log as records

ROUTER_MAC, PHONE_MAC = "02:00:00:00:01:01", "02:00:00:00:01:10"
ROUTER, PHONE = "192.0.2.1", "192.0.2.10"
"""A site whose hosts have public addresses (here the documentation range, which no table of
local ranges holds either)."""
CLOUD = "198.51.100.10"
BROADCAST = "ff:ff:ff:ff:ff:ff"


def site(path: Path, arp: list[Ether]) -> int:
    """`arp`, then the phone's upload to the cloud over TCP, from a port whose flow process 0
    of two owns. Returns the port."""
    phone_b, cloud_b = (ipaddress.IPv4Address(a).packed for a in (PHONE, CLOUD))
    sport = next(
        p for p in range(40000, 41000) if owner((IP_PROTO_TCP, phone_b, p, cloud_b, 443), 2) == 0
    )
    up = Ether(src=PHONE_MAC, dst=ROUTER_MAC) / IP(src=PHONE, dst=CLOUD)
    down = Ether(src=ROUTER_MAC, dst=PHONE_MAC) / IP(src=CLOUD, dst=PHONE)
    frames = [
        *arp,
        up / TCP(sport=sport, dport=443, flags="S", seq=1000),
        down / TCP(sport=443, dport=sport, flags="SA", ack=1001),
        *(
            up / TCP(sport=sport, dport=443, flags="PA", seq=1001 + i * 1000) / bytes(1000)
            for i in range(4)
        ),
    ]
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i * 0.01
    wrpcap(str(path), frames)
    return sport


def request(sender_mac: str, sender: str, target: str) -> Ether:
    return Ether(src=sender_mac, dst=BROADCAST) / ARP(
        op=1, hwsrc=sender_mac, psrc=sender, pdst=target
    )


def reply(sender_mac: str, sender: str, target_mac: str, target: str) -> Ether:
    return Ether(src=sender_mac, dst=target_mac) / ARP(
        op=2, hwsrc=sender_mac, psrc=sender, hwdst=target_mac, pdst=target
    )


def upload(recs: dict[str, list[Record]], sport: int) -> tuple[str | None, str | None]:
    (flow,) = [f for f in recs["flows"] if isinstance(f, FlowRecord) and f.orig_p == sport]
    return flow.orig_scope, flow.resp_scope


@pytest.mark.parametrize(
    ("arp", "on_link"),
    [
        # The phone asks for its gateway, the gateway answers: the phone (a request's sender).
        (
            [request(PHONE_MAC, PHONE, ROUTER), reply(ROUTER_MAC, ROUTER, PHONE_MAC, PHONE)],
            (f"{PHONE}/32",),
        ),
        # The router asks for the phone, then the phone for the router: both.
        (
            [request(ROUTER_MAC, ROUTER, PHONE), request(PHONE_MAC, PHONE, ROUTER)],
            (f"{ROUTER}/32", f"{PHONE}/32"),
        ),
        # The phone probes the address it is taking (RFC 5227, from 0.0.0.0).
        ([request(PHONE_MAC, "0.0.0.0", PHONE)], (f"{PHONE}/32",)),
    ],
)
def test_a_host_at_a_public_address_is_local_once_arp_shows_it(
    tmp_path: Path, arp: list[Ether], on_link: tuple[str, ...]
) -> None:
    path = tmp_path / "site.pcap"
    sport = site(path, arp)
    for processes, bulk in ((1, True), (1, False), (2, True)):
        recs = records(path, processes, bulk=bulk)
        (cap,) = recs["capture"]
        assert isinstance(cap, CaptureRecord)
        assert cap.on_link == on_link
        assert cap.non_ip == {"arp": len(arp)}
        assert upload(recs, sport) == ("local", "public")
        assert PHONE in {getattr(e, "host_ip", None) for e in recs.get("egress", [])}


def test_what_a_proxy_may_answer_is_not_taken(tmp_path: Path) -> None:
    """Proxy ARP: the router answers for the cloud, which the phone asked for as if on the link.
    Neither makes the cloud local (that would hide the upload), and without a request of its own
    the phone is not shown on the link either: its upload runs between two public addresses."""
    path = tmp_path / "proxy.pcap"
    sport = site(path, [reply(ROUTER_MAC, CLOUD, PHONE_MAC, PHONE)])
    recs = records(path)
    assert recs["capture"][0].on_link is None  # type: ignore[attr-defined]
    assert upload(recs, sport) == ("public", "public")
    # With the phone's request for the cloud: the phone is shown (the request's sender), the
    # cloud is not (what it asked for, and what the proxy answered).
    path = tmp_path / "asked.pcap"
    sport = site(
        path, [request(PHONE_MAC, PHONE, CLOUD), reply(ROUTER_MAC, CLOUD, PHONE_MAC, PHONE)]
    )
    recs = records(path)
    assert recs["capture"][0].on_link == (f"{PHONE}/32",)  # type: ignore[attr-defined]
    assert upload(recs, sport) == ("local", "public")


def test_arp_of_other_kinds_or_cut_short_says_nothing(tmp_path: Path) -> None:
    """ARP for another protocol or hardware, and a request cut short, are counted and taken for
    nothing."""
    frames = [
        Ether(src=PHONE_MAC, dst=BROADCAST) / ARP(op=1, ptype=0x86DD, psrc=PHONE, pdst=ROUTER),
        Ether(src=PHONE_MAC, dst=BROADCAST) / ARP(op=1, hwtype=6, psrc=PHONE, pdst=ROUTER),
    ]
    cut = Ether(bytes(request(PHONE_MAC, PHONE, ROUTER))[: 14 + 20])
    path = tmp_path / "odd.pcap"
    sport = site(path, [*frames, cut])
    for bulk in (True, False):
        recs = records(path, bulk=bulk)
        (cap,) = recs["capture"]
        assert isinstance(cap, CaptureRecord) and cap.on_link is None
        assert cap.non_ip == {"arp": 3}
        assert upload(recs, sport) == ("public", "public")
