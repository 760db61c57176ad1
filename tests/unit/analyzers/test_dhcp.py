"""Tests for the DHCP analyzer: real and hand-built messages into dhcp.jsonl records and meta."""

from __future__ import annotations

import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.dhcp import (
    DHCP_MAX_FAILURES,
    DhcpAnalyzer,
    DhcpRecord,
    dhcp_msg_type_name,
    parse_dhcp,
)
from dronewatch.core.engine import Engine, EngineOptions
from dronewatch.core.flow import Packet, ip_str
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, ip, make_flow, make_udp
from tests.pcaps import THIRD_PARTY, capture

CAPTURE = THIRD_PARTY / "wsensing2021" / "Normal_Establishing_connection_01.pcapng"
"""A public MIT-licensed capture: phone 192.168.1.3 joins a drone's Wi-Fi (drone 192.168.1.1)."""

PHONE_MAC = "0c:84:dc:d5:5f:4d"


def capture_udp(port: int) -> list[tuple[str, str, int, int, bytes]]:
    """(src, dst, sport, dport, payload) of each UDP datagram to or from `port` in CAPTURE."""
    out: list[tuple[str, str, int, int, bytes]] = []
    with capture(CAPTURE).open("rb") as fh:
        for _ts, frame in dpkt.pcapng.Reader(fh):
            eth = dpkt.ethernet.Ethernet(frame)
            net = eth.data
            if not isinstance(net, dpkt.ip.IP | dpkt.ip6.IP6):
                continue
            udp = net.data
            if isinstance(udp, dpkt.udp.UDP) and port in (udp.sport, udp.dport):
                src, dst = ip_str(net.src), ip_str(net.dst)
                out.append((src, dst, udp.sport, udp.dport, bytes(udp.data)))
    return out


def client_packet(payload: bytes, *, src: str = "0.0.0.0", ts: float = 5.0) -> Packet:
    """A datagram from a DHCP client (port 68) to the server port."""
    return make_udp(payload, src=src, dst="255.255.255.255", sport=68, dport=67, ts=ts)


def request_bytes(
    options: list[tuple[int, bytes]], *, op: int = 1, yiaddr: str = "0.0.0.0"
) -> bytes:
    """A DHCP message with `options`, packed by dpkt, from a client with PHONE_MAC."""
    msg = dpkt.dhcp.DHCP(
        op=op,
        xid=0x1234ABCD,
        chaddr=bytes.fromhex(PHONE_MAC.replace(":", "")),
        yiaddr=struct.unpack(">I", ip(yiaddr))[0],
        opts=options,
    )
    return bytes(msg)


def run(payload: bytes, pkt: Packet | None = None) -> tuple[RecordingContext, list[DhcpRecord]]:
    """Feed one datagram to a fresh analyzer; the context and the dhcp records it wrote."""
    ctx = RecordingContext()
    analyzer = DhcpAnalyzer(ctx)
    pkt = pkt or client_packet(payload)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    records = [r for r in ctx.of("dhcp") if isinstance(r, DhcpRecord)]
    assert len(records) == len(ctx.records)
    return ctx, records


def test_real_discover_from_capture() -> None:
    """The phone's real DISCOVER gives its MAC, hostname, requested address and option list."""
    src, dst, sport, dport, payload = capture_udp(67)[0]
    assert (src, sport, dport) == ("0.0.0.0", 68, 67)
    ctx = RecordingContext()
    analyzer = DhcpAnalyzer(ctx)
    pkt = make_udp(payload, src=src, dst=dst, sport=sport, dport=dport, ts=7.0)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    (rec,) = ctx.of("dhcp")
    assert isinstance(rec, DhcpRecord)
    assert rec.msg_type == "DISCOVER"
    assert rec.client_mac == PHONE_MAC
    assert rec.hostname == "drwxr"
    assert rec.requested_ip == "192.168.1.3"
    assert rec.vendor_class is None  # this phone sends no option 60
    assert rec.param_list[:4] == (1, 28, 2, 3)
    assert rec.trans_id == 0xA49F9014
    assert flow.meta == {"dhcp_hostname": "drwxr"}
    assert flow.service == "dhcp"


