"""The monitor's judgement of devices nobody catalogued: captures made on the device, devices named
with `--device`, attempts to reach off the device, and lookups of names that are not local."""

from __future__ import annotations

import random
from dataclasses import replace
from itertools import islice
from pathlib import Path

import dpkt
import pytest

from dronewatch.capture.files import FileSource
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.exceptions import PolicyError
from dronewatch.geoip.null import NullResolver
from dronewatch.judge.alert import NOTE_ATTEMPT, NOTE_LEAK, Alert, is_lookup
from dronewatch.judge.classify import Classifier
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import (
    DeviceRecord,
    FlowEnd,
    Monitor,
    VerdictRecord,
    _busiest_hosts,
    _HostTraffic,
)
from dronewatch.judge.policy import Policy, device_spec, with_devices
from tests.factories import RecordingContext
from tests.pcaps import THIRD_PARTY

LINKTYPE_RAW = 101
"""Bare IP packets, as PCAPdroid and other VPN-based phone captures write them."""
PHONE = "10.215.173.1"
"""PCAPdroid's VPN address: every flow of its captures has the phone at one end."""


def _ip(src: str, dst: str, l4: dpkt.Packet, proto: int) -> dpkt.ip.IP:
    pkt = dpkt.ip.IP(
        src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))), p=proto
    )
    pkt.data = l4
    pkt.len = len(pkt)
    return pkt


def udp(src: str, sport: int, dst: str, dport: int, data: bytes) -> dpkt.ip.IP:
    seg = dpkt.udp.UDP(sport=sport, dport=dport, data=data)
    seg.ulen = len(seg)
    return _ip(src, dst, seg, dpkt.ip.IP_PROTO_UDP)


def tcp(
    src: str, sport: int, dst: str, dport: int, flags: int, seq: int, data: bytes = b""
) -> dpkt.ip.IP:
    seg = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, data=data)
    return _ip(src, dst, seg, dpkt.ip.IP_PROTO_TCP)


def dns_query(name: str, ident: int) -> bytes:
    msg = dpkt.dns.DNS(id=ident, qd=[dpkt.dns.DNS.Q(name=name)])
    return bytes(msg)


def write_raw(path: Path, packets: list[dpkt.ip.IP]) -> Path:
    """A capture of bare IP packets (LINKTYPE_RAW, as PCAPdroid writes), 0.1 s apart."""
    with path.open("wb") as fh:
        w = dpkt.pcap.Writer(fh, linktype=LINKTYPE_RAW)
        for i, pkt in enumerate(packets):
            w.writepkt(bytes(pkt), ts=1_700_000_000 + i * 0.1)
    return path


def phone_session() -> list[dpkt.ip.IP]:
    """A phone with no uplink worth the name: it looks up names at a public resolver that never
    answers, sends SYNs nobody answers, and one HTTPS upload gets through."""
    syn, ack, psh = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    return [
        udp(PHONE, 40001, "8.8.8.8", 53, dns_query("api.example-drone-cloud.com", 1)),
        udp(PHONE, 40002, "8.8.8.8", 53, dns_query("printer", 2)),
        udp(PHONE, 40003, "8.8.8.8", 53, dns_query("1.0.168.192.in-addr.arpa", 3)),
        tcp(PHONE, 50001, "203.0.113.7", 443, syn, 1000),
        tcp(PHONE, 50001, "203.0.113.7", 443, syn, 1000),
        tcp(PHONE, 50002, "198.51.100.9", 443, syn, 5000),
        tcp("198.51.100.9", 443, PHONE, 50002, syn | ack, 9000),
        tcp(PHONE, 50002, "198.51.100.9", 443, psh, 5001, b"x" * 1200),
    ]


def run(path: Path, policy: Policy) -> dict[str, list[Record]]:
    records: dict[str, list[Record]] = {}
    config = AnalysisConfig(policy=policy, classifier=Classifier.load())
    run_source(FileSource(str(path)), lambda r: records.setdefault(r.log, []).append(r), config)
    return records


