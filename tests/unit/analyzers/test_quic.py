"""Tests for the QUIC analyzer: Initial packet decryption and the quic.jsonl records."""

from __future__ import annotations

import hashlib

import pytest
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import QuicProtocolVersion
from hypothesis import given, settings
from hypothesis import strategies as st

from dronewatch.analyzers._tls_hello import parse_client_hello
from dronewatch.analyzers.quic import (
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    QuicAnalyzer,
    QuicOptions,
    QuicRecord,
    client_initial_keys,
    crypto_frames,
    decrypt_initial,
    parse_invariant_header,
    parse_long_header,
)
from dronewatch.core.flow import IP_PROTO_TCP, Flow, Packet
from dronewatch.exceptions import DecodeError
from tests.factories import RecordingContext, make_flow, make_udp

RFC_DCID = bytes.fromhex("8394c8f03e515708")

# RFC 9001 A.2 and RFC 9369 A.2: the CRYPTO frame both client Initials carry (then PADDING).
RFC_CRYPTO_FRAME = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff"
)
RFC_CLIENT_HELLO = RFC_CRYPTO_FRAME[4:]

# RFC 9001 A.2, "The resulting protected packet is:".
RFC9001_CLIENT_INITIAL = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934"
)

# RFC 9369 A.2, "The resulting protected packet is:".
RFC9369_CLIENT_INITIAL = bytes.fromhex(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc"
)

CLIENT, SERVER = "192.168.1.3", "203.0.113.10"
SCID = bytes.fromhex("0102030405060708")


def from_client(payload: bytes, ts: float = 20.0) -> Packet:
    """A UDP datagram from the client to port 443."""
    return make_udp(payload, src=CLIENT, dst=SERVER, sport=50000, dport=443, ts=ts)


def from_server(payload: bytes) -> Packet:
    """A UDP datagram from the server back to the client."""
    return make_udp(payload, src=SERVER, dst=CLIENT, sport=443, dport=50000, ts=20.1)


def varint(value: int) -> bytes:
    """A QUIC variable-length integer in its shortest form (up to 2^30)."""
    if value < 0x40:
        return bytes([value])
    if value < 0x4000:
        return (0x4000 | value).to_bytes(2, "big")
    return (0x8000_0000 | value).to_bytes(4, "big")


def crypto(offset: int, data: bytes) -> bytes:
    """A CRYPTO frame."""
    return b"\x06" + varint(offset) + varint(len(data)) + data


def initial(
    frames: bytes,
    *,
    version: int = QUIC_VERSION_1,
    dcid: bytes = RFC_DCID,
    key_dcid: bytes | None = None,
    pn: int = 0,
    token: bytes = b"",
) -> bytes:
    """A client Initial packet protected by aioquic (an independent implementation)."""
    pn_len = 2
    type_bits = 0b00 if version == QUIC_VERSION_1 else 0b01
    length = pn_len + len(frames) + 16
    header = bytes([0xC0 | type_bits << 4 | (pn_len - 1)]) + version.to_bytes(4, "big")
    header += bytes([len(dcid)]) + dcid + bytes([len(SCID)]) + SCID
    header += varint(len(token)) + token + (0x4000 | length).to_bytes(2, "big")
    header += pn.to_bytes(pn_len, "big")
    pair = CryptoPair()
    pair.setup_initial(cid=key_dcid or dcid, is_client=True, version=version)
    return pair.encrypt_packet(header, frames, pn)


def aioquic_datagram(version: int, server_name: str = "drone.example") -> bytes:
    """The first datagram a real aioquic client sends."""
    config = QuicConfiguration(
        is_client=True,
        alpn_protocols=["h3"],
        server_name=server_name,
        supported_versions=[version],
    )
    connection = QuicConnection(configuration=config)
    connection.connect(("203.0.113.10", 443), now=1.0)
    [(datagram, _)] = connection.datagrams_to_send(now=1.0)
    return datagram


