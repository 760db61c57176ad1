"""Content gaps of TCP flows (`dronewatch.core.tcp`): bytes the peer acknowledged that the capture
never showed, counted as Zeek counts them (missed_bytes, the G/g letters), alike on both paths."""

from __future__ import annotations

import random
from pathlib import Path

from scapy.compat import raw
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether

from dronewatch.capture.files import FileSource
from dronewatch.core import tcp
from dronewatch.core.flow import TCP_ACK, Flow, Packet
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, run_source
from dronewatch.judge.flowlog import FlowRecord
from dronewatch.judge.monitor import VerdictRecord
from dronewatch.judge.policy import Policy, with_devices
from tests.pcaps import THIRD_PARTY, capture
from tests.unit.capture.captures import pcap_bytes
from tests.unit.core.tcpconv import TcpConversation
from tests.unit.core.test_tcp import run as ended_flows


def run(*packets: Packet) -> Flow:
    """The one flow the engine makes of `packets`."""
    (flow,) = ended_flows(*packets)
    return flow


def server_data(conv: TcpConversation, size: int) -> tuple[Packet, int]:
    """A server segment of `size` bytes (the conversation moves on), and the sequence number
    one past it."""
    pkt = conv.reply(b"d" * size)
    return pkt, conv.seq[False]


def client_ack(conv: TcpConversation, upto: int) -> Packet:
    """The client's pure ACK of the server's bytes before `upto`."""
    return conv.segment(True, TCP_ACK, ack=upto)


def test_a_hole_the_peer_acknowledges_is_a_gap() -> None:
    """Server data the capture missed, then the client's ACK past it: its bytes are missed and
    the responder's `g` is written once."""
    conv = TcpConversation()
    pkts = conv.handshake()
    first, end1 = server_data(conv, 100)
    _lost, end2 = server_data(conv, 300)  # sent, never captured
    third, end3 = server_data(conv, 50)
    pkts += [first, client_ack(conv, end1), third, client_ack(conv, end3)]
    flow = run(*pkts)
    assert flow.tcp is not None and tcp.missed_bytes(flow.tcp) == 300
    assert flow.history == "ShAdg"
    assert end2 < end3


def test_reordered_segments_are_no_gap() -> None:
    """Segments captured out of order, acknowledged after both arrived: nothing is missed."""
    conv = TcpConversation()
    pkts = conv.handshake()
    first, _ = server_data(conv, 100)
    second, end2 = server_data(conv, 100)
    third, end3 = server_data(conv, 100)
    pkts += [first, third, second, client_ack(conv, end3)]
    flow = run(*pkts)
    assert flow.tcp is not None and tcp.missed_bytes(flow.tcp) == 0
    assert "g" not in flow.history.lower()
    assert end2 < end3


def test_a_retransmission_is_no_gap() -> None:
    """A segment sent again after it was acknowledged counts as a retransmission, not a gap."""
    conv = TcpConversation()
    pkts = conv.handshake()
    first, end1 = server_data(conv, 100)
    again = conv.reply(b"d" * 100, seq=end1 - 100)
    pkts += [first, client_ack(conv, end1), again, client_ack(conv, end1)]
    flow = run(*pkts)
    assert flow.tcp is not None and tcp.missed_bytes(flow.tcp) == 0
    assert flow.history == "ShAdt"


def test_data_held_above_a_hole_is_not_missed() -> None:
    """Data seen above a hole is not missed when the ACK passes it: only the hole's bytes are."""
    conv = TcpConversation()
    pkts = conv.handshake()
    first, end1 = server_data(conv, 100)
    server_data(conv, 40)  # lost
    third, _ = server_data(conv, 200)
    fourth, end4 = server_data(conv, 70)
    pkts += [first, client_ack(conv, end1), fourth, third, client_ack(conv, end4)]
    flow = run(*pkts)
    assert flow.tcp is not None and tcp.missed_bytes(flow.tcp) == 40
    assert flow.tcp[tcp.BLOCK + tcp.GAPS] == 1


def test_two_holes_open_at_once_give_a_lower_bound() -> None:
    """With HOLES ranges held, a second hole open at once is merged with the data around it:
    its bytes are counted as seen, never a byte the capture showed as missed."""
    conv = TcpConversation()
    pkts = conv.handshake()
    first, end1 = server_data(conv, 100)
    server_data(conv, 40)  # lost
    third, _ = server_data(conv, 200)
    server_data(conv, 10)  # lost
    fifth, end5 = server_data(conv, 70)
    pkts += [first, client_ack(conv, end1), third, fifth, client_ack(conv, end5)]
    flow = run(*pkts)
    assert flow.tcp is not None
    assert tcp.HOLES == 1 and tcp.missed_bytes(flow.tcp) == 40


def test_gap_letters_scale_like_retransmissions() -> None:
    """`G` at the 1st and the 10th gap of the originator's data, not in between."""
    conv = TcpConversation()
    pkts = conv.handshake()
    for _ in range(10):
        conv.seq[True] += 20  # 20 bytes never captured
        pkts.append(conv.send(b"x" * 5))
        pkts.append(conv.ack(from_client=False))
    flow = run(*pkts)
    assert flow.tcp is not None and tcp.missed_bytes(flow.tcp) == 200
    assert flow.history.count("G") == 2


def test_a_partial_connection_reports_no_gap() -> None:
    """Without the handshake, holes are not reported (Zeek: only established connections)."""
    conv = TcpConversation()
    first, end1 = server_data(conv, 100)
    server_data(conv, 300)
    third, end3 = server_data(conv, 50)
    flow = run(first, client_ack(conv, end1), third, client_ack(conv, end3))
    assert flow.tcp is not None and tcp.missed_bytes(flow.tcp) == 0
    assert "g" not in flow.history