def ldm_on() -> Policy:
    return Policy(defaults=replace(Policy().defaults, ldm=True))


def test_raw_ip_capture_judges_its_one_host(tmp_path: Path) -> None:
    """A raw-IP capture whose every flow has one local host at an end is judged without a flag;
    devices.jsonl says it was a capture made on the device."""
    recs = run(write_raw(tmp_path / "phone.pcap", phone_session()), ldm_on())
    (device,) = [d for d in recs["devices"] if isinstance(d, DeviceRecord)]
    assert device.ip == PHONE and device.roles == ("ground_station",)
    (reason,) = device.reasons
    assert reason == (
        "phone-side capture: a raw capture, made on the device, in which it is an end of "
        "every one of the 5 flows"
    )
    (verdict,) = [v for v in recs["verdicts"] if isinstance(v, VerdictRecord)]
    assert verdict.device_ip == PHONE and verdict.verdict == "violation"


def test_attempts_and_lookups_are_findings_of_their_own(tmp_path: Path) -> None:
    """With LDM on: the SYNs nobody answered and the lookup of a public name are attempts (low);
    lookups of local names (a single label, a private reverse name) are nothing; the upload that
    got through is data that left; the verdict names what was tried."""
    recs = run(write_raw(tmp_path / "phone.pcap", phone_session()), ldm_on())
    found = [a for a in recs["alerts"] if isinstance(a, Alert)]
    attempts = {(a.dest_name or a.dest_ip, is_lookup(a)) for a in found if a.note == NOTE_ATTEMPT}
    assert attempts == {
        ("203.0.113.7", False),
        ("api.example-drone-cloud.com", True),
        ("8.8.8.8", False),  # the resolver never answered the three queries
    }
    assert all(a.severity == "low" for a in found if a.note == NOTE_ATTEMPT)
    (leak,) = [a for a in found if a.note == NOTE_LEAK]
    assert (leak.dest_ip, leak.bytes_out > 1200) == ("198.51.100.9", True)
    (verdict,) = [v for v in recs["verdicts"] if isinstance(v, VerdictRecord)]
    assert verdict.attempts == 3
    assert "attempted to reach 203.0.113.7, 8.8.8.8, api.example-drone-cloud.com" in verdict.msg


def test_attempts_alone_leave_the_verdict_clean(tmp_path: Path) -> None:
    """Nothing delivered: the verdict is clean and says what the device tried to reach."""
    recs = run(write_raw(tmp_path / "phone.pcap", phone_session()[:5]), ldm_on())
    (verdict,) = [v for v in recs["verdicts"] if isinstance(v, VerdictRecord)]
    assert verdict.verdict == "clean"
    assert verdict.msg.startswith(
        "LDM on: attempted to reach 203.0.113.7, 8.8.8.8, api.example-drone-cloud.com; "
        "nothing was delivered ("
    )


def two_hosts(tmp_path: Path) -> Path:
    """Two LAN hosts, each uploading to the internet: no drone link, no host in every flow."""
    psh = dpkt.tcp.TH_PUSH | dpkt.tcp.TH_ACK
    return write_raw(
        tmp_path / "lan.pcap",
        [
            tcp("192.168.7.20", 50000, "198.51.100.9", 443, psh, 1, b"a" * 900),
            tcp("198.51.100.9", 443, "192.168.7.20", 50000, psh, 1, b"b" * 10),
            tcp("192.168.7.21", 50000, "198.51.100.9", 443, psh, 1, b"a" * 700),
            tcp("198.51.100.9", 443, "192.168.7.21", 50000, psh, 1, b"b" * 10),
        ],
    )


def test_without_a_ground_station_each_host_says_why(tmp_path: Path) -> None:
    recs = run(two_hosts(tmp_path), ldm_on())
    assert "verdicts" not in recs
    why = {d.ip: d.not_judged for d in recs["devices"] if isinstance(d, DeviceRecord)}
    assert set(why) == {"192.168.7.20", "192.168.7.21"}
    assert all(w and "no drone link" in w for w in why.values())