def feed(
    datagrams: list[bytes], options: QuicOptions | None = None
) -> tuple[Flow, list[QuicRecord], QuicAnalyzer]:
    """Hand client datagrams to a fresh analyzer, end the flow, return what was logged."""
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx, options)
    first = from_client(datagrams[0])
    flow = make_flow(first)
    for i, datagram in enumerate(datagrams):
        analyzer.packet(flow, from_client(datagram, ts=20.0 + i))
    analyzer.flow_end(flow)
    records = [r for r in ctx.of("quic") if isinstance(r, QuicRecord)]
    assert len(records) == len(ctx.records)
    return flow, records, analyzer


# --- the RFC sample packets ----------------------------------------------------------------------


def test_rfc9001_initial_keys() -> None:
    """Client Initial keys for the RFC 9001 A.1 DCID equal the RFC's values."""
    keys = client_initial_keys(RFC_DCID, QUIC_VERSION_1)
    assert keys.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert keys.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert keys.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_rfc9369_initial_keys() -> None:
    """Client Initial keys for QUIC v2 (RFC 9369 A.1) use the v2 salt and labels."""
    keys = client_initial_keys(RFC_DCID, QUIC_VERSION_2)
    assert keys.key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert keys.iv.hex() == "91f73e2351d8fa91660e909f"
    assert keys.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"


@pytest.mark.parametrize(
    ("packet", "version"),
    [(RFC9001_CLIENT_INITIAL, QUIC_VERSION_1), (RFC9369_CLIENT_INITIAL, QUIC_VERSION_2)],
    ids=["rfc9001", "rfc9369"],
)
def test_rfc_client_initial_decrypts(packet: bytes, version: int) -> None:
    """The RFC sample client Initial decrypts to its CRYPTO frame and 1162 bytes of frames."""
    assert len(packet) == 1200
    header = parse_long_header(packet)
    assert header.is_initial and header.version == version
    assert header.dcid == RFC_DCID and header.scid == b"" and header.token == b""
    assert header.end == len(packet)
    packet_number, frames = decrypt_initial(packet, header, client_initial_keys(RFC_DCID, version))
    assert packet_number == 2
    assert len(frames) == 1162
    assert frames.startswith(RFC_CRYPTO_FRAME)
    assert frames[len(RFC_CRYPTO_FRAME) :] == bytes(1162 - len(RFC_CRYPTO_FRAME))
    assert crypto_frames(frames) == [(0, RFC_CLIENT_HELLO)]


@pytest.mark.parametrize(
    ("packet", "version"),
    [(RFC9001_CLIENT_INITIAL, "1"), (RFC9369_CLIENT_INITIAL, "2")],
    ids=["rfc9001", "rfc9369"],
)
def test_rfc_client_initial_through_the_analyzer(packet: bytes, version: str) -> None:
    """The analyzer logs the RFC sample's SNI, ALPN, DCID and a JA4 worked out by hand."""
    flow, [rec], _ = feed([packet])
    assert rec.version == version
    assert rec.dcid == "8394c8f03e515708" and rec.scid == ""
    assert rec.server_name == "example.com"
    assert rec.alpn == ("alpn",)
    assert (rec.uid, rec.orig_h, rec.orig_p, rec.resp_h, rec.resp_p) == (
        flow.uid,
        CLIENT,
        50000,
        SERVER,
        443,
    )
    # Two suites; eleven extensions; ALPN "alpn" -> "an"; SNI and ALPN left out of part c.
    part_b = hashlib.sha256(b"1301,1302").hexdigest()[:12]
    exts = "0005,000a,000d,001c,002b,002d,0033,0039,ff01"
    sigs = "0403,0503,0603,0203,0804,0805,0806"
    part_c = hashlib.sha256(f"{exts}_{sigs}".encode()).hexdigest()[:12]
    assert rec.ja4 == f"q13d0211an_{part_b}_{part_c}"
    assert flow.service == "quic"
    assert flow.meta["quic_version"] == version
    assert flow.meta["quic_sni"] == flow.meta["sni"] == "example.com"
    assert flow.meta["quic_alpn"] == ["alpn"]
    assert flow.meta["ja4"] == rec.ja4


