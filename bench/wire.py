"""Bytes on the wire for the benchmark's traffic shapes, packed with `struct` from the formats'
documents (scapy builds about 10,000 packets a second; this builds a million in seconds).

Headers: Ethernet with 802.1Q/802.1ad tags (IEEE 802.1Q), IPv4 (RFC 791, header checksum
computed), IPv6 (RFC 8200), TCP (RFC 9293) and UDP (RFC 768). TCP checksums, and UDP checksums
over IPv4, are left zero, as in captures taken on the sending host with checksum offload; UDP
over IPv6, where the checksum is mandatory, carries it. 802.11 frames (IEEE 802.11-2020 9.2-9.3)
with LLC/SNAP (RFC 1042) and radiotap headers (radiotap.org). Payloads: DNS (RFC 1035), TLS 1.3
ClientHello and ServerHello (RFC 8446), HTTP/1.1, MQTT 3.1.1, RTMP handshake and AMF0 commands,
MAVLink v2, DJI DUML v1, Parrot ARNetworkAL, the Tello SDK, ASTM F3411 Remote ID beacons.
Files: pcap (libpcap format) and pcapng (draft-ietf-opsawg-pcapng).
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Sequence
from typing import BinaryIO

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP4_WORDS = struct.Struct("!10H")
_IP6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_REC = struct.Struct("<IIII")

ETH_IP4 = b"\x08\x00"
ETH_IP6 = b"\x86\xdd"
TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10
# SYN options: MSS 1460, SACK permitted, NOP, window scale 8 (RFC 9293 3.2, RFC 2018, RFC 7323).
SYN_OPTIONS = bytes.fromhex("020405b4040201030308") + b"\x01\x01"

LINKTYPE_ETHERNET = 1
LINKTYPE_IEEE802_11 = 105
LINKTYPE_IEEE802_11_RADIOTAP = 127


class Pool:
    """Seeded random bytes to slice payloads from, so a million payloads cost no RNG calls."""

    def __init__(self, rng: random.Random, size: int = 1 << 21) -> None:
        self.data = rng.randbytes(size)
        self.rng = rng

    def take(self, n: int) -> bytes:
        """`n` random bytes (a slice of the pool, or several for more than half of it)."""
        half = len(self.data) // 2
        if n > half:
            return b"".join(self.take(min(half, n - i)) for i in range(0, n, half))
        at = self.rng.randrange(0, len(self.data) - n)
        return self.data[at : at + n]


def _fold(total: int) -> int:
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ip4(src: bytes, dst: bytes, proto: int, body: bytes, ident: int, ttl: int = 64) -> bytes:
    """An IPv4 packet (DF set, no options) with a correct header checksum."""
    hdr = _IP4.pack(0x45, 0, 20 + len(body), ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst)
    csum = _fold(sum(_IP4_WORDS.unpack(hdr)))
    return hdr[:10] + csum.to_bytes(2, "big") + hdr[12:] + body


def ip6(src: bytes, dst: bytes, proto: int, body: bytes, hops: int = 64) -> bytes:
    """An IPv6 packet without extension headers."""
    return _IP6.pack(0x60000000, len(body), proto, hops, src, dst) + body


def tcp(
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    options: bool = True,
) -> bytes:
    """A TCP segment; SYNs carry the usual options (32-byte header) unless not `options` (as a
    scanner sends them), others a bare header."""
    if flags & TCP_SYN and options:
        head = _TCP.pack(sport, dport, seq, ack, 0x80, flags, 64240, 0, 0)
        return head + SYN_OPTIONS + payload
    return _TCP.pack(sport, dport, seq, ack, 0x50, flags, 2048, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram with no checksum (allowed over IPv4, RFC 768)."""
    return _UDP.pack(sport, dport, 8 + len(payload), 0) + payload


