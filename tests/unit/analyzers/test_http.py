"""Tests for the HTTP analyzer: heads over segments, keep-alive, responses, RTSP left alone."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers.http import (
    HttpAnalyzer,
    HttpOptions,
    HttpRecord,
    chunked,
    content_length,
    host_without_port,
    parse_request_head,
    parse_response_head,
)
from dronewatch.analyzers.tls import TlsAnalyzer
from dronewatch.core.engine import Engine
from dronewatch.core.flow import Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, pipeline_records
from tests.pcaps import THIRD_PARTY, capture
from tests.unit.analyzers.test_tls_hello import record as tls_record
from tests.unit.analyzers.test_tls_hello import spec_hello
from tests.unit.core.tcpconv import TcpConversation

PHONE, SERVER = "10.77.0.2", "47.88.0.12"
CPORT, SPORT = 43646, 80

GET = (
    b"GET /api/report/config?app=dji_fly HTTP/1.1\r\n"
    b"Host: Statistical-Report.djiservice.org:8080\r\n"
    b"User-Agent: DJI Fly/1.13.4 (Android 13; Pixel 7) okhttp/4.9.3\r\n"
    b"Accept: */*\r\n"
    b"\r\n"
)
POST_BODY = b'{"event":"x"}'
POST = (
    b"POST /api/report/clientContext HTTP/1.1\r\n"
    b"Host: statistical-report.djiservice.org\r\n"
    b"Content-Type: application/json\r\n"
    b"Content-Length: " + str(len(POST_BODY)).encode() + b"\r\n"
    b"\r\n" + POST_BODY
)
OK_BODY = b'{"ok":true}'
OK = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(OK_BODY)).encode() + b"\r\n\r\n" + OK_BODY
)
CREATED = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n"


class Conn:
    """A TCP connection phone -> server, its segments through an engine (the stream layer puts
    them in order) to one HTTP analyzer."""

    def __init__(self, options: HttpOptions | None = None, *, port: int = SPORT) -> None:
        self.ctx = RecordingContext()
        self.analyzer = HttpAnalyzer(self.ctx, options)
        self.engine = Engine([self.analyzer], self.ctx)
        self.conv = TcpConversation((PHONE, CPORT), (SERVER, port), ts=100.0)
        self.flow: Flow = self._open()

    def _open(self) -> Flow:
        for pkt in self.conv.handshake():
            self.engine.process(pkt)
        (flow,) = self.engine.flows.values()
        return flow

    def send(self, *segments: bytes) -> None:
        """The phone sends each segment in order."""
        for data in segments:
            self.engine.process(self.conv.send(data))

    def reply(self, *segments: bytes) -> None:
        """The server sends each segment in order."""
        for data in segments:
            self.engine.process(self.conv.reply(data))

    def segment(self, pkt: Packet) -> None:
        """A segment made by hand (`self.conv`)."""
        self.engine.process(pkt)

    def end(self) -> list[HttpRecord]:
        """Close the flow; every http record written."""
        self.engine.finish()
        return self.records()

    def records(self) -> list[HttpRecord]:
        """The http records written so far."""
        out = [r for r in self.ctx.of("http") if isinstance(r, HttpRecord)]
        assert len(out) == len(self.ctx.records)
        return out


def test_parse_request_head() -> None:
    """A request head decodes into method, target, version and lower-case headers."""
    head = parse_request_head(GET[: GET.index(b"\r\n\r\n")])
    assert (head.method, head.uri, head.version) == (
        "GET",
        "/api/report/config?app=dji_fly",
        "HTTP/1.1",
    )
    assert head.headers["host"] == "Statistical-Report.djiservice.org:8080"
    assert head.headers["accept"] == "*/*"


def test_parse_response_head() -> None:
    """A status line decodes into code and reason; a reason may contain spaces or be absent."""
    head = parse_response_head(b"HTTP/1.0 404 Not Found\r\nServer: x")
    assert (head.version, head.status_code, head.status_msg) == ("HTTP/1.0", 404, "Not Found")
    assert head.headers == {"server": "x"}
    assert parse_response_head(b"HTTP/1.1 204").status_msg == ""


@pytest.mark.parametrize(
    "head",
    [
        b"OPTIONS rtsp://192.168.42.1/live RTSP/1.0\r\nCSeq: 1",
        b"DESCRIBE rtsp://192.168.42.1/live RTSP/1.0",
        b"G\xc3T / HTTP/1.1",
        b"GET / HTTP/1.1 extra",
        b"GET",
    ],
)
def test_parse_request_head_rejects(head: bytes) -> None:
    """RTSP, a method that is not an RFC 9110 token, or a line that is not `METHOD target
    [HTTP/x.y]` raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_request_head(head)


