"""The TCP stream layer: each direction in order, retransmissions once, holes reported as gaps."""

from __future__ import annotations

from dronewatch.core.engine import Engine, EngineOptions
from dronewatch.core.flow import Flow, Packet
from dronewatch.core.stream import StreamOptions, TcpStream
from tests.factories import RecordingContext
from tests.unit.core.tcpconv import TcpConversation


class StreamReader:
    """An analyzer that reads TCP byte streams: what it was given, per direction."""

    name = "reader"
    tcp_stream = True

    def __init__(self) -> None:
        self.got: dict[bool, bytearray] = {True: bytearray(), False: bytearray()}
        self.gaps: list[tuple[bool, int]] = []

    def packet(self, flow: Flow, pkt: Packet) -> None:
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        if pkt.gap:
            self.gaps.append((from_orig, pkt.gap))
        self.got[from_orig] += pkt.payload


class SegmentReader:
    """An analyzer that reads segments as captured (no `tcp_stream`)."""

    name = "segments"

    def __init__(self) -> None:
        self.payloads: list[bytes] = []

    def packet(self, flow: Flow, pkt: Packet) -> None:
        self.payloads.append(pkt.payload)


def feed(*packets: Packet, **opts: int) -> tuple[StreamReader, SegmentReader]:
    """Run packets through an engine with one stream reader and one segment reader."""
    stream, segments = StreamReader(), SegmentReader()
    eng = Engine([stream, segments], RecordingContext(), EngineOptions(**opts))  # type: ignore[arg-type]
    for pkt in packets:
        eng.process(pkt)
    eng.finish()
    return stream, segments


def test_swapped_segments_are_put_back_in_order() -> None:
    """Two segments that arrive in swapped order reach a stream reader in order, and a segment
    reader as captured."""
    conv = TcpConversation()
    hs = conv.handshake()
    first, second = conv.send(b"hello "), conv.send(b"world")
    stream, segments = feed(*hs, second, first)
    assert bytes(stream.got[True]) == b"hello world"
    assert segments.payloads == [b"world", b"hello "]
    assert stream.gaps == []


def test_retransmission_and_overlap_give_new_bytes_once() -> None:
    """A segment sent twice, and one overlapping bytes already read, add only new bytes."""
    conv = TcpConversation()
    hs = conv.handshake()
    a = conv.send(b"abcdef")
    again = conv.send(b"abcdef", seq=a.tcp_seq, advance=False)
    overlap = conv.send(b"defghi", seq=a.tcp_seq + 3)
    stream, _ = feed(*hs, a, again, overlap)
    assert bytes(stream.got[True]) == b"abcdefghi"


def test_a_lost_segment_is_reported_as_a_gap_when_acknowledged() -> None:
    """Bytes the peer acknowledged but the capture missed: the next delivery says how many."""
    conv = TcpConversation()
    hs = conv.handshake()
    conv.reply(b"lost!")  # never captured
    after = conv.reply(b"after")
    ack = conv.send(b"req")  # acknowledges both server segments
    stream, _ = feed(*hs, after, ack)
    assert bytes(stream.got[False]) == b"after"
    assert stream.gaps == [(False, 5)]


def test_held_segments_are_delivered_at_the_end_with_their_gap() -> None:
    """A hole nobody fills or acknowledges is given up when the flow ends."""
    conv = TcpConversation()
    hs = conv.handshake()
    conv.send(b"0123456789")  # lost
    late = conv.send(b"tail")
    stream, _ = feed(*hs, late)
    assert bytes(stream.got[True]) == b"tail"
    assert stream.gaps == [(True, 10)]


def test_bounded_buffer_gives_up_the_hole() -> None:
    """Beyond the per-direction bound, the oldest hole is passed over."""
    s = TcpStream(StreamOptions(max_bytes=10, max_segments=4))
    conv = TcpConversation()
    pkt = conv.send(b"x")
    assert s.add(True, 5, b"aaaaaa", pkt) == []
    out = s.add(True, 11, b"bbbbbb", pkt)
    assert [(data, rel, gap) for _, data, rel, gap, _ in out] == [
        (b"aaaaaa", 5, 4),
        (b"bbbbbb", 11, 0),
    ]