def test_a_corrupted_rfc_packet_does_not_authenticate() -> None:
    """Flipping one ciphertext bit makes decryption fail with DecodeError."""
    packet = bytearray(RFC9001_CLIENT_INITIAL)
    packet[600] ^= 0x01
    header = parse_long_header(bytes(packet))
    with pytest.raises(DecodeError):
        decrypt_initial(bytes(packet), header, client_initial_keys(RFC_DCID, QUIC_VERSION_1))


# --- real clients --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "name"),
    [(QuicProtocolVersion.VERSION_1, "1"), (QuicProtocolVersion.VERSION_2, "2")],
    ids=["v1", "v2"],
)
def test_aioquic_client_initial(version: int, name: str) -> None:
    """The first datagram of a real aioquic client gives its SNI, ALPN and version."""
    datagram = aioquic_datagram(version)
    assert len(datagram) >= 1200
    flow, [rec], _ = feed([datagram])
    header = parse_long_header(datagram)
    assert rec.version == name
    assert rec.dcid == header.dcid.hex() and rec.scid == header.scid.hex()
    assert rec.server_name == "drone.example"
    assert rec.alpn == ("h3",)
    assert rec.ja4 is not None and rec.ja4.startswith("q13d") and rec.ja4[8:10] == "h3"
    assert rec.ts == 20.0
    assert flow.meta["quic_version"] == name
    assert flow.meta["sni"] == "drone.example"
    assert flow.meta["quic_alpn"] == ["h3"]


def test_server_datagrams_and_other_udp_are_ignored() -> None:
    """Datagrams from the responder, non-QUIC UDP and TCP never create state."""
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx)
    dns = from_client(bytes.fromhex("abcd01000001000000000000") + b"\x05drone\x00\x00\x01\x00\x01")
    flow = make_flow(dns)
    analyzer.packet(flow, dns)
    analyzer.packet(flow, from_server(RFC9001_CLIENT_INITIAL))
    tcp = make_udp(RFC9001_CLIENT_INITIAL)
    tcp_flow = make_flow(tcp, uid="CTCP")
    tcp_flow.proto = IP_PROTO_TCP
    analyzer.packet(tcp_flow, tcp)
    assert analyzer._state == {}
    analyzer.flow_end(flow)
    assert ctx.records == []


# Zeek's quic/vector-max-size-crash.pcap: a 45-byte long-header datagram of version 0x10010000.
UNKNOWN_VERSION_DATAGRAM = bytes.fromhex(
    "c61001000001000000000000000001320d6161616161616161612d616161610761616161616161616161610000100001"
)


def test_an_unknown_version_is_logged_with_its_header() -> None:
    """A client packet of a version without Initial keys, to port 443, is one quic record with
    the version in hex and the connection IDs (RFC 8999 5.1); the service stays unset."""
    flow, [rec], analyzer = feed([UNKNOWN_VERSION_DATAGRAM, UNKNOWN_VERSION_DATAGRAM])
    assert (rec.version, rec.dcid, rec.scid) == ("0x10010000", "00", "")
    assert rec.server_name is None and rec.alpn == () and rec.ja4 is None
    assert rec.ts == 20.0
    assert not flow.service
    assert analyzer._state == {}