def test_real_exchange_from_capture() -> None:
    """The capture's DISCOVER, OFFER, REQUEST and ACK decode; replies carry the address given."""
    messages = [parse_dhcp(p[4]) for p in capture_udp(67)]
    kinds = [dhcp_msg_type_name(m.msg_type or 0) for m in messages]
    assert kinds == ["DISCOVER", "OFFER", "REQUEST", "ACK"]
    src, dst, sport, dport, ack = capture_udp(67)[3]
    pkt = make_udp(ack, src=src, dst=dst, sport=sport, dport=dport)
    ctx, (rec,) = run(ack, pkt)
    assert (rec.msg_type, rec.assigned_ip, rec.server_id) == ("ACK", "192.168.1.3", "192.168.1.1")
    assert rec.client_mac == PHONE_MAC and rec.hostname is None


def test_request_with_hostname_and_vendor_class() -> None:
    """A REQUEST's hostname and vendor class go into the record and onto the flow."""
    payload = request_bytes(
        [
            (53, b"\x03"),
            (12, b"Pixel-7"),
            (60, b"android-dhcp-13"),
            (50, ip("192.168.2.20")),
            (54, ip("192.168.2.1")),
            (55, bytes([1, 3, 6, 15, 26, 28, 51, 58, 59, 43])),
        ]
    )
    ctx = RecordingContext()
    analyzer = DhcpAnalyzer(ctx)
    pkt = client_packet(payload, ts=12.5)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    (rec,) = ctx.of("dhcp")
    assert rec.to_dict() == {
        "ts": 12.5,
        "uid": flow.uid,
        "orig_h": "0.0.0.0",
        "orig_p": 68,
        "resp_h": "255.255.255.255",
        "resp_p": 67,
        "trans_id": 0x1234ABCD,
        "msg_type": "REQUEST",
        "client_mac": PHONE_MAC,
        "hostname": "Pixel-7",
        "vendor_class": "android-dhcp-13",
        "requested_ip": "192.168.2.20",
        "server_id": "192.168.2.1",
        "param_list": [1, 3, 6, 15, 26, 28, 51, 58, 59, 43],
    }
    assert flow.meta == {"dhcp_hostname": "Pixel-7", "dhcp_vendor_class": "android-dhcp-13"}


def test_server_reply_does_not_name_its_flow() -> None:
    """A hostname in a server's reply is logged but not put on the flow as the device's name."""
    payload = request_bytes([(53, b"\x05"), (12, b"client")], op=2, yiaddr="192.168.2.20")
    pkt = make_udp(payload, src="192.168.2.1", dst="192.168.2.20", sport=67, dport=68)
    ctx = RecordingContext()
    analyzer = DhcpAnalyzer(ctx)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    (rec,) = ctx.of("dhcp")
    assert isinstance(rec, DhcpRecord)
    assert (rec.msg_type, rec.assigned_ip, rec.hostname) == ("ACK", "192.168.2.20", "client")
    assert flow.meta == {}


def test_request_does_not_report_yiaddr() -> None:
    """Only an OFFER or ACK says which address was assigned."""
    _, (rec,) = run(request_bytes([(53, b"\x03")], yiaddr="10.0.0.5"))
    assert rec.assigned_ip is None


def test_plain_bootp_has_no_message_type() -> None:
    """A message without option 53 is logged with no message type."""
    _, (rec,) = run(request_bytes([(12, b"old-box")]))
    assert (rec.msg_type, rec.hostname) == (None, "old-box")