@pytest.mark.parametrize(
    ("spec", "judged"),
    [
        ("192.168.7.21", {"192.168.7.21"}),
        ("192.168.7.0/24", {"192.168.7.20", "192.168.7.21"}),
        ("192.168.7.20/32", {"192.168.7.20"}),
        ("10.0.0.0/8", {"10.0.0.0/8"}),
    ],
)
def test_device_names_the_device_under_test(tmp_path: Path, spec: str, judged: set[str]) -> None:
    """`--device` judges what it names: an address, or every host of a network; a network with
    no host seen still gets a verdict, which says nothing of it was read: incomplete, not
    clean (the capture cannot vouch for a device it does not show)."""
    recs = run(two_hosts(tmp_path), with_devices(ldm_on(), [spec]))
    verdicts = {v.device_ip: v for v in recs["verdicts"] if isinstance(v, VerdictRecord)}
    assert set(verdicts) == judged
    for ip, v in verdicts.items():
        assert v.reasons == ("named by the user",)
        assert v.verdict == ("violation" if ip.startswith("192.") else "incomplete")
        if not ip.startswith("192."):
            assert v.msg.startswith("LDM on: the capture shows nothing of the device (0 packets ")


def test_device_spec_forms() -> None:
    assert device_spec("192.168.0.5") == {"ip": "192.168.0.5"}
    assert device_spec("fe80::1") == {"ip": "fe80::1"}
    assert device_spec("10.1.2.3/16") == {"net": "10.1.0.0/16"}
    assert device_spec("0C-84-DC-D5-5F-4D") == {"mac": "0c:84:dc:d5:5f:4d"}
    assert device_spec("Pixel-7") == {"hostname": "pixel-7", "name": "Pixel-7"}
    for bad, says in [
        ("", "empty"),
        ("10.0.0.0/40", "not a network"),
        ("my phone!", "not an IP, a MAC"),
    ]:
        with pytest.raises(PolicyError, match=says):
            device_spec(bad)


def test_device_by_dhcp_host_name() -> None:
    """A device named by host name matches the host that gave it (case-insensitive)."""
    policy = with_devices(ldm_on(), ["Pixel-7"])
    dev = policy.for_device("192.168.0.9", "aa:bb:cc:dd:ee:ff", "pixel-7")
    assert dev.declared and dev.hostname == "pixel-7" and dev.ldm
    assert not policy.for_device("192.168.0.9", "aa:bb:cc:dd:ee:ff", "iphone").declared


def _end(i: int, orig: str, resp: str, orig_local: bool, resp_local: bool) -> FlowEnd:
    return FlowEnd(
        1000.0 + i,
        1000.5 + i * 2,
        orig,
        resp,
        b"\x02\x00\x00\x00\x00\x01",
        b"\x02\x00\x00\x00\x00\x02",
        orig_local,
        resp_local,
        i % 5 + 1,
        i % 3,
        None,
        "mavlink" if i % 7 == 0 else None,
        (i * 100) if i % 4 == 0 else 0,
        i % 6 == 0,
        (),
        None,
    )


def test_tallies_of_parts_add_up_to_the_tally_of_the_whole() -> None:
    """What `Monitor.tally` counts does not depend on the order flows come in: the counts of two
    processes' shares, added (`add_tally`), are those of one monitor given every flow."""
    ends = [
        _end(i, f"10.0.0.{i % 9}", f"10.0.1.{i % 4}" if i % 2 else "8.8.8.8", True, bool(i % 2))
        for i in range(200)
    ]
    ctx = RecordingContext()
    whole = Monitor(ctx, Policy(), None, NullResolver())
    parts = [Monitor(ctx, Policy(), None, NullResolver()) for _ in range(2)]
    for end in ends:
        whole.tally(end)
    for i, end in enumerate(reversed(ends)):
        parts[i % 2].tally(end)
    merged = Monitor(ctx, Policy(), None, NullResolver())
    for part in parts:
        merged.add_tally(part.tally_state())
    a, b = whole.tally_state(), merged.tally_state()
    assert a._replace(ends={}, traffic={}) == b._replace(ends={}, traffic={})
    assert a.ends == b.ends and a.traffic == b.traffic
    assert a.flows == 200 and a.gap_flows == 49 and a.stopped_flows == 34