@pytest.mark.parametrize(
    ("datagram", "dport"),
    [
        (UNKNOWN_VERSION_DATAGRAM, 5000),  # not one of QUIC's ports
        (b"\xc6\x00\x00\x00\x00\x01\x00\x00", 443),  # version negotiation (a server's)
        (b"\xc6\x10\x01\x00\x00\x08\x00\x00", 443),  # DCID runs past the datagram
        (b"\x46\x10\x01\x00\x00\x01\x00\x00", 443),  # short header
        (b"\x86\x10\x01\x00\x00\x01\x00\x00", 443),  # fixed bit clear: not QUIC
    ],
)
def test_unknown_versions_elsewhere_or_malformed_are_not_logged(
    datagram: bytes, dport: int
) -> None:
    """An unknown version is logged only on QUIC's ports, from a well-formed long header with
    the fixed bit set."""
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx)
    pkt = make_udp(datagram, src=CLIENT, dst=SERVER, sport=50000, dport=dport, ts=20.0)
    flow = make_flow(pkt)
    analyzer.packet(flow, pkt)
    analyzer.flow_end(flow)
    assert ctx.records == []


@pytest.mark.parametrize("server", [False, True])
def test_a_flow_without_an_initial_in_view_is_given_up(server: bool) -> None:
    """Off QUIC's ports, client long headers of a version without keys, or the server speaking
    before any client Initial: after `max_initial_packets` such datagrams the analyzer gives
    the flow up (bounded inspection); a version negotiated within them is still read."""
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx, QuicOptions(max_initial_packets=3))
    first = make_udp(UNKNOWN_VERSION_DATAGRAM, src=CLIENT, dst=SERVER, sport=50000, dport=5000)
    flow = make_flow(first)
    flow.inspector_names = ("quic",)

    def datagram(i: int) -> Packet:
        if server:
            return make_udp(b"\xc0" * 40, src=SERVER, dst=CLIENT, sport=5000, dport=50000)
        return make_udp(UNKNOWN_VERSION_DATAGRAM, src=CLIENT, dst=SERVER, sport=50000, dport=5000)

    for i in range(2):
        analyzer.packet(flow, datagram(i))
    assert flow.inspector_names == ("quic",)
    analyzer.packet(flow, datagram(2))
    assert flow.inspector_names == () and analyzer._before == {}
    # Within the bound, a client Initial of version 1 (after a version negotiation) is read.
    ctx2 = RecordingContext()
    reader = QuicAnalyzer(ctx2, QuicOptions(max_initial_packets=3))
    flow2 = make_flow(first, uid="CTWO")
    flow2.inspector_names = ("quic",)
    for i in range(2):
        reader.packet(flow2, datagram(i))
    reader.packet(
        flow2,
        make_udp(RFC9001_CLIENT_INITIAL, src=CLIENT, dst=SERVER, sport=50000, dport=5000, ts=20.0),
    )
    reader.flow_end(flow2)
    assert flow2.service == "quic" and reader._before == {}
    assert [r.server_name for r in ctx2.of("quic")] == ["example.com"]


def test_parse_invariant_header_allows_long_connection_ids() -> None:
    """The version-independent header allows connection IDs of up to 255 bytes (RFC 8999)."""
    datagram = b"\xc0\xfa\xce\xb0\x02\x30" + bytes(range(48)) + b"\x00" + bytes(4)
    assert parse_invariant_header(datagram) == (0xFACEB002, bytes(range(48)), b"")


# --- reassembly, coalescing and bounds -----------------------------------------------------------


def test_hello_over_two_datagrams_out_of_order() -> None:
    """A ClientHello split over two Initial datagrams, second half first, is reassembled."""
    first = initial(crypto(0, RFC_CLIENT_HELLO[:100]) + bytes(900), pn=0)
    second = initial(crypto(100, RFC_CLIENT_HELLO[100:]) + bytes(900), pn=1)
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx)
    flow = make_flow(from_client(second))
    analyzer.packet(flow, from_client(second, ts=1.0))
    assert ctx.records == [] and "quic_sni" not in flow.meta
    analyzer.packet(flow, from_client(first, ts=2.0))
    assert flow.meta["quic_sni"] == "example.com"  # the flow knows at once
    assert ctx.records == []  # the record waits for the server's side
    analyzer.flow_end(flow)
    [rec] = ctx.of("quic")
    assert isinstance(rec, QuicRecord)
    assert rec.server_name == "example.com" and rec.ts == 1.0
    assert rec.tls_version is None and rec.cipher is None and rec.server_scid == ""