def test_message_type_names() -> None:
    """Option-53 codes map to names; unknown codes to TYPE<n>."""
    assert [dhcp_msg_type_name(n) for n in (1, 2, 3, 5, 6, 8)] == [
        "DISCOVER",
        "OFFER",
        "REQUEST",
        "ACK",
        "NAK",
        "INFORM",
    ]
    assert dhcp_msg_type_name(77) == "TYPE77"


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x01" * 100,  # shorter than the fixed header
        request_bytes([(53, b"\x01")])[:236] + b"\x00\x00\x00\x00" + b"\x35\x01\x01",  # no cookie
        request_bytes([]) + b"\x35",  # an option code with no length byte
    ],
)
def test_malformed_raise_decode_error(payload: bytes) -> None:
    """Short messages, a missing magic cookie and a cut option list raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_dhcp(payload)
    _, records = run(payload)
    assert records == []


def discover(n: int) -> bytes:
    """A DISCOVER from client n (MAC 02:00:00:00:00:nn), transaction id n."""
    msg = dpkt.dhcp.DHCP(
        op=1,
        xid=n,
        chaddr=bytes([2, 0, 0, 0, 0, n]),
        opts=[(53, b"\x01")],
    )
    return bytes(msg)


def test_flow_is_followed_past_the_inspected_packets() -> None:
    """Clients without an address share one broadcast flow: every one of 50 DISCOVERs on it is
    written, past the engine's 32 inspected packets (Zeek's
    dhcp-unique-xid-join-data-growth.pcapng)."""
    ctx = RecordingContext()
    engine = Engine([DhcpAnalyzer(ctx)], ctx)
    assert engine.options.inspect_packets < 50
    for n in range(50):
        engine.process(client_packet(discover(n), ts=1.0 + n / 100))
    flow = next(iter(engine.flows.values()))
    assert flow.followers == ("dhcp",)
    engine.finish()
    records = [r for r in ctx.of("dhcp") if isinstance(r, DhcpRecord)]
    assert [r.client_mac for r in records] == [f"02:00:00:00:00:{n:02x}" for n in range(50)]


def test_other_traffic_on_the_dhcp_ports_is_given_up() -> None:
    """A flow between the DHCP ports that carries no DHCP is given up after DHCP_MAX_FAILURES
    datagrams: it is neither followed nor inspected further, and writes nothing."""
    ctx = RecordingContext()
    engine = Engine([DhcpAnalyzer(ctx)], ctx, EngineOptions(inspect_packets=100))
    for n in range(DHCP_MAX_FAILURES):
        engine.process(client_packet(b"not dhcp", ts=1.0 + n))
    flow = next(iter(engine.flows.values()))
    assert flow.inspector_names == () and flow.followers == ()
    engine.process(client_packet(discover(1), ts=9.0))
    engine.finish()
    assert ctx.of("dhcp") == [] and flow.service == ""


def test_failures_after_a_valid_message_do_not_give_up() -> None:
    """Once a flow carried DHCP, undecodable datagrams on it do not end its reading."""
    ctx = RecordingContext()
    engine = Engine([DhcpAnalyzer(ctx)], ctx)
    engine.process(client_packet(discover(1), ts=1.0))
    for n in range(DHCP_MAX_FAILURES + 40):
        engine.process(client_packet(b"junk", ts=2.0 + n / 100))
    engine.process(client_packet(discover(2), ts=5.0))
    engine.finish()
    assert [r.trans_id for r in ctx.of("dhcp") if isinstance(r, DhcpRecord)] == [1, 2]


def test_other_ports_are_ignored() -> None:
    """A DHCP-shaped payload away from ports 67/68 is not read."""
    pkt = make_udp(request_bytes([(53, b"\x01")]), sport=50000, dport=6767)
    _, records = run(b"", pkt)
    assert records == []


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_fuzz_decoder_raises_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the decoder raise only DecodeError."""
    try:
        parse_dhcp(data)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=400),
        st.binary(max_size=80).map(lambda options: request_bytes([]) + options),
    )
)
def test_fuzz_analyzer_raises_nothing(payload: bytes) -> None:
    """Arbitrary bytes, alone or after a valid header, raise nothing from the analyzer."""
    _, records = run(payload)
    assert len(records) <= 1