def test_zeek_miss_end_data_gap() -> None:
    """Zeek's tcp/miss_end_data.pcap: the response's last 2,902 bytes are acknowledged but not
    captured; Zeek's conn.log says missed_bytes 2902, history ShADafgF."""
    records, _ = _records(capture(THIRD_PARTY / "zeek" / "tcp" / "miss_end_data.pcap"), True)
    (flow,) = [r for r in records if isinstance(r, FlowRecord)]
    assert flow.missed_bytes == 2902
    assert flow.history == "ShADafgF"


CLIENT, SERVER = "10.9.0.2", "198.51.100.9"


def _seg(
    ts: float, to_server: bool, flags: str, seq: int, ack: int, size: int = 0
) -> tuple[float, bytes]:
    src, dst = (CLIENT, SERVER) if to_server else (SERVER, CLIENT)
    sport, dport = (40000, 5001) if to_server else (5001, 40000)
    pkt = (
        Ether()
        / IP(src=src, dst=dst)
        / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack)
    )
    return ts, raw(pkt / (b"z" * size) if size else pkt)


def lossy_transfer(seed: int, segments: int = 400) -> tuple[list[tuple[float, bytes]], int]:
    """A download on a port no analyzer reads, whose capture lost some data segments (the client
    got and acknowledged them), reordered others and shows retransmissions; and the bytes lost.
    Each lost segment is acknowledged before the next is lost, so each is one gap."""
    rng = random.Random(seed)
    c, s = 1000, 700_000
    ts = 1_700_000_000.0
    frames = [
        _seg(ts, True, "S", c, 0),
        _seg(ts + 0.001, False, "SA", s, c + 1),
        _seg(ts + 0.002, True, "A", c + 1, s + 1),
    ]
    c += 1
    s += 1
    lost = 0
    i = 0
    while i < segments:
        ts += 0.01
        size = rng.choice([1448, 1448, 1448, 512, 100])
        roll = rng.random()
        if roll < 0.03:  # lost on the way to the capture
            lost += size
            s += size
            frames.append(_seg(ts + 0.001, True, "A", c, s))
        elif roll < 0.05:  # lost, and the next one captured before the ACK of both
            lost += size
            frames.append(_seg(ts, False, "PA", s + size, c, size))
            s += 2 * size
            frames.append(_seg(ts + 0.001, True, "A", c, s))
            i += 1
        elif roll < 0.10:  # two segments captured in reverse order
            frames.append(_seg(ts, False, "PA", s + size, c, size))
            frames.append(_seg(ts + 0.0005, False, "PA", s, c, size))
            s += 2 * size
            frames.append(_seg(ts + 0.001, True, "A", c, s))
            i += 1
        elif roll < 0.13:  # sent again after its ACK
            frames.append(_seg(ts, False, "PA", s, c, size))
            s += size
            frames.append(_seg(ts + 0.001, True, "A", c, s))
            frames.append(_seg(ts + 0.002, False, "PA", s - size, c, size))
        else:
            frames.append(_seg(ts, False, "PA", s, c, size))
            s += size
            frames.append(_seg(ts + 0.001, True, "A", c, s))
        i += 1
    ts += 0.01
    frames += [
        _seg(ts, False, "FA", s, c),
        _seg(ts + 0.001, True, "FA", c, s + 1),
        _seg(ts + 0.002, False, "A", s + 1, c + 1),
    ]
    return frames, lost


def _records(path: Path, bulk: bool) -> tuple[list[Record], int]:
    got: list[Record] = []
    config = AnalysisConfig(policy=Policy().with_ldm(True), bulk=bulk)
    result = run_source(FileSource(str(path)), got.append, config)
    return got, result.bulk_packets


def test_gaps_alike_with_and_without_the_c_walk(tmp_path: Path) -> None:
    """A lossy, reordered transfer gives the same records on the per-packet path and with the C
    walk counting most of its segments, and its missed_bytes are the bytes lost."""
    for seed in (1, 2, 3):
        frames, lost = lossy_transfer(seed)
        path = tmp_path / f"lossy{seed}.pcap"
        path.write_bytes(pcap_bytes(frames))
        ref, none_in_bulk = _records(path, False)
        got, in_bulk = _records(path, True)
        assert got == ref
        assert none_in_bulk == 0 and in_bulk > len(frames) // 2
        (flow,) = [r for r in got if isinstance(r, FlowRecord)]
        assert lost > 0 and flow.missed_bytes == lost
        assert flow.history is not None and "g" in flow.history


def test_gaps_reach_the_capture_record_and_the_verdict(tmp_path: Path) -> None:
    """The capture record counts the flows with gaps and their bytes, and the device's verdict
    says so (the download itself was seen: gaps alone leave the verdict as it is)."""
    frames, lost = lossy_transfer(1)
    path = tmp_path / "lossy.pcap"
    path.write_bytes(pcap_bytes(frames))
    got: list[Record] = []
    policy = with_devices(Policy(), [CLIENT]).with_ldm(True)
    result = run_source(FileSource(str(path)), got.append, AnalysisConfig(policy=policy))
    assert (result.capture.gap_flows, result.capture.missed_bytes) == (1, lost)
    (verdict,) = [r for r in got if isinstance(r, VerdictRecord)]
    assert verdict.device_ip == CLIENT
    assert f"1 TCP flows with content gaps ({lost:,} bytes acknowledged but not" in verdict.msg