def udp6(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    """A UDP datagram over IPv6, checksum included (RFC 8200 8.1)."""
    length = 8 + len(payload)
    data = _UDP.pack(sport, dport, length, 0) + payload
    padded = data + b"\x00" * (len(data) & 1)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    total += sum(struct.unpack("!16H", src + dst)) + length + 17
    csum = _fold(total) or 0xFFFF
    return data[:6] + csum.to_bytes(2, "big") + data[8:]


def icmp4(kind: int, code: int, rest: bytes, payload: bytes) -> bytes:
    """An ICMP message (RFC 792): type, code, checksum, the 4 bytes its type defines, payload."""
    data = bytes([kind, code, 0, 0]) + rest + payload
    padded = data + b"\x00" * (len(data) & 1)
    csum = _fold(sum(struct.unpack(f"!{len(padded) // 2}H", padded)))
    return data[:2] + csum.to_bytes(2, "big") + data[4:]


def icmp6(src: bytes, dst: bytes, kind: int, code: int, rest: bytes, payload: bytes) -> bytes:
    """An ICMPv6 message (RFC 4443), its checksum over the IPv6 pseudo-header (RFC 8200 8.1)."""
    data = bytes([kind, code, 0, 0]) + rest + payload
    padded = data + b"\x00" * (len(data) & 1)
    total = sum(struct.unpack(f"!{len(padded) // 2}H", padded))
    total += sum(struct.unpack("!16H", src + dst)) + len(data) + 58
    return data[:2] + _fold(total).to_bytes(2, "big") + data[4:]


def ether(dst: bytes, src: bytes, etype: bytes, body: bytes, tags: Sequence[int] = ()) -> bytes:
    """An Ethernet frame; `tags` are TPID << 16 | TCI, outermost first (802.1ad 0x88A8, 802.1Q
    0x8100)."""
    tagged = b"".join(t.to_bytes(4, "big") for t in tags)
    return dst + src + tagged + etype + body


def mac_for(addr: bytes) -> bytes:
    """A locally administered MAC address for a host (02:00 then its IPv4 address)."""
    return b"\x02\x00" + addr[-4:]


# --- DNS (RFC 1035 4.1) -------------------------------------------------------------------------


def dns_name(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\x00"


def dns_query(qid: int, name: str, qtype: int = 1) -> bytes:
    return (
        struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0) + dns_name(name) + struct.pack("!HH", qtype, 1)
    )


def dns_answer(
    qid: int, name: str, addrs: Sequence[bytes], qtype: int = 1, ttl: int = 300
) -> bytes:
    """The answer to `dns_query`: `addrs` as A (4 bytes) or AAAA (16 bytes) records; none gives
    NXDOMAIN."""
    rcode = 0 if addrs else 3
    head = struct.pack("!6H", qid, 0x8180 | rcode, 1, len(addrs), 0, 0)
    question = dns_name(name) + struct.pack("!HH", qtype, 1)
    records = b"".join(struct.pack("!HHHIH", 0xC00C, qtype, 1, ttl, len(a)) + a for a in addrs)
    return head + question + records


# --- TLS 1.3 (RFC 8446 4.1) ---------------------------------------------------------------------

_CIPHERS = bytes.fromhex("130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
_SIGALGS = bytes.fromhex("0403080404010503080505010806060102010201")


def _ext(kind: int, body: bytes) -> bytes:
    return struct.pack("!HH", kind, len(body)) + body


def client_hello(sni: str, alpn: Sequence[str], pool: Pool, pq: bool = False) -> bytes:
    """A TLS record holding a ClientHello with SNI, ALPN, supported groups, key share (X25519,
    and X25519MLKEM768 when `pq`: a 1.8 KB hello that spans two TCP segments)."""
    host = sni.encode()
    alpn_list = b"".join(bytes([len(p)]) + p.encode() for p in alpn)
    groups = (b"\x11\xec" if pq else b"") + bytes.fromhex("001d00170018")
    shares = struct.pack("!HH", 0x001D, 32) + pool.take(32)
    if pq:
        shares = struct.pack("!HH", 0x11EC, 1216) + pool.take(1216) + shares
    exts = b"".join(
        (
            _ext(0, struct.pack("!HBH", len(host) + 3, 0, len(host)) + host),
            _ext(23, b""),
            _ext(65281, b"\x00"),
            _ext(10, struct.pack("!H", len(groups)) + groups),
            _ext(11, b"\x01\x00"),
            _ext(16, struct.pack("!H", len(alpn_list)) + alpn_list) if alpn else b"",
            _ext(13, struct.pack("!H", len(_SIGALGS)) + _SIGALGS),
            _ext(51, struct.pack("!H", len(shares)) + shares),
            _ext(45, b"\x01\x01"),
            _ext(43, b"\x04\x03\x04\x03\x03"),
        )
    )
    body = (
        b"\x03\x03"
        + pool.take(32)
        + b"\x20"
        + pool.take(32)
        + struct.pack("!H", len(_CIPHERS))
        + _CIPHERS
        + b"\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello(pool: Pool, encrypted: int) -> bytes:
    """ServerHello, ChangeCipherSpec and `encrypted` bytes of application-data records (the
    encrypted extensions, certificate and Finished of TLS 1.3)."""
    exts = _ext(43, b"\x03\x04") + _ext(51, struct.pack("!HH", 0x001D, 32) + pool.take(32))
    body = (
        b"\x03\x03"
        + pool.take(32)
        + b"\x20"
        + pool.take(32)
        + b"\x13\x01\x00"
        + struct.pack("!H", len(exts))
        + exts
    )
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    out = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs + b"\x14\x03\x03\x00\x01\x01"
    return out + app_data(pool, encrypted)


def app_data(pool: Pool, n: int, record: int = 16401) -> bytes:
    """`n` bytes or a little more of TLS application-data records of up to `record` bytes."""
    out = []
    while n > 0:
        size = min(n, record)
        out.append(b"\x17\x03\x03" + struct.pack("!H", size) + pool.take(size))
        n -= size + 5
    return b"".join(out)


# --- HTTP/1.1, MQTT 3.1.1, RTMP -----------------------------------------------------------------


def http_request(method: str, host: str, path: str, agent: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {agent}\r\n"
    head += "Accept: application/json\r\nConnection: keep-alive\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + "\r\n").encode() + body


def http_response(pool: Pool, size: int, ctype: str = "application/json") -> bytes:
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {size}\r\n"
    return (head + "Server: nginx\r\n\r\n").encode() + pool.take(size)


def _remaining(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_connect(client_id: str, keepalive: int = 60) -> bytes:
    cid = client_id.encode()
    var = b"\x00\x04MQTT\x04\x02" + struct.pack("!HH", keepalive, len(cid)) + cid
    return b"\x10" + _remaining(len(var)) + var


def mqtt_publish(topic: str, payload: bytes) -> bytes:
    t = topic.encode()
    var = struct.pack("!H", len(t)) + t + payload
    return b"\x30" + _remaining(len(var)) + var


def _amf_string(s: str) -> bytes:
    return b"\x02" + struct.pack("!H", len(s)) + s.encode()


def _amf_number(n: float) -> bytes:
    return b"\x00" + struct.pack("!d", n)


def rtmp_message(
    csid: int, type_id: int, body: bytes, stream_id: int = 0, chunk: int = 128, ts: int = 0
) -> bytes:
    """One RTMP message: a type-0 chunk header, then its body in chunks of `chunk` bytes joined
    by type-3 headers (RTMP 1.0 spec, 5.3.1)."""
    head = bytes([csid]) + (ts & 0xFFFFFF).to_bytes(3, "big") + len(body).to_bytes(3, "big")
    head += bytes([type_id]) + stream_id.to_bytes(4, "little")
    cont = bytes([0xC0 | csid])
    return head + cont.join(body[i : i + chunk] for i in range(0, len(body), chunk))


def rtmp_publish(app: str, tc_url: str, key: str) -> bytes:
    """What a client sends after the handshake to publish a stream: `connect` (AMF0), Set Chunk
    Size 4096, `createStream` and `publish`."""
    obj = b"".join(
        struct.pack("!H", len(k)) + k.encode() + _amf_string(v)
        for k, v in (("app", app), ("type", "nonprivate"), ("tcUrl", tc_url))
    )
    connect = _amf_string("connect") + _amf_number(1) + b"\x03" + obj + b"\x00\x00\x09"
    create = _amf_string("createStream") + _amf_number(2) + b"\x05"
    publish = _amf_string("publish") + _amf_number(3) + b"\x05"
    publish += _amf_string(key) + _amf_string("live")
    return (
        rtmp_message(3, 20, connect)
        + rtmp_message(2, 1, struct.pack("!I", 4096))
        + rtmp_message(3, 20, create, chunk=4096)
        + rtmp_message(8, 20, publish, stream_id=1, chunk=4096)
    )


def rtmp_publish_replies() -> bytes:
    """The server's answers to `rtmp_publish`: Window Acknowledgement Size, Set Peer Bandwidth,
    `_result` for connect and createStream, and `onStatus` NetStream.Publish.Start."""
    connected = _amf_string("_result") + _amf_number(1) + b"\x05" + b"\x03"
    connected += b"\x00\x04code" + _amf_string("NetConnection.Connect.Success") + b"\x00\x00\x09"
    created = _amf_string("_result") + _amf_number(2) + b"\x05" + _amf_number(1)
    status = _amf_string("onStatus") + _amf_number(0) + b"\x05" + b"\x03"
    status += b"\x00\x04code" + _amf_string("NetStream.Publish.Start") + b"\x00\x00\x09"
    return (
        rtmp_message(2, 5, struct.pack("!I", 2_500_000))
        + rtmp_message(2, 6, struct.pack("!IB", 2_500_000, 2))
        + rtmp_message(3, 20, connected)
        + rtmp_message(3, 20, created)
        + rtmp_message(5, 20, status, stream_id=1)
    )


def rtmp_video(pool: Pool, frame: int) -> bytes:
    """Video frame `frame` of a 30 fps H.264 stream (FLV video tag body: a key frame every 60,
    30 KB, else 12 KB), as an RTMP message on chunk stream 6 in 4096-byte chunks."""
    key = frame % 60 == 0
    body = (b"\x17\x01" if key else b"\x27\x01") + b"\x00\x00\x00"
    body += pool.take(30_000 if key else 12_000)
    return rtmp_message(6, 9, body, stream_id=1, chunk=4096, ts=frame * 33)


# --- Drone links --------------------------------------------------------------------------------


def _table(poly: int, width: int) -> list[int]:
    out = []
    for n in range(256):
        crc = n
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        out.append(crc & ((1 << width) - 1))
    return out


_CRC8 = _table(0x8C, 8)  # reflected 0x31 (Dallas/Maxim)
_CRC16 = _table(0x8408, 16)  # reflected 0x1021 (CCITT)


def crc8(data: bytes, crc: int) -> int:
    for b in data:
        crc = _CRC8[crc ^ b]
    return crc


def crc16(data: bytes, crc: int) -> int:
    for b in data:
        crc = (crc >> 8) ^ _CRC16[(crc ^ b) & 0xFF]
    return crc


# MAVLink message id -> CRC_EXTRA (the common.xml definitions, as pymavlink computes them).
MAVLINK_EXTRA = {0: 50, 1: 124, 24: 24, 30: 39, 33: 104, 74: 20}


def mavlink2(seq: int, sysid: int, compid: int, msgid: int, payload: bytes) -> bytes:
    """A MAVLink v2 frame: checksum CRC-16/MCRF4XX over the bytes after the magic and CRC_EXTRA."""
    head = struct.pack("<BBBBBB", len(payload), 0, 0, seq & 0xFF, sysid, compid)
    head += msgid.to_bytes(3, "little")
    crc = crc16(head + payload, 0xFFFF)
    crc = crc16(bytes([MAVLINK_EXTRA[msgid]]), crc)
    return b"\xfd" + head + payload + struct.pack("<H", crc)


def duml(
    seq: int, sender: int, receiver: int, cmd_type: int, cmd_set: int, cmd_id: int, payload: bytes
) -> bytes:
    """A DJI DUML v1 frame (header CRC-8 init 0x77, frame CRC-16 init 0x3692)."""
    length = 11 + len(payload) + 2
    head = b"\x55" + struct.pack("<H", length | (1 << 10))
    head += bytes([crc8(head, 0x77)])
    frame = head + struct.pack("<BBHBBB", sender, receiver, seq & 0xFFFF, cmd_type, cmd_set, cmd_id)
    frame += payload
    return frame + struct.pack("<H", crc16(frame, 0x3692))


def arnetworkal(kind: int, buffer_id: int, seq: int, payload: bytes) -> bytes:
    """A Parrot ARNetworkAL frame: type, buffer id, sequence, size (header included, LE)."""
    return struct.pack("<BBBI", kind, buffer_id, seq & 0xFF, 7 + len(payload)) + payload


# --- 802.11 -------------------------------------------------------------------------------------

LLC_SNAP_IP4 = b"\xaa\xaa\x03\x00\x00\x00\x08\x00"
# Radiotap: TSFT, Flags, Rate, Channel, dBm antenna signal, Antenna (bits 0-3, 5, 11).
_RADIOTAP = struct.Struct("<BBHIQBBHHbB")
RADIOTAP_PRESENT = 0x0000082F
RADIOTAP_FCS = 0x10


def radiotap(frame: bytes, tsft: int, freq: int, signal: int, rate: int = 108) -> bytes:
    """The frame behind a radiotap header, with its FCS (CRC-32) appended, as monitor mode
    captures it."""
    head = _RADIOTAP.pack(
        0, 0, 24, RADIOTAP_PRESENT, tsft, RADIOTAP_FCS, rate, freq, 0x00C0, signal, 1
    )
    return head + frame + struct.pack("<I", zlib.crc32(frame))


def dot11_data(
    to_ds: bool,
    a1: bytes,
    a2: bytes,
    a3: bytes,
    seq: int,
    body: bytes,
    protected: bool = False,
    amsdu: bool = False,
) -> bytes:
    """A QoS data frame (one DS bit set) carrying `body` (LLC/SNAP and the packet; with
    `amsdu`, A-MSDU subframes, `amsdu_subframes`, and the QoS Control field's A-MSDU Present
    bit set)."""
    fc1 = (0x01 if to_ds else 0x02) | (0x40 if protected else 0)
    head = bytes([0x88, fc1]) + b"\x30\x00" + a1 + a2 + a3
    return head + struct.pack("<HH", (seq & 0xFFF) << 4, 0x80 if amsdu else 0) + body


def amsdu_subframes(msdus: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """A-MSDU subframes (IEEE 802.11-2020 9.3.2.2.2) of (destination, source, MSDU): the two
    addresses, the MSDU's length and the MSDU, each but the last padded to a multiple of 4."""
    out = b""
    for i, (da, sa, msdu) in enumerate(msdus):
        sub = da + sa + struct.pack("!H", len(msdu)) + msdu
        out += sub if i == len(msdus) - 1 else sub + b"\x00" * (-len(sub) % 4)
    return out


def dot11_ack(ra: bytes) -> bytes:
    return b"\xd4\x00\x00\x00" + ra


def dot11_beacon(
    bssid: bytes, seq: int, tsf: int, ssid: str, channel: int, extra: bytes = b""
) -> bytes:
    """A beacon: fixed fields, SSID, rates, DS parameter set, then `extra` elements."""
    head = b"\x80\x00\x00\x00" + b"\xff" * 6 + bssid + bssid + struct.pack("<H", (seq & 0xFFF) << 4)
    fixed = struct.pack("<QHH", tsf, 100, 0x0401)
    name = ssid.encode()
    ies = b"\x00" + bytes([len(name)]) + name + bytes.fromhex("01088c129824b048606c")
    ies += bytes([3, 1, channel])
    return head + fixed + ies + extra


def odid_beacon_ie(counter: int, serial: str, lat: float, lon: float, alt_m: float) -> bytes:
    """An ASTM F3411 vendor element (OUI FA:0B:BC, type 0x0D) with a message pack of Basic ID and
    Location messages (F3411-22a 5.4: protocol version 2, 25-byte messages)."""
    basic = b"\x02" + bytes([(1 << 4) | 2]) + serial.encode().ljust(20, b"\x00") + b"\x00" * 3
    alt = int((alt_m + 1000) / 0.5)
    location = (
        b"\x12"
        + struct.pack("<BBBb", 0x20, 90, 20, 0)
        + struct.pack("<ii", int(lat * 1e7), int(lon * 1e7))
        + struct.pack("<HHH", alt, alt, int((40 + 1000) / 0.5))  # height above take-off: 40 m
        + struct.pack("<BBHBB", 0x4B, 0x24, 1200, 0x02, 0)
    )
    pack = b"\xf2\x19\x02" + basic + location
    body = b"\xfa\x0b\xbc\x0d" + bytes([counter & 0xFF]) + pack
    return b"\xdd" + bytes([len(body)]) + body


# --- Files --------------------------------------------------------------------------------------


class PcapWriter:
    """A libpcap file (microsecond timestamps), written in large chunks."""

    def __init__(self, fh: BinaryIO, linktype: int, snaplen: int = 262144) -> None:
        self.fh = fh
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, snaplen, linktype))
        self._parts: list[bytes] = []
        self._size = 0

    def write(self, ts: float, frame: bytes, iface: int = 0) -> None:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self._parts.append(_REC.pack(sec, usec, len(frame), len(frame)))
        self._parts.append(frame)
        self._size += len(frame) + 16
        if self._size > 1 << 22:
            self.flush()

    def flush(self) -> None:
        self.fh.write(b"".join(self._parts))
        self._parts.clear()
        self._size = 0

    def close(self) -> None:
        self.flush()


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\x00" * (-len(value) % 4)


def _block(kind: int, body: bytes) -> bytes:
    size = 12 + len(body)
    return struct.pack("<II", kind, size) + body + struct.pack("<I", size)


class PcapngWriter(PcapWriter):
    """A pcapng file: a section header, one interface description per `(linktype, name,
    tsresol)`, enhanced packet blocks, and interface statistics at the end."""

    def __init__(self, fh: BinaryIO, interfaces: Sequence[tuple[int, str, int]]) -> None:
        self.fh = fh
        self._parts = []
        self._size = 0
        shb = (
            struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _opt(4, b"dronewatch bench") + _opt(0, b"")
        )
        fh.write(_block(0x0A0D0D0A, shb))
        self._units: list[int] = []
        self._counts: list[int] = []
        self._last = 0.0
        for linktype, name, tsresol in interfaces:
            opts = _opt(2, name.encode()) + _opt(9, bytes([tsresol])) + _opt(0, b"")
            fh.write(_block(1, struct.pack("<HHI", linktype, 0, 262144) + opts))
            self._units.append(10**tsresol)
            self._counts.append(0)

    def write(self, ts: float, frame: bytes, iface: int = 0) -> None:
        units = round(ts * self._units[iface])
        self._last = max(self._last, ts)
        n = len(frame)
        body = struct.pack("<IIIII", iface, units >> 32, units & 0xFFFFFFFF, n, n)
        self._parts.append(_block(6, body + frame + b"\x00" * (-n % 4)))
        self._counts[iface] += 1
        self._size += n + 32
        if self._size > 1 << 22:
            self.flush()

    def close(self) -> None:
        """Write an interface statistics block per interface (packets received, none dropped)."""
        for iface, (units, count) in enumerate(zip(self._units, self._counts, strict=True)):
            stamp = round(self._last * units)
            opts = _opt(4, struct.pack("<Q", count)) + _opt(5, struct.pack("<Q", 0)) + _opt(0, b"")
            body = struct.pack("<III", iface, stamp >> 32, stamp & 0xFFFFFFFF) + opts
            self._parts.append(_block(5, body))
        self.flush()