def test_crypto_frames_out_of_order_in_one_packet() -> None:
    """Several CRYPTO frames in one packet, in any order and around PING/ACK, are joined."""
    hello = RFC_CLIENT_HELLO
    frames = b"\x02\x05\x00\x01\x00\x02\x01"  # ACK: largest 5, delay 0, 1 range, gap 2 len 1
    frames += crypto(150, hello[150:]) + b"\x01" + crypto(0, hello[:70]) + crypto(60, hello[60:160])
    frames += bytes(800)
    _, [rec], _ = feed([initial(frames)])
    assert rec.server_name == "example.com"


def test_coalesced_packets_in_one_datagram() -> None:
    """Two Initials and a Handshake packet coalesced in one datagram, then zero padding."""
    part_a = initial(crypto(120, RFC_CLIENT_HELLO[120:]) + bytes(40), pn=0)
    part_b = initial(crypto(0, RFC_CLIENT_HELLO[:120]) + bytes(40), pn=1)
    # A Handshake packet (type 0b10 in v1) whose contents are opaque to an observer.
    handshake = bytes([0xE1]) + (1).to_bytes(4, "big") + b"\x08" + RFC_DCID + b"\x08" + SCID
    handshake += (0x4000 | 40).to_bytes(2, "big") + bytes(range(40))
    datagram = part_a + handshake + part_b
    datagram += bytes(1200 - len(datagram))
    _, [rec], _ = feed([datagram])
    assert rec.server_name == "example.com"


def test_v2_initial_with_a_token_and_an_ecn_ack() -> None:
    """A v2 Initial with a token and an ACK_ECN frame before the CRYPTO frame decodes."""
    frames = b"\x03\x00\x00\x00\x00\x01\x02\x03" + crypto(0, RFC_CLIENT_HELLO) + bytes(600)
    packet = initial(frames, version=QUIC_VERSION_2, token=b"retry-token")
    assert parse_long_header(packet).token == b"retry-token"
    _, [rec], _ = feed([packet])
    assert rec.version == "2" and rec.server_name == "example.com"


def test_later_initials_use_the_first_dcid_keys() -> None:
    """Later Initials carry the server's CID but keep the first DCID's keys (RFC 9001 5.2)."""
    first = initial(crypto(0, RFC_CLIENT_HELLO[:100]) + bytes(900), pn=0)
    server_cid = bytes.fromhex("f067a5502a4262b5")
    second = initial(
        crypto(100, RFC_CLIENT_HELLO[100:]) + bytes(900), dcid=server_cid, key_dcid=RFC_DCID, pn=1
    )
    _, [rec], _ = feed([first, second])
    assert rec.server_name == "example.com" and rec.dcid == RFC_DCID.hex()


def test_keys_from_a_new_dcid_after_retry() -> None:
    """An Initial protected with its own new DCID (after a Retry) still decrypts."""
    first = initial(crypto(0, RFC_CLIENT_HELLO[:100]) + bytes(900), pn=0)
    retry_cid = bytes.fromhex("0011223344556677")
    second = initial(crypto(0, RFC_CLIENT_HELLO) + bytes(900), dcid=retry_cid, pn=1)
    _, [rec], _ = feed([first, second])
    assert rec.server_name == "example.com"


def test_partial_hello_is_logged_at_flow_end() -> None:
    """A connection whose ClientHello never completes is logged without a server name."""
    flow, [rec], _ = feed([initial(crypto(0, RFC_CLIENT_HELLO[:100]) + bytes(900))])
    assert rec.server_name is None and rec.ja4 is None and rec.alpn == ()
    assert rec.version == "1" and rec.dcid == RFC_DCID.hex()
    assert "quic_sni" not in flow.meta