@pytest.mark.parametrize(
    ("host", "name"),
    [
        ("Example.com:8080", "example.com"),
        ("example.com.", "example.com"),
        ("[2001:db8::1]:80", "2001:db8::1"),
        ("2001:db8::1", "2001:db8::1"),
        ("192.168.42.1", "192.168.42.1"),
    ],
)
def test_host_without_port(host: str, name: str) -> None:
    """Host values lose their port and brackets and are lower-cased."""
    assert host_without_port(host) == name


def test_get_with_response() -> None:
    """A GET and its 200 give one record with the request's fields, the status and the meta."""
    conn = Conn()
    conn.send(GET)
    assert conn.records() == []  # written once the response (or the flow end) is seen
    conn.reply(OK)
    (rec,) = conn.records()
    assert rec.to_dict() == {
        "ts": pytest.approx(100.04),
        "uid": conn.flow.uid,
        "orig_h": PHONE,
        "orig_p": CPORT,
        "resp_h": SERVER,
        "resp_p": SPORT,
        "method": "GET",
        "uri": "/api/report/config?app=dji_fly",
        "version": "HTTP/1.1",
        "host": "Statistical-Report.djiservice.org:8080",
        "user_agent": "DJI Fly/1.13.4 (Android 13; Pixel 7) okhttp/4.9.3",
        "status_code": 200,
        "status_msg": "OK",
        "request_body_len": 0,
        "response_body_len": len(OK_BODY),
    }
    assert conn.flow.service == "http"
    assert conn.flow.meta == {
        "http_host": "statistical-report.djiservice.org",
        "http_path": "/api/report/config?app=dji_fly",
        "http_method": "GET",
        "user_agent": "DJI Fly/1.13.4 (Android 13; Pixel 7) okhttp/4.9.3",
    }
    assert len(conn.end()) == 1


def test_headers_split_across_segments() -> None:
    """A request head cut in three segments (inside the method token too) is read once whole."""
    conn = Conn()
    conn.send(GET[:2], GET[2:30], GET[30:])
    conn.reply(OK[:10], OK[10:])
    (rec,) = conn.end()
    assert rec.user_agent is not None and rec.user_agent.startswith("DJI Fly/1.13.4")
    assert rec.status_code == 200


def test_keep_alive_post_then_get() -> None:
    """On one connection a POST with a body, then a GET, each get a record and their status."""
    conn = Conn()
    conn.send(POST[:-5], POST[-5:] + GET)  # the GET starts in the segment ending the body
    conn.reply(CREATED + OK)
    records = conn.end()
    assert [(r.method, r.uri, r.status_code) for r in records] == [
        ("POST", "/api/report/clientContext", 201),
        ("GET", "/api/report/config?app=dji_fly", 200),
    ]
    post = records[0]
    assert (post.content_type, post.request_body_len) == ("application/json", len(POST_BODY))
    assert conn.flow.meta["http_method"] == "POST"  # the first request's facts win
    assert conn.flow.meta["http_content_type"] == "application/json"


def test_body_that_looks_like_a_request_is_skipped() -> None:
    """Body bytes passed over by Content-Length are not read as a request, even if they look it."""
    body = b"GET /not-a-request HTTP/1.1\r\n\r\n"
    request = b"PUT /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % len(body)
    conn = Conn()
    conn.send(request, body)
    assert [r.uri for r in conn.end()] == ["/upload"]


