"""IPv6 Neighbor Discovery (RFC 4861): the addresses and prefixes a capture shows on its link are
those tshark decodes of its messages, and an end of a flow at one of them is local (a phone on an
IPv6 network sends from global addresses), in one process or several, on either path."""

from __future__ import annotations

import ipaddress
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import TCP
from scapy.layers.inet6 import (
    ICMPv6ND_NA,
    ICMPv6ND_NS,
    ICMPv6ND_RA,
    ICMPv6NDOptPrefixInfo,
    IPv6,
)
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap, wrpcap

from dronewatch.core.engine import owner
from dronewatch.core.flow import IP_PROTO_TCP
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import CaptureRecord
from dronewatch.geoip.onlink import MAX_HOSTS, MIN_PREFIX, OnLink
from dronewatch.judge.flowlog import FlowRecord
from tests.factories import records_by_log as records
from tests.pcaps import THIRD_PARTY

ZEEK_BASELINES = Path(__file__).resolve().parents[2] / "golden" / "zeek_baselines"

ND_TRACES = [
    THIRD_PARTY / "zeek" / "icmp" / "icmp6-nd-options.pcap",
    THIRD_PARTY / "zeek" / "icmp" / "icmp6-nd-short-options.pcap",
    THIRD_PARTY / "zeek" / "communityid" / "icmp6.pcap",
    THIRD_PARTY / "community-id-spec" / "icmp6.pcap",
    THIRD_PARTY / "zeek" / "ipv6-fragmented-dns.pcap",
]

ROUTER_MAC, PHONE_MAC = "02:00:00:00:00:01", "02:00:00:00:00:10"
ROUTER_LL = "fe80::1"
PHONE = "2a02:8109:a1c0:1:a4b2:11ff:fe22:3344"
"""A phone's global address (SLAAC in the site's /64)."""
CLOUD = "2606:4700::6810:84e5"


def capture_record(path: Path, processes: int = 1, *, bulk: bool = True) -> CaptureRecord:
    (cap,) = records(path, processes, bulk=bulk)["capture"]
    assert isinstance(cap, CaptureRecord)
    return cap


def _local(addr: ipaddress.IPv6Address) -> bool:
    """Local by the built-in table already (not learned)."""
    return (
        addr.is_link_local or addr.is_multicast or addr.is_loopback or addr.is_unspecified
    ) or addr in ipaddress.IPv6Network("fc00::/7")