def test_work_is_bounded_to_the_first_initials() -> None:
    """Past `max_initial_packets` undecryptable Initials, even a good one is not looked at."""
    bad = bytearray(RFC9001_CLIENT_INITIAL)
    bad[700] ^= 0xFF
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx, QuicOptions(max_initial_packets=3))
    flow = make_flow(from_client(bytes(bad)))
    for _ in range(3):
        analyzer.packet(flow, from_client(bytes(bad)))
    state = analyzer._state[flow.uid]
    assert state.done and state.tried == 3
    analyzer.packet(flow, from_client(RFC9001_CLIENT_INITIAL))
    assert state.tried == 3
    analyzer.flow_end(flow)
    assert ctx.records == [] and flow.meta == {} and analyzer._state == {}


def test_crypto_offsets_beyond_the_budget_are_dropped() -> None:
    """CRYPTO data past `max_crypto_bytes` is not buffered."""
    packet = initial(crypto(5000, b"x" * 200) + bytes(800))
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx, QuicOptions(max_crypto_bytes=4096))
    flow = make_flow(from_client(packet))
    analyzer.packet(flow, from_client(packet))
    assert analyzer._state[flow.uid].crypto.chunks == {}


def test_crypto_stream_not_starting_with_a_client_hello() -> None:
    """A CRYPTO stream that starts with another handshake type is given up on."""
    packet = initial(crypto(0, b"\x02\x00\x00\x40" + bytes(10)) + bytes(800))
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx)
    flow = make_flow(from_client(packet))
    analyzer.packet(flow, from_client(packet))
    assert analyzer._state[flow.uid].done
    analyzer.flow_end(flow)
    [rec] = ctx.of("quic")
    assert isinstance(rec, QuicRecord) and rec.server_name is None


# --- frame parsing -------------------------------------------------------------------------------


def test_frame_reading_stops_at_an_unknown_frame() -> None:
    """Frames after a type the reader does not know (here STREAM) are not looked at."""
    frames = crypto(0, b"abc") + b"\x08\x00" + crypto(3, b"def")
    assert crypto_frames(frames) == [(0, b"abc")]


@pytest.mark.parametrize(
    "frames",
    [
        b"\x06\x00\x10abc",  # CRYPTO longer than the packet
        b"\x02\x00\x00\x7f\xff",  # ACK frame cut short
        b"\x06\x40",  # truncated varint
        b"\x02\x00\x00\x40\xff\x00",  # ACK claiming more ranges than bytes
    ],
)
def test_malformed_frames_raise_decode_error(frames: bytes) -> None:
    """Frames that run past the packet raise DecodeError."""
    with pytest.raises(DecodeError):
        crypto_frames(frames)


@pytest.mark.parametrize(
    "datagram",
    [
        b"\x40" + bytes(30),  # short header
        b"\xc0\x00\x00\x00\x01",  # too short
        b"\xc0\xff\x00\x00\x1d\x08" + bytes(40),  # draft version: not decoded
        b"\xc0\x00\x00\x00\x01\x15" + bytes(40),  # 21-byte DCID
        b"\xc0\x00\x00\x00\x01\x08" + bytes(8) + b"\x00\x00\x44\x9e",  # length past the end
        b"\xc0\x00\x00\x00\x01\x08" + bytes(8) + b"\x00\x20" + bytes(10),  # token past the end
    ],
)
def test_headers_that_are_not_v1_or_v2_initials(datagram: bytes) -> None:
    """Short headers, unknown versions and bad lengths raise DecodeError."""
    with pytest.raises(DecodeError):
        parse_long_header(datagram)


@pytest.mark.parametrize(
    ("packet", "version"),
    [
        # RFC 9001 A.4 and RFC 9369 A.4: Retry packets (type 0b11 in v1, 0b00 in v2).
        ("ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba", 1),
        ("cf6b3343cf0008f067a5502a4262b5746f6b656ec8646ce8bfe33952d955543665dcc7b6", 2),
    ],
    ids=["v1", "v2"],
)
def test_retry_packets_fill_the_datagram(packet: str, version: int) -> None:
    """A Retry has no Length field: it is not an Initial and runs to the datagram's end."""
    data = bytes.fromhex(packet)
    header = parse_long_header(data)
    assert not header.is_initial
    assert header.version == (QUIC_VERSION_1 if version == 1 else QUIC_VERSION_2)
    assert header.scid.hex() == "f067a5502a4262b5" and header.end == len(data)
    _, records, _ = feed([data])
    assert records == []