def test_rtsp_is_not_http() -> None:
    """An RTSP session (OPTIONS/DESCRIBE ... RTSP/1.0) writes no HTTP record and no meta."""
    conn = Conn(port=554)
    conn.send(b"OPTIONS rtsp://192.168.42.1:554/live RTSP/1.0\r\nCSeq: 1\r\n\r\n")
    conn.reply(b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: DESCRIBE, SETUP\r\n\r\n")
    conn.send(b"DESCRIBE rtsp://192.168.42.1:554/live RTSP/1.0\r\nCSeq: 2\r\n\r\n")
    conn.send(b"GET_PARAMETER rtsp://192.168.42.1:554/live RTSP/1.0\r\nCSeq: 3\r\n\r\n")
    assert conn.end() == []
    assert conn.flow.service == "" and conn.flow.meta == {}


def test_bad_request_after_good_ones_is_skipped() -> None:
    """A malformed request on a connection already seen to speak HTTP is skipped, not fatal."""
    conn = Conn()
    conn.send(GET)
    conn.send(b"GET /x HTTP/9.9\r\n\r\n")
    conn.send(POST)
    assert [r.method for r in conn.end()] == ["GET", "GET", "POST"]  # HTTP/9.9 is a version


def test_request_without_response_written_at_flow_end() -> None:
    """A request never answered is written at flow_end without a status."""
    conn = Conn()
    conn.send(POST)
    (rec,) = conn.end()
    assert (rec.method, rec.status_code, rec.status_msg) == ("POST", None, None)


def test_interim_100_continue_is_not_the_status() -> None:
    """A 100 Continue before the final response does not become the request's status."""
    conn = Conn()
    conn.send(POST)
    conn.reply(b"HTTP/1.1 100 Continue\r\n\r\n", OK)
    (rec,) = conn.end()
    assert rec.status_code == 200


def test_bad_status_line_is_ignored() -> None:
    """A response head that does not parse is ignored; the next one gets the request."""
    conn = Conn()
    conn.send(GET)
    conn.reply(b"HTTP/1.1 2xx Fine\r\n\r\n")
    conn.reply(OK)
    (rec,) = conn.end()
    assert rec.status_code == 200


def test_head_response_has_no_body() -> None:
    """A HEAD response's Content-Length is not skipped, so the next response is still read."""
    conn = Conn()
    conn.send(b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", GET)
    conn.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + OK)
    records = conn.end()
    assert [(r.method, r.status_code) for r in records] == [("HEAD", 200), ("GET", 200)]
    assert records[0].response_body_len == 0  # bytes seen, not what the header says


def test_chunked_body_resyncs_on_next_request() -> None:
    """After a chunked body (length unknown), the next segment starting a request is read."""
    conn = Conn()
    conn.send(b"POST /log HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n")
    conn.send(b"0\r\n\r\n")
    conn.send(GET)
    records = conn.end()
    assert [(r.method, r.request_body_len) for r in records] == [("POST", 4), ("GET", 0)]


def test_retransmitted_request_is_read_once() -> None:
    """A retransmitted request segment does not give a second record."""
    conn = Conn()
    first = conn.conv.send(GET)
    conn.segment(first)
    conn.segment(conn.conv.send(GET, seq=first.tcp_seq, advance=False))
    assert len(conn.end()) == 1


def test_partly_retransmitted_segment_is_trimmed() -> None:
    """A segment repeating the end of what was read adds only its new bytes."""
    conn = Conn()
    first = conn.conv.send(GET[:20])
    conn.segment(first)
    conn.segment(conn.conv.send(GET[10:], seq=first.tcp_seq + 10))
    (rec,) = conn.end()
    assert rec.uri == "/api/report/config?app=dji_fly"


def test_lost_body_bytes_keep_step() -> None:
    """Bytes lost inside a body of known length are counted off; the next request is read."""
    conn = Conn()
    conn.send(POST[:-8])
    conn.conv.seq[True] += 5  # five body bytes never captured
    conn.send(POST[-3:] + GET)
    conn.segment(conn.conv.ack(from_client=False))
    records = conn.end()
    assert [r.method for r in records] == ["POST", "GET"]
    assert records[0].request_body_len == len(POST_BODY)  # lost bytes count as body


def test_lost_head_bytes_drop_the_head() -> None:
    """Bytes lost inside a head drop it; the next segment starting a request is read."""
    conn = Conn()
    conn.send(GET[:30])
    conn.conv.seq[True] += 10
    conn.send(GET[40:])
    conn.send(POST)
    conn.segment(conn.conv.ack(from_client=False))
    assert [r.method for r in conn.end()] == ["POST"]


def test_chunked_response_resyncs_on_next_response() -> None:
    """After a chunked response body, the next response is read; a response to no request is
    written on its own (Zeek logs it with no method)."""
    conn = Conn()
    conn.send(GET, GET)
    conn.reply(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    conn.reply(b"0\r\n\r\n")
    conn.reply(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n" + CREATED)
    assert [(r.method, r.status_code) for r in conn.end()] == [
        ("GET", 200),
        ("GET", 304),
        (None, 201),
    ]


def test_absolute_target_names_the_host() -> None:
    """A proxy-style absolute target gives the host and path when there is no Host header."""
    conn = Conn(port=8080)
    conn.send(b"GET http://user@tiles.example.org:8080/z/1/2.png?k=v HTTP/1.0\r\n\r\n")
    (rec,) = conn.end()
    assert rec.host == "tiles.example.org:8080"
    assert conn.flow.meta["http_host"] == "tiles.example.org"
    assert conn.flow.meta["http_path"] == "/z/1/2.png?k=v"


def test_asterisk_target_has_no_path() -> None:
    """`OPTIONS *` names no path; the Host header still names the host."""
    conn = Conn()
    conn.send(b"OPTIONS * HTTP/1.1\r\nHost: cam.local\r\n\r\n")
    (rec,) = conn.end()
    assert (rec.method, rec.uri) == ("OPTIONS", "*")
    assert conn.flow.meta == {"http_host": "cam.local", "http_method": "OPTIONS"}


def test_connect_tunnel_is_not_parsed() -> None:
    """After CONNECT and its 200, tunnelled bytes are not read as HTTP."""
    conn = Conn(port=3128)
    conn.send(b"CONNECT api.dji.com:443 HTTP/1.1\r\nHost: api.dji.com:443\r\n\r\n")
    conn.reply(b"HTTP/1.1 200 Connection established\r\n\r\n")
    conn.send(b"\x16\x03\x01\x02\x00" + b"\x00" * 40)
    conn.reply(b"HTTP/1.1 500 not really\r\n\r\n")
    (rec,) = conn.end()
    assert (rec.method, rec.status_code) == ("CONNECT", 200)
    assert conn.flow.meta["http_host"] == "api.dji.com"
    assert "http_path" not in conn.flow.meta


def test_connect_with_a_space_in_its_target_is_read() -> None:
    """`CONNECT host:25 / HTTP/1.0` (a spammer's tunnel through an open proxy, Zeek's
    `http/connect-with-smtp.pcap`): the target is everything between the method and the
    version, as Zeek reads it; the CONNECT's authority names where the tunnel goes. On a port
    that is no HTTP port, the request line alone makes the flow HTTP."""
    conn = Conn(port=8240)
    conn.send(b"CONNECT mail.example.net:25 / HTTP/1.0\r\nUser-Agent: x\r\n\r\n")
    conn.reply(b"HTTP/1.0 200 Connection established\r\n\r\n")
    conn.send(b"HELO example\r\n")
    (rec,) = conn.end()
    assert (rec.method, rec.uri, rec.host, rec.status_code) == (
        "CONNECT",
        "mail.example.net:25 /",
        "mail.example.net:25",
        200,
    )
    assert conn.flow.service == "http"
    assert conn.flow.meta["http_host"] == "mail.example.net"


@pytest.mark.parametrize(
    ("line", "target"),
    [
        (b"GET /a b HTTP/1.1", b"/a b"),
        (b"GET  /spaced   HTTP/1.1", b"/spaced"),
        (b"POST /x y z HTTP/1.0", b"/x y z"),
    ],
)
def test_request_target_with_whitespace(line: bytes, target: bytes) -> None:
    """A target with spaces inside is kept whole, the version read from the line's end."""
    head = parse_request_head(line)
    assert (head.uri.encode(), head.version) == (target, line.split()[-1].decode())


def test_oversized_head_is_dropped() -> None:
    """A head over max_head_bytes is dropped; a later request on the connection is read."""
    conn = Conn(HttpOptions(max_head_bytes=64))
    conn.send(b"GET /big HTTP/1.1\r\nX-Pad: " + b"a" * 100)
    conn.send(b"b" * 20 + b"\r\n\r\n")
    conn.send(GET)
    assert [r.uri for r in conn.end()] == ["/api/report/config?app=dji_fly"]


def test_pending_requests_are_bounded() -> None:
    """Past max_pending unanswered requests, the oldest is written without a status."""
    conn = Conn(HttpOptions(max_pending=2))
    for i in range(3):
        conn.send(b"GET /%d HTTP/1.1\r\n\r\n" % i)
    assert [r.uri for r in conn.records()] == ["/0"]


def test_non_http_flows_are_ignored() -> None:
    """A TLS flow, or server bytes with no request, create no state and no record."""
    conn = Conn(port=443)
    conn.reply(OK)
    conn.send(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03")
    assert conn.end() == []
    assert conn.analyzer._state == {}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.booleans(),
            st.one_of(
                st.binary(max_size=120),
                st.sampled_from([GET, POST, OK, CREATED, b"GET ", b"HTTP/1.1 ", b"\r\n\r\n"]),
                st.binary(max_size=60).map(lambda tail: b"GET / HTTP/1.1\r\n" + tail),
            ),
        ),
        max_size=10,
    )
)
def test_fuzz_analyzer_raises_nothing(segments: list[tuple[bool, bytes]]) -> None:
    """Arbitrary segments either way, mixed with real HTTP pieces, raise nothing from any hook."""
    conn = Conn(HttpOptions(max_head_bytes=256))
    for from_client, data in segments:
        if from_client:
            conn.send(data)
        else:
            conn.reply(data)
    for rec in conn.end():
        assert rec.version is None or rec.version.startswith("HTTP/")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the head decoders raise only DecodeError."""
    for parse in (parse_request_head, parse_response_head):
        try:
            parse(data)
        except DecodeError:
            pass


SMUGGLED = {
    "variant-01-chunk_2pow64_overflow": "/smuggled-chunk-2pow64",
    "variant-02-cl_uint64max": "/smuggled-cl-uint64max",
    "variant-03-cl_negative": "/smuggled-cl-negative",
    "variant-04-te_cl_desync": "/smuggled-te-cl",
    "variant-07-expect_100_cl0": "/smuggled-expect-100",
    "variant-08-leading_zeros": "/smuggled-leading-zeros",
    "variant-09-te_obs_fold": "/smuggled-obsfold",
    "variant-10-multi_value_te": "/smuggled-multi-te",
}
"""Zeek's request-smuggling captures (testing/btest/Traces/http/261/) and the second request
Zeek finds behind each POST's body."""


def capture_http(path: str) -> list[HttpRecord]:
    """The http records of one of the copied Zeek captures."""
    return pipeline_records(capture(THIRD_PARTY / "zeek" / path), HttpRecord)


@pytest.mark.parametrize(("variant", "uri"), sorted(SMUGGLED.items()))
def test_request_behind_a_bad_or_double_length_is_found(variant: str, uri: str) -> None:
    """Chunked wins over Content-Length, leading zeros are read, negative, too large and bad
    chunk sizes are no length, folded headers unfold: the request after the body is read, as
    Zeek reads it."""
    records = capture_http(f"http/261/{variant}.pcap")
    assert [(r.method, r.uri) for r in records] == [("POST", "/"), ("GET", uri)]


def test_five_requests_behind_extra_client_bytes() -> None:
    """Zeek's http-desync-request-response-5.pcap: bytes beyond a body do not hide the requests
    after them (Zeek finds all of them, so does dronewatch)."""
    records = capture_http("http/http-desync-request-response-5.pcap")
    assert len([r for r in records if r.method is not None]) == 5


def test_pipelined_requests_past_the_inspected_packets() -> None:
    """Zeek's pipelined-requests.pcap: every request of a long keep-alive connection is read
    (the analyzer follows an HTTP flow to its end)."""
    records = capture_http("http/pipelined-requests.pcap")
    assert len(records) >= 5
    assert all(r.status_code == 200 for r in records)


def test_bare_lf_request_and_any_method_token() -> None:
    """Lines ended by a bare LF and a method outside the common eight are read."""
    conn = Conn()
    conn.send(b"PROPFIND /dav HTTP/1.1\nHost: cam.local\nDepth: 1\n\n")
    conn.reply(b"HTTP/1.1 207 Multi-Status\nContent-Length: 3\n\nabc")
    (rec,) = conn.end()
    assert (rec.method, rec.uri, rec.host, rec.status_code) == (
        "PROPFIND",
        "/dav",
        "cam.local",
        207,
    )
    assert rec.response_body_len == 3


def test_body_lengths_are_the_bytes_seen() -> None:
    """A chunked body counts its chunk data; a body cut short by the end counts what came."""
    conn = Conn()
    conn.send(
        b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n"
        b"\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    )
    conn.reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"z" * 40)
    (rec,) = conn.end()
    assert (rec.request_body_len, rec.response_body_len) == (5, 40)


def test_gzip_body_is_counted_decompressed() -> None:
    """A body sent with Content-Encoding gzip is counted as Zeek counts it: decompressed."""
    import gzip

    body = gzip.compress(b"a" * 1000)
    conn = Conn()
    conn.send(GET)
    conn.reply(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(body)
        + body
    )
    (rec,) = conn.end()
    assert rec.response_body_len == 1000


def test_simple_request_is_http_0_9() -> None:
    """`GET /path` without a version is an HTTP/0.9 request; its answer is the bare body."""
    conn = Conn()
    conn.send(b"GET /zeek.html\r\n")
    conn.reply(b"<html>hello</html>")
    (rec,) = conn.end()
    assert (rec.method, rec.uri, rec.version, rec.status_code) == (
        "GET",
        "/zeek.html",
        "HTTP/0.9",
        None,
    )
    assert rec.response_body_len == 18


def test_junk_line_before_a_request_is_passed_over() -> None:
    """A line that starts no request is passed over; the request on the next line is read."""
    conn = Conn()
    conn.send(b"garbage that is not http\r\n" + GET)
    conn.reply(OK)
    assert [r.uri for r in conn.end()] == ["/api/report/config?app=dji_fly"]


def test_content_length_parsing() -> None:
    """Leading zeros are allowed; negative, non-numeric and too large values are no length."""
    assert content_length({"content-length": "0050"}) == 50
    assert content_length({"content-length": "-1"}) is None
    assert content_length({"content-length": "18446744073709551615"}) is None
    assert content_length({"content-length": "12a"}) is None
    assert content_length({}) is None
    assert chunked({"transfer-encoding": "gzip, Chunked"})


def test_smtp_is_not_taken_for_http_0_9() -> None:
    """`EHLO host` looks like a simple request but is not HTTP off the HTTP ports."""
    conn = Conn(port=25)
    conn.reply(b"220 mail ready\r\n")
    conn.send(b"EHLO drone.example\r\n")
    conn.reply(b"250 ok\r\n")
    assert conn.end() == [] and conn.flow.service == ""


def test_headers_after_a_request_line_without_version_are_read() -> None:
    """Header lines after a request line that lost its version (`GET /HTTP/1.1`, from Zeek's
    http/methods.pcap) belong to that HTTP/0.9 request: its Host is logged, and the answer is
    still read as a bare body."""
    conn = Conn()
    conn.send(b"GET /HTTP/1.1\r\nHost: www.google.com\r\n\r\n")
    reply = b"HTTP/1.0 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope."
    conn.reply(reply)
    (rec,) = conn.end()
    assert (rec.method, rec.uri, rec.version, rec.host) == (
        "GET",
        "/HTTP/1.1",
        "HTTP/0.9",
        "www.google.com",
    )
    assert rec.status_code is None and rec.response_body_len == len(reply)
    assert conn.flow.meta["http_host"] == "www.google.com"


def test_header_line_cut_after_a_simple_request_line_is_awaited() -> None:
    """A header line that is not whole yet after an HTTP/0.9 request line is waited for."""
    conn = Conn()
    conn.send(b"GET /x\r\nHo", b"st: a.example\r\nUser-Agent: t/1\r\n\r\n")
    conn.reply(b"body")
    (rec,) = conn.end()
    assert (rec.uri, rec.version, rec.host, rec.user_agent) == (
        "/x",
        "HTTP/0.9",
        "a.example",
        "t/1",
    )
    assert rec.response_body_len == 4


def test_simple_request_followed_by_another_is_not_a_head() -> None:
    """A line after an HTTP/0.9 request line that is no header field leaves it a one-line
    request."""
    conn = Conn()
    conn.send(b"GET /one\r\nGET /two\r\n")
    records = conn.end()
    assert [(r.uri, r.host) for r in records][:1] == [("/one", None)]


def _tls_then(port: int, answer: bytes) -> tuple[list[HttpRecord], Flow]:
    """A TLS ClientHello to `port` answered with `answer`, through the TLS and HTTP analyzers."""
    ctx = RecordingContext()
    analyzers = [TlsAnalyzer(ctx), HttpAnalyzer(ctx)]
    engine = Engine(analyzers, ctx)
    conv = TcpConversation((PHONE, CPORT), (SERVER, port), ts=100.0)
    for pkt in conv.handshake():
        engine.process(pkt)
    (flow,) = engine.flows.values()
    engine.process(conv.send(tls_record(spec_hello())))
    engine.process(conv.reply(answer))
    engine.finish()
    return [r for r in ctx.of("http") if isinstance(r, HttpRecord)], flow


BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 3\r\n\r\nbad"


def test_http_answer_to_a_tls_client_on_an_http_port_is_logged() -> None:
    """An HTTP server answering a TLS ClientHello with `400 Bad Request` (Zeek's
    tls/ssl-to-http-server.pcap) gets a response-only http record; the flow stays TLS."""
    (rec,), flow = _tls_then(80, BAD_REQUEST)
    assert (rec.method, rec.version, rec.status_code, rec.status_msg) == (
        None,
        "HTTP/1.1",
        400,
        "Bad Request",
    )
    assert rec.response_body_len == 3
    assert flow.service == "tls"


def test_tls_off_the_http_ports_or_answered_in_tls_is_not_http() -> None:
    """The same answer off the HTTP ports, or a TLS answer on one, gives no http record."""
    assert _tls_then(443, BAD_REQUEST)[0] == []
    records, flow = _tls_then(80, tls_record(b"\x02\x00\x00\x00"))
    assert records == [] and flow.service == "tls"


UPGRADE = (
    b"GET /v1/events HTTP/1.1\r\nHost: relay.example:8888\r\nUpgrade: websocket\r\n"
    b"Connection: upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
)
SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"


def ws_frame(data: bytes, *, masked: bool) -> bytes:
    """One WebSocket binary frame (RFC 6455 5.2), masked as a client's are."""
    mask = b"\x37\xfa\x21\x3d" if masked else b""
    head = bytes([0x82, (0x80 if masked else 0) | 126]) + len(data).to_bytes(2, "big")
    if masked:
        data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + mask + data


def test_http_inside_a_websocket_tunnel_is_read() -> None:
    """A WebSocket (the upgrade answered by 101) whose frames carry HTTP, as wstunnel's do: the
    inner request and its response are a record of their own, the tunnel's real destination in
    its host; frames cut over segments."""
    conn = Conn()
    conn.send(UPGRADE)
    conn.reply(SWITCHED)
    inner = ws_frame(GET, masked=True)
    conn.send(inner[:5], inner[5:60], inner[60:])
    answer = ws_frame(OK, masked=False)
    conn.reply(answer[:3], answer[3:])
    outer, tunnelled = conn.records()
    assert (outer.status_code, outer.host) == (101, "relay.example:8888")
    assert tunnelled.host == "Statistical-Report.djiservice.org:8080"
    assert (tunnelled.status_code, tunnelled.response_body_len) == (200, len(OK_BODY))
    assert tunnelled.uri == "/api/report/config?app=dji_fly"


@pytest.mark.parametrize(
    "carried",
    [
        b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x00",  # TLS records (wstunnel-https)
        b"SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n",  # SSH: a line, not an HTTP/1.x request
    ],
)
def test_a_websocket_carrying_another_protocol_is_left(carried: bytes) -> None:
    """Frames whose first bytes are not an HTTP/1.x request: the tunnel carries another
    protocol; the analyzer reads neither direction any more (even a later request-like line)."""
    conn = Conn()
    conn.send(UPGRADE)
    conn.reply(SWITCHED)
    conn.send(ws_frame(carried, masked=True))
    conn.send(ws_frame(GET, masked=True))
    conn.reply(ws_frame(OK, masked=False))
    [outer] = conn.end()
    assert outer.status_code == 101


def test_a_refused_upgrade_is_not_read_as_frames() -> None:
    """An upgrade to WebSocket refused (426), then plain requests: read as HTTP."""
    conn = Conn()
    conn.send(UPGRADE)
    conn.reply(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n")
    conn.send(GET)
    conn.reply(OK)
    assert [r.status_code for r in conn.records()] == [426, 200]


def test_wstunnel_http_capture() -> None:
    """Zeek's websocket/wstunnel-http.pcap: curl through a wstunnel WebSocket; the request in
    the frames (host zeek.org, curl's agent, the 301 answer) as Zeek's http.log has it."""
    outer, tunnelled = capture_http("websocket/wstunnel-http.pcap")
    assert (outer.host, outer.uri, outer.status_code) == ("localhost:8888", "/v1/events", 101)
    assert (tunnelled.host, tunnelled.uri) == ("zeek.org", "/")
    assert (tunnelled.user_agent, tunnelled.status_code) == ("curl/7.81.0", 301)