def test_busiest_hosts_come_most_packets_first_without_group_addresses() -> None:
    """The hosts a verdict-less capture names are the busiest, ties by address, multicast and
    broadcast left out: taken off a heap, in the order sorting them all gives."""
    rng = random.Random(5)
    addresses = [f"10.0.{rng.randrange(4)}.{i}" for i in range(300)]
    addresses += ["224.0.0.251", "255.255.255.255", "ff02::fb", "0.0.0.0", "fe80::1"]
    traffic = {ip: _HostTraffic(pkts=rng.randrange(6)) for ip in addresses}
    want = [
        ip
        for ip, _ in sorted(traffic.items(), key=lambda kv: (-kv[1].pkts, kv[0]))
        if ip not in ("224.0.0.251", "255.255.255.255", "ff02::fb", "0.0.0.0")
    ]
    assert list(_busiest_hosts(traffic)) == want
    assert list(islice(_busiest_hosts(traffic), 20)) == want[:20]


NETALYZR_V6 = THIRD_PARTY / "zeek" / "ipv6-fragmented-dns.pcap"
"""A host on a global IPv6 address (2001:470:1f11:81f::/64, a tunnel broker's) looking up names
at a public resolver: what a phone on an IPv6 network looks like (Zeek's trace, BSD)."""
NETALYZR_MAC = "c4:2c:03:3b:6c:aa"
NETALYZR_IP = "2001:470:1f11:81f:d138:5f55:6d4:1fe2"


def _judged(recs: dict[str, list[Record]]) -> tuple[list[tuple[object, ...]], list[object]]:
    verdicts = [
        (v.device_ip, v.device_mac, v.verdict, v.msg, v.bytes_out, v.packets)
        for v in recs["verdicts"]
        if isinstance(v, VerdictRecord)
    ]
    alerts = [replace(a, id="") for a in recs.get("alerts", []) if isinstance(a, Alert)]
    return verdicts, alerts


def test_a_device_named_by_its_mac_is_judged_at_any_address() -> None:
    """A device declared by its MAC whose address is global (a phone on an IPv6 network, where
    temporary addresses change daily) is the device wherever its frames come from: judged as
    the same device declared by its address is, on a real capture. Before, nothing of it counted
    as having left (its address is not a local one) and the verdict said the capture showed
    nothing of the device."""
    by_mac = run(NETALYZR_V6, with_devices(ldm_on(), [NETALYZR_MAC]))
    by_ip = run(NETALYZR_V6, with_devices(ldm_on(), [NETALYZR_IP]))
    verdicts, alerts = _judged(by_mac)
    assert verdicts == _judged(by_ip)[0]
    assert alerts == _judged(by_ip)[1]
    ((ip, mac, verdict, msg, bytes_out, packets),) = verdicts
    assert (ip, mac, verdict) == (NETALYZR_IP, NETALYZR_MAC, "violation")
    assert bytes_out > 0 and packets > 0
    assert "txtpadding_323.n1.netalyzr.icsi.berkeley.edu" in msg
    flows = [f for f in by_mac["flows"] if isinstance(f, FlowRecord)]
    assert {f.orig_scope for f in flows} == {"local"}  # the host's end, as the address gives it
    assert {f.resp_scope for f in flows} == {"public"}
    # Undeclared, the host's global address is not a local one: nothing is judged.
    assert "verdicts" not in run(NETALYZR_V6, ldm_on())
