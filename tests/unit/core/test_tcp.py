"""TCP connection state as Zeek keeps it: states, history letters, sequence-space sizes, reuse."""

from __future__ import annotations

from dronewatch.core import tcp
from dronewatch.core.engine import Engine, EngineOptions, conn_state
from dronewatch.core.flow import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Flow, Packet
from tests.factories import RecordingContext, ip
from tests.pcaps import THIRD_PARTY, capture
from tests.unit.core.tcpconv import PSH, TcpConversation


class Ended:
    """An analyzer that keeps the flows that ended."""

    name = "ended"

    def __init__(self) -> None:
        self.flows: list[Flow] = []

    def flow_end(self, flow: Flow) -> None:
        self.flows.append(flow)


def run(*packets: Packet, **opts: float) -> list[Flow]:
    """The flows the engine makes of `packets`, once every flow has ended."""
    ended = Ended()
    eng = Engine([ended], RecordingContext(), EngineOptions(**opts))  # type: ignore[arg-type]
    for pkt in packets:
        eng.process(pkt)
    eng.finish()
    return ended.flows


def test_syn_then_fin_without_answer_is_sh() -> None:
    """An originator that sends a SYN and a FIN to a silent responder: SH."""
    conv = TcpConversation()
    (flow,) = run(conv.segment(True, TCP_SYN, ack=0), conv.segment(True, TCP_FIN, ack=0))
    assert conn_state(flow) == "SH"
    assert flow.history == "SF"


def test_responder_closing_a_partial_connection_is_shr() -> None:
    """Only the responder (a service port) is seen, sending data and a FIN: SHR, flipped."""
    conv = TcpConversation(server=("203.0.113.10", 22))
    (flow,) = run(conv.reply(b"banner"), conv.fin(from_client=False))
    assert flow.resp_p == 22 and flow.history == "^df"
    assert conn_state(flow) == "SHR"


def test_syn_then_own_reset_is_rstos0() -> None:
    """The originator gives up its own attempt with a RST before any answer: RSTOS0."""
    conv = TcpConversation()
    (flow,) = run(conv.segment(True, TCP_SYN, ack=0), conv.rst(ack=False))
    assert flow.history == "SR"
    assert conn_state(flow) == "RSTOS0"


def test_responder_reset_of_a_partial_connection_is_rstrh() -> None:
    """Data from an originator whose SYN was not seen, answered by a RST: RSTRH."""
    conv = TcpConversation(server=("203.0.113.10", 5555))
    (flow,) = run(conv.send(b"hello"), conv.rst(from_client=False))
    assert conn_state(flow) == "RSTRH"


def test_connection_without_syn_that_closes_both_ways_is_sf() -> None:
    """A capture that starts mid-connection and sees both FINs: SF, not OTH."""
    conv = TcpConversation()
    (flow,) = run(
        conv.send(b"a" * 10), conv.reply(b"b" * 20), conv.fin(), conv.fin(from_client=False)
    )
    assert flow.history == "DdFf"
    assert conn_state(flow) == "SF"
    assert (flow.orig_payload_bytes, flow.resp_payload_bytes) == (10, 20)


def test_reset_after_both_fins_stays_sf() -> None:
    """A RST after the FIN exchange does not turn a clean close into RSTR."""
    conv = TcpConversation()
    (flow,) = run(
        *conv.handshake(), conv.fin(), conv.fin(from_client=False), conv.rst(from_client=False)
    )
    assert conn_state(flow) == "SF"


def test_reuse_after_a_reject_starts_a_new_flow() -> None:
    """A new SYN (another initial sequence number) on a rejected 5-tuple is a new flow."""
    first = TcpConversation(client_isn=100)
    again = TcpConversation(client_isn=90000, ts=2.0)
    flows = run(
        first.segment(True, TCP_SYN, ack=0),
        first.rst(from_client=False),
        again.segment(True, TCP_SYN, ack=0),
        again.rst(from_client=False),
    )
    assert [conn_state(f) for f in flows] == ["REJ", "REJ"]
    assert [f.end_reason for f in flows] == ["reuse", "tcp_close"]
    assert flows[0].uid != flows[1].uid


def test_a_retransmitted_syn_is_the_same_attempt() -> None:
    """The same SYN sent again (same sequence number) stays one S0 flow with one `S`."""
    conv = TcpConversation()
    syn = conv.segment(True, TCP_SYN, ack=0)
    conv.seq[True] -= 1
    (flow,) = run(syn, conv.segment(True, TCP_SYN, ack=0))
    assert flow.history == "S" and flow.orig_pkts == 2
    assert conn_state(flow) == "S0"


def test_unanswered_attempt_ends_after_the_linger() -> None:
    """A SYN nobody answers ends `close_linger_s` later; a retry after that is a new flow."""
    first = TcpConversation(client_isn=10)
    late = TcpConversation(client_isn=10, ts=8.0)
    flows = run(first.segment(True, TCP_SYN, ack=0), late.segment(True, TCP_SYN, ack=0))
    assert [f.end_reason for f in flows] == ["tcp_attempt", "eof"]