def tshark_on_link(path: Path) -> tuple[str, ...]:
    """What RFC 4861 says is on the link, from tshark's decoding of the Neighbor Discovery
    messages a receiver keeps (code 0, a router advertisement from a link-local address): their
    global source, the target of a solicitation from the unspecified address
    (Duplicate Address Detection), and the prefixes of Prefix Information options with L or A
    set and a valid lifetime, of /48 or longer; addresses inside a prefix are left out, as the
    record does."""
    fields = (
        "icmpv6.code",
        "icmpv6.type",
        "ipv6.src",
        "ipv6.dst",
        "icmpv6.nd.ns.target_address",
        "icmpv6.nd.na.target_address",
        "icmpv6.opt.prefix",
        "icmpv6.opt.prefix.length",
        "icmpv6.opt.prefix.flag.l",
        "icmpv6.opt.prefix.flag.a",
        "icmpv6.opt.prefix.valid_lifetime",
    )
    out = subprocess.run(
        ["tshark", "-r", str(path), "-Y", "icmpv6.type >= 133 && icmpv6.type <= 137"]
        + ["-T", "fields", "-E", "occurrence=a", "-E", "aggregator=;"]
        + [arg for f in fields for arg in ("-e", f)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    hosts: list[ipaddress.IPv6Address] = []
    nets: list[ipaddress.IPv6Network] = []
    for line in out.splitlines():
        code, kind, src, _dst, ns, _na, prefixes, lengths, ls, as_, valids = line.split("\t")
        source = ipaddress.IPv6Address(src.split(";")[0])
        if code.split(";")[0] != "0" or (kind.split(";")[0] == "134" and not source.is_link_local):
            continue  # a receiver discards it (RFC 4861 6.1)
        taken = [src.split(";")[0]]
        if src.split(";")[0] == "::":
            taken.append(ns)  # Duplicate Address Detection: the sender's own tentative address
        for text in taken:
            for one in filter(None, text.split(";")):
                addr = ipaddress.IPv6Address(one)
                if not _local(addr):
                    hosts.append(addr)
        if kind.split(";")[0] != "134" or not prefixes:
            continue
        for prefix, length, lf, af, valid in zip(
            *(c.split(";") for c in (prefixes, lengths, ls, as_, valids)), strict=True
        ):
            net = ipaddress.IPv6Network(f"{prefix}/{length}", strict=False)
            taken = (lf in ("1", "True") or af in ("1", "True")) and int(valid) > 0
            if taken and int(length) >= MIN_PREFIX and not _local(net.network_address):
                if net not in nets:
                    nets.append(net)
    loose = sorted({h for h in hosts if not any(h in n for n in nets)})
    return tuple(str(n) for n in nets) + tuple(f"{h}/128" for h in loose)


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("path", ND_TRACES, ids=lambda p: p.name)
def test_what_is_on_the_link_is_what_tshark_decodes(path: Path) -> None:
    """Real captures of Neighbor Discovery (a router's link, options cut short, the Community ID
    ICMPv6 traces): the capture record's `on_link` is what RFC 4861 says of tshark's decoding of
    the same messages, on the bulk path, the per-packet path and two processes alike."""
    theirs = tshark_on_link(path)
    for processes, bulk in ((1, True), (1, False), (2, True)):
        assert (capture_record(path, processes, bulk=bulk).on_link or ()) == theirs
    if path.name == "icmp6-nd-options.pcap":
        assert theirs[0] == "2001:db8:0:1::/64"  # the router's advertised prefix


def test_the_advertised_prefixes_are_those_zeek_prints() -> None:
    """Zeek's reading of the same router advertisements (the `core.icmp.icmp6-nd-options` test
    prints every option; its second trace holds no advertisement): the prefixes it shows with
    the on-link or autonomous flag are the prefixes taken."""
    output = (ZEEK_BASELINES / "icmp" / "core.icmp.icmp6-nd-options.output").read_text()
    printed = re.findall(
        r"prefix=\[prefix_len=(\d+), L_flag=([TF]), A_flag=([TF]), [^]]*prefix=([0-9a-f:]+)\]",
        output,
    )
    zeeks = {f"{p}/{n}" for n, lf, af, p in printed if "T" in (lf, af)}
    assert zeeks == {"2001:db8:0:1::/64"}
    on_link = capture_record(ND_TRACES[0]).on_link or ()
    assert {c for c in on_link if not c.endswith("/128")} == zeeks


def phone_on_ipv6(path: Path, *, advertise: str | None = None, ns_target: bool = True) -> int:
    """A phone on an IPv6 network: the router advertises `advertise` (a prefix, or none),
    solicits the phone's global address (`ns_target`) and the phone answers, then the phone
    uploads to a public address over TCP. The phone's port is chosen so that in two processes
    the Neighbor Discovery flows and the upload belong to different ones (the upload to process
    0): only what every process reads of the others' messages (`Share.every_icmp6`) can tell
    process 0 the phone is on the link. Returns the phone's port."""
    phone_b, cloud_b = (ipaddress.IPv6Address(a).packed for a in (PHONE, CLOUD))
    sport = next(
        p for p in range(40000, 41000) if owner((IP_PROTO_TCP, phone_b, p, cloud_b, 443), 2) == 0
    )
    up = Ether(src=PHONE_MAC, dst=ROUTER_MAC)
    down = Ether(src=ROUTER_MAC, dst=PHONE_MAC)
    frames = []
    if advertise is not None:
        net = ipaddress.IPv6Network(advertise, strict=False)
        frames.append(
            Ether(src=ROUTER_MAC, dst="33:33:00:00:00:01")
            / IPv6(src=ROUTER_LL, dst="ff02::1", hlim=255)
            / ICMPv6ND_RA()
            / ICMPv6NDOptPrefixInfo(prefix=str(net.network_address), prefixlen=net.prefixlen)
        )
    if ns_target:
        frames.append(
            Ether(src=ROUTER_MAC, dst="33:33:ff:22:33:44")
            / IPv6(src=ROUTER_LL, dst="ff02::1:ff22:3344", hlim=255)
            / ICMPv6ND_NS(tgt=PHONE)
        )
        frames.append(
            up / IPv6(src=PHONE, dst=ROUTER_LL, hlim=255) / ICMPv6ND_NA(tgt=PHONE, S=1, O=1)
        )
    seq = 1000
    frames.append(up / IPv6(src=PHONE, dst=CLOUD) / TCP(sport=sport, dport=443, flags="S", seq=seq))
    frames.append(
        down / IPv6(src=CLOUD, dst=PHONE) / TCP(sport=443, dport=sport, flags="SA", ack=seq + 1)
    )
    for i in range(4):
        frames.append(
            up
            / IPv6(src=PHONE, dst=CLOUD)
            / TCP(sport=sport, dport=443, flags="PA", seq=seq + 1 + i * 1000)
            / (b"\x17\x03\x03\x03\xe3" + bytes(995))
        )
    for i, f in enumerate(frames):
        f.time = 1_700_000_000 + i * 0.01
    wrpcap(str(path), frames)
    return sport


def upload(recs: dict[str, list[Record]], sport: int) -> FlowRecord:
    (flow,) = [f for f in recs["flows"] if isinstance(f, FlowRecord) and f.orig_p == sport]
    return flow


@pytest.mark.parametrize(
    ("advertise", "ns_target", "on_link"),
    [
        (None, True, (f"{PHONE}/128",)),  # the router solicited it: its target
        ("2a02:8109:a1c0:1::/64", False, ("2a02:8109:a1c0:1::/64",)),  # the advertised prefix
    ],
)
def test_a_phone_at_a_global_address_is_local_once_the_link_shows_it(
    tmp_path: Path, advertise: str | None, ns_target: bool, on_link: tuple[str, ...]
) -> None:
    """The upload's phone end is local, its other end public: it is something that left the
    phone (an egress observation), in one process and in two, where the messages and the upload
    are the two processes' own."""
    path = tmp_path / "phone.pcap"
    sport = phone_on_ipv6(path, advertise=advertise, ns_target=ns_target)
    for processes in (1, 2):
        recs = records(path, processes)
        cap = recs["capture"][0]
        assert isinstance(cap, CaptureRecord) and cap.on_link == on_link
        flow = upload(recs, sport)
        assert (flow.orig_scope, flow.resp_scope) == ("local", "public")
        hosts = {getattr(e, "host_ip", None) for e in recs.get("egress", [])}
        assert PHONE in hosts


def test_what_a_proxy_may_say_is_not_taken(tmp_path: Path) -> None:
    """A router that proxies Neighbor Discovery (RFC 4389) advertises the cloud's address as if
    on the link, and a host that takes it for on-link solicits it: neither makes the cloud
    local (that would hide the upload); the phone's own advertisement makes the phone local."""
    path = tmp_path / "proxy.pcap"
    sport = phone_on_ipv6(path)
    frames = list(rdpcap(str(path)))
    proxy = [
        Ether(src=ROUTER_MAC, dst=PHONE_MAC)
        / IPv6(src=ROUTER_LL, dst=PHONE, hlim=255)
        / ICMPv6ND_NA(tgt=CLOUD, R=1, S=1),
        Ether(src=PHONE_MAC, dst="33:33:ff:10:84:e5")
        / IPv6(src=PHONE, dst="ff02::1:ff10:84e5", hlim=255)
        / ICMPv6ND_NS(tgt=CLOUD),
    ]
    for i, f in enumerate(proxy):
        f.time = frames[0].time - 1 + i * 0.1
    wrpcap(str(path), proxy + frames)
    recs = records(path)
    assert recs["capture"][0].on_link == (f"{PHONE}/128",)  # type: ignore[attr-defined]
    assert (upload(recs, sport).orig_scope, upload(recs, sport).resp_scope) == ("local", "public")


def test_without_neighbor_discovery_a_global_address_stays_public(tmp_path: Path) -> None:
    """Nothing on the link named the phone: both ends of its upload are public, as before (name
    it with `--device MAC`, tests/unit/judge/test_monitor.py)."""
    path = tmp_path / "phone.pcap"
    sport = phone_on_ipv6(path, ns_target=False)
    recs = records(path)
    flow = upload(recs, sport)
    assert (flow.orig_scope, flow.resp_scope) == ("public", "public")
    assert recs["capture"][0].on_link is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("rogue", ["::/1", "2000::/3", "2606:4700::/32"])
def test_a_rogue_prefix_is_refused_and_said(tmp_path: Path, rogue: str) -> None:
    """A router advertisement naming ::/1 (or every global address, 2000::/3, or a cloud's /32)
    on the link would make the cloud local and hide what leaves: it is refused, listed in the
    capture record, and the upload to a public address stays something that left (the phone is
    on the link by its solicitation)."""
    path = tmp_path / "rogue.pcap"
    sport = phone_on_ipv6(path, advertise=rogue)
    recs = records(path)
    cap = recs["capture"][0]
    assert isinstance(cap, CaptureRecord)
    assert cap.on_link_refused == {rogue: 1}
    assert cap.on_link == (f"{PHONE}/128",)
    assert (upload(recs, sport).orig_scope, upload(recs, sport).resp_scope) == ("local", "public")


def test_the_table_is_bounded() -> None:
    """Past `MAX_HOSTS` addresses the one named least recently goes (a live sensor runs for
    weeks; temporary addresses change daily), and it is counted."""
    table = OnLink()

    def addr(i: int) -> bytes:
        return ipaddress.IPv6Address(f"2001:db8::{i:x}").packed

    for i in range(MAX_HOSTS):
        table.add_host(addr(i))
    table.add_host(addr(0))  # named again: kept over the others
    for i in range(MAX_HOSTS, MAX_HOSTS + 10):
        table.add_host(addr(i))
    assert table.full == 10
    assert addr(0) in table and addr(MAX_HOSTS + 9) in table
    assert all(addr(i) not in table for i in range(1, 11)) and addr(11) in table
    assert table.add_prefix(ipaddress.IPv6Address("2001:db8:1::").packed, 64)
    assert ipaddress.IPv6Address("2001:db8:1::99").packed in table
    assert not table.add_prefix(ipaddress.IPv6Address("2001::").packed, MIN_PREFIX - 1)
    assert ipaddress.IPv6Address("2001:db9::1").packed not in table


@pytest.mark.parametrize(
    "message",
    [
        # A router advertisement must come from a link-local address (RFC 4861 6.1.2).
        Ether(src=ROUTER_MAC, dst="33:33:00:00:00:01")
        / IPv6(src="2a02:8109:a1c0:1::1", dst="ff02::1", hlim=255)
        / ICMPv6ND_RA()
        / ICMPv6NDOptPrefixInfo(prefix="2a02:8109:a1c0:1::", prefixlen=64),
        # ICMP code 0 only (7.1.1).
        Ether(src=PHONE_MAC, dst=ROUTER_MAC)
        / IPv6(src=PHONE, dst=ROUTER_LL, hlim=255)
        / ICMPv6ND_NA(code=1, tgt=PHONE),
    ],
    ids=["ra-from-a-global-address", "na-with-code-1"],
)
def test_a_message_a_receiver_discards_says_nothing(tmp_path: Path, message: Ether) -> None:
    path = tmp_path / "bad.pcap"
    message.time = 1_699_999_999
    wrpcap(str(path), [message])
    assert records(path)["capture"][0].on_link is None  # type: ignore[attr-defined]


def test_a_solicitation_cut_by_the_snap_length_names_no_address(tmp_path: Path) -> None:
    """A Duplicate Address Detection solicitation cut 4 bytes into its target: the 4 bytes left
    are not taken for an IPv4 address, nor anything else."""
    dad = (
        Ether(src=PHONE_MAC, dst="33:33:ff:22:33:44")
        / IPv6(src="::", dst="ff02::1:ff22:3344", hlim=255)
        / ICMPv6ND_NS(tgt=PHONE)
    )
    data = bytes(dad)[: 14 + 40 + 8 + 4]
    path = tmp_path / "cut.pcap"
    with path.open("wb") as fh:  # caplen below the frame's length: cut by the snap length
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 66, 1))
        fh.write(struct.pack("<IIII", 1_700_000_000, 0, len(data), len(bytes(dad))) + data)
    for bulk in (True, False):
        cap = records(path, bulk=bulk)["capture"][0]
        assert isinstance(cap, CaptureRecord) and cap.on_link is None and cap.truncated == 1