def test_initial_too_short_for_a_header_protection_sample() -> None:
    """An Initial whose payload cannot give a 16-byte sample raises DecodeError."""
    data = b"\xc3\x00\x00\x00\x01\x08" + RFC_DCID + b"\x00\x00\x0a" + bytes(10)
    header = parse_long_header(data)
    assert header.is_initial and header.end == len(data)
    with pytest.raises(DecodeError):
        decrypt_initial(data, header, client_initial_keys(RFC_DCID, QUIC_VERSION_1))


def test_an_oversized_handshake_in_crypto_is_refused() -> None:
    """A CRYPTO stream announcing a hello longer than the budget ends the flow's decoding."""
    packet = initial(crypto(0, b"\x01\xff\xff\xff" + bytes(10)) + bytes(800))
    ctx = RecordingContext()
    analyzer = QuicAnalyzer(ctx)
    flow = make_flow(from_client(packet))
    analyzer.packet(flow, from_client(packet))
    assert analyzer._state[flow.uid].done and flow.meta == {}


def test_unknown_version_has_no_keys() -> None:
    """Initial keys are only defined for versions 1 and 2."""
    with pytest.raises(DecodeError):
        client_initial_keys(RFC_DCID, 0xFF00001D)


def test_the_decrypted_hello_parses_on_its_own() -> None:
    """The ClientHello the RFC carries is a valid TLS message for the shared decoder."""
    hello = parse_client_hello(RFC_CLIENT_HELLO)
    assert hello.server_name == "example.com" and hello.cipher_suites == (0x1301, 0x1302)


# --- fuzzing -------------------------------------------------------------------------------------


@given(st.binary(max_size=1300))
def test_fuzz_decoders_raise_only_decode_error(data: bytes) -> None:
    """Arbitrary bytes into the header, frame and decryption code raise only DecodeError."""
    try:
        crypto_frames(data)
    except DecodeError:
        pass
    try:
        header = parse_long_header(data)
        decrypt_initial(data, header, client_initial_keys(header.dcid, header.version))
    except DecodeError:
        pass


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.binary(min_size=1, max_size=300),
            st.binary(max_size=1200).map(lambda b: b"\xc3\x00\x00\x00\x01\x08" + RFC_DCID + b),
            st.binary(max_size=1200).map(lambda b: b"\xd3\x6b\x33\x43\xcf" + b),
            st.integers(0, 1199).map(
                lambda i: (
                    RFC9001_CLIENT_INITIAL[:i]
                    + bytes([RFC9001_CLIENT_INITIAL[i] ^ 0x40])
                    + RFC9001_CLIENT_INITIAL[i + 1 :]
                )
            ),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_fuzz_hooks_never_raise(datagrams: list[bytes]) -> None:
    """Arbitrary and damaged datagrams never make a hook raise."""
    _, records, analyzer = feed(datagrams)
    assert len(records) <= 1 and analyzer._state == {}


@settings(max_examples=40, deadline=None)
@given(st.permutations(range(5)), st.sampled_from([QUIC_VERSION_1, QUIC_VERSION_2]))
def test_fuzz_any_order_of_five_initials(order: list[int], version: int) -> None:
    """A hello in five Initial datagrams is read whatever order they arrive in."""
    step = -(-len(RFC_CLIENT_HELLO) // 5)
    packets = [
        initial(
            crypto(i * step, RFC_CLIENT_HELLO[i * step : (i + 1) * step]) + bytes(50),
            version=version,
            pn=i,
        )
        for i in range(5)
    ]
    _, [rec], _ = feed([packets[i] for i in order])
    assert rec.server_name == "example.com"