def test_payload_bytes_count_sequence_space() -> None:
    """Bytes the capture missed count (a hole shows), a retransmission does not count twice."""
    conv = TcpConversation()
    pkts = [*conv.handshake(), conv.send(b"a" * 100)]
    conv.seq[True] += 50  # 50 bytes the capture never saw
    pkts.append(conv.send(b"b" * 100))
    pkts.append(conv.send(b"b" * 100, seq=conv.seq[True] - 100))  # sent again
    (flow,) = run(*pkts)
    assert flow.orig_payload_bytes == 250
    assert flow.history == "ShADT"


def test_acknowledged_bytes_count_when_the_data_was_missed() -> None:
    """Data acknowledged by the peer but never captured still counts (Zeek's Size)."""
    conv = TcpConversation()
    pkts = conv.handshake()
    conv.seq[False] += 700  # the server sent 700 bytes the capture missed
    pkts.append(conv.ack())
    (flow,) = run(*pkts)
    assert flow.resp_payload_bytes == 700


def test_retransmission_letters_scale() -> None:
    """`T` is written at the 1st and the 10th retransmission, not in between."""
    conv = TcpConversation()
    pkts = [*conv.handshake(), conv.send(b"x" * 10)]
    start = conv.seq[True] - 10
    pkts += [conv.send(b"x" * 10, seq=start) for _ in range(10)]
    (flow,) = run(*pkts)
    assert flow.history == "ShADTT"


def test_connection_that_began_with_a_syn_ack_flips_on_its_first_ack() -> None:
    """A SYN-ACK first (between two unlisted ports) then an ACK: Zeek's `^h` flip."""
    conv = TcpConversation(client=("10.0.0.1", 6000), server=("10.0.0.2", 5000))
    (flow,) = run(conv.segment(False, TCP_SYN | TCP_ACK), conv.ack())
    assert flow.history == "^hA"
    assert flow.orig_h == ip("10.0.0.1") and flow.orig_p == 6000


def test_duration_ends_at_the_close() -> None:
    """Packets after both ends closed do not lengthen the flow (Zeek stops its clock)."""
    conv = TcpConversation()
    pkts = [*conv.handshake(), conv.fin(), conv.fin(from_client=False)]
    pkts.append(conv.segment(True, TCP_ACK, step=2.0))
    (flow,) = run(*pkts)
    assert round(flow.duration_s, 3) == 0.04
    assert flow.orig_pkts == 4


def test_size_of_an_aborted_half_open_attempt_is_zero() -> None:
    """A SYN answered by its own RST with an acknowledgement: no size from the numbers."""
    t = tcp.new_state()
    t[tcp.STATE], t[tcp.PREV] = tcp.RESET, tcp.SYN_SENT
    t[tcp.LREL], t[tcp.AREL] = 5000, 5000
    assert tcp.size(t, 0) == 0


def test_delta_wraps_around_sequence_space() -> None:
    """Sequence distances are signed and wrap at 2**32."""
    assert tcp.delta(5, 0xFFFFFFFB) == 10
    assert tcp.delta(0xFFFFFFFB, 5) == -10


def test_data_on_the_syn_counts() -> None:
    """Payload carried by a SYN (TCP Fast Open) is counted in the originator's size."""
    conv = TcpConversation()
    (flow,) = run(
        conv.segment(True, TCP_SYN | PSH, b"early", ack=0),
        conv.segment(False, TCP_SYN | TCP_ACK),
        conv.ack(),
    )
    assert flow.orig_payload_bytes == 5


def test_missing_syn_capture_is_sf_as_zeek_says() -> None:
    """Zeek's tcp/missing-syn.pcap: a connection without its SYN that closes is SF, flipped."""
    from dronewatch.capture.files import FileSource
    from dronewatch.core.pipeline import AnalysisConfig, run_source
    from dronewatch.judge.flowlog import FlowRecord

    path = capture(THIRD_PARTY / "zeek" / "tcp" / "missing-syn.pcap")
    records: list[FlowRecord] = []
    run_source(
        FileSource(str(path)),
        lambda r: records.append(r) if isinstance(r, FlowRecord) else None,
        AnalysisConfig(),
    )
    (flow,) = records
    assert (flow.conn_state, flow.history) == ("SF", "^hADdFaf")
    assert flow.duration_s == 1.550793


def test_reset_flags_make_q_and_i() -> None:
    """SYN+FIN is `Q`, FIN+RST is `I`."""
    conv = TcpConversation()
    (flow,) = run(conv.segment(True, TCP_SYN | TCP_FIN, ack=0))
    assert flow.history == "Q"
    conv2 = TcpConversation(client=("192.168.1.4", 1))
    (flow2,) = run(*conv2.handshake(), conv2.segment(True, TCP_FIN | TCP_RST | TCP_ACK))
    assert flow2.history == "ShAI"


def test_fin_then_reset_soon_after_the_syn_is_a_close() -> None:
    """A FIN then a RST from the originator right after the handshake: RSTO, ended as closed
    (the half close replaces the pending attempt check)."""
    conv = TcpConversation()
    (flow,) = run(*conv.handshake(), conv.fin(), conv.rst())
    assert flow.history == "ShAFR"
    assert conn_state(flow) == "RSTO" and flow.end_reason == "tcp_close"