def test_directions_are_independent() -> None:
    """Each direction keeps its own order (the server acknowledges none of the client's bytes
    yet, so nothing is given up)."""
    conv = TcpConversation()
    hs = conv.handshake()
    c1, c2 = conv.send(b"GET "), conv.send(b"/")
    s1 = conv.reply(b"HTTP/1.1 ", ack=c1.tcp_seq)
    s2 = conv.reply(b"200", ack=c1.tcp_seq)
    stream, _ = feed(*hs, c2, s2, c1, s1)
    assert bytes(stream.got[True]) == b"GET /"
    assert bytes(stream.got[False]) == b"HTTP/1.1 200"


def test_stream_position_is_relative_to_the_syn() -> None:
    """Data right after the SYN is position 1; a start without a SYN is numbered the same."""
    s = TcpStream(StreamOptions())
    conv = TcpConversation()
    pkt = conv.send(b"x")
    out = s.add(True, 1, b"abc", pkt)
    assert out[0][2] == 1 and s.orig.next == 4
    s.flip()
    assert s.resp.next == 4 and s.orig.next == 1


def test_stream_is_let_go_when_no_stream_reader_is_left() -> None:
    """A flow's stream state goes once its stream readers decline it."""

    class Decliner(StreamReader):
        def packet(self, flow: Flow, pkt: Packet) -> None:
            flow.decline(self.name)

    decliner = Decliner()
    eng = Engine([decliner], RecordingContext())
    conv = TcpConversation()
    for pkt in (*conv.handshake(), conv.send(b"abc")):
        eng.process(pkt)
    (flow,) = eng.flows.values()
    assert flow.stream is None


class Passer(StreamReader):
    """A stream reader that, after its first delivery from the server, needs none of the next
    `n` bytes: it says so (`Flow.pass_over`) and keeps what it is told was passed over."""

    name = "passer"

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n
        self.skipped: list[tuple[bool, int, bytes]] = []

    def packet(self, flow: Flow, pkt: Packet) -> None:
        from_orig = pkt.src == flow.orig_h and pkt.sport == flow.orig_p
        if pkt.skipped:
            self.skipped.append((from_orig, pkt.skipped, bytes(pkt.payload)))
        first = not from_orig and not self.got[False]
        super().packet(flow, pkt)
        if first:
            flow.follow(self.name)
            flow.pass_over(self.name, False, pkt.tcp_seq + len(pkt.payload) + self.n)


def test_a_reader_may_pass_over_bytes_it_does_not_need() -> None:
    """A reader that needs none of the next 12 bytes gets the bytes after them, told how many
    were passed over; a segment lost inside the pass and acknowledged counts as passed over,
    not as a gap; a segment that arrives early inside it is dropped."""
    conv = TcpConversation()
    hs = conv.handshake()
    head = conv.reply(b"HEAD|")
    a = conv.reply(b"aaaa")
    conv.reply(b"bbbb")  # lost, acknowledged below
    c = conv.reply(b"cccc")
    tail = conv.reply(b"dd|tail")
    ack = conv.ack(from_client=True)
    passer = Passer(12)
    eng = Engine([passer], RecordingContext(), EngineOptions(inspect_packets=1))  # type: ignore[list-item]
    for pkt in (*hs, head, c, a, ack, tail):
        eng.process(pkt)
    eng.finish()
    assert bytes(passer.got[False]) == b"HEAD|dd|tail"
    assert passer.skipped == [(False, 12, b"dd|tail")]
    assert passer.gaps == []


def test_a_pass_over_to_the_end_is_told_at_the_end() -> None:
    """A flow that ends inside a pass: its reader is told how many bytes were passed over with an
    empty delivery (no payload) as the flow ends."""
    conv = TcpConversation()
    hs = conv.handshake()
    head = conv.reply(b"HEAD|")
    body = [conv.reply(b"x" * 100) for _ in range(3)]
    passer = Passer(1000)
    eng = Engine([passer], RecordingContext(), EngineOptions(inspect_packets=1))  # type: ignore[list-item]
    for pkt in (*hs, head, *body):
        eng.process(pkt)
    eng.finish()
    assert bytes(passer.got[False]) == b"HEAD|"
    assert passer.skipped == [(False, 300, b"")]
