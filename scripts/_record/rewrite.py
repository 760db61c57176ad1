"""Post-processing of recorded files: merge, address rewrite (file only), checksum fix-up."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from pathlib import Path

from util import run


def count(path: Path) -> int:
    """Records in a classic pcap file."""
    data = path.read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    n, pos = 0, 24
    while pos + 16 <= len(data):
        pos += 16 + struct.unpack_from(endian + "I", data, pos + 8)[0]
        n += 1
    return n


def merge(inputs: list[Path], out: Path) -> None:
    """Merge per-interface captures (same link type) chronologically into one pcap."""
    run(["mergecap", "-F", "pcap", "-w", str(out), *map(str, inputs)])


def fixcsum(src: Path, dst: Path) -> None:
    """Recompute IP/TCP/UDP checksums (loopback leaves them to an offload that never runs)."""
    run(["tcprewrite", "--fixcsum", f"--infile={src}", f"--outfile={dst}"])


def pnat(src: Path, dst: Path, mapping: Mapping[str, str]) -> None:
    """tcprewrite --pnat of the IP headers, with checksums fixed."""
    spec = ",".join(f"{a}:{b}" for a, b in mapping.items())
    run(["tcprewrite", f"--pnat={spec}", "--fixcsum", f"--infile={src}", f"--outfile={dst}"])


def _skip_name(msg: bytes, pos: int) -> int:
    while True:
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:
            return pos + 2
        pos += 1 + n


def dns_a_offsets(msg: bytes) -> list[int]:
    """Offsets of the 4-byte RDATA of every A record in a DNS message."""
    qd, an, ns, ar = struct.unpack_from("!4H", msg, 4)
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    out = []
    for _ in range(an + ns + ar):
        pos = _skip_name(msg, pos)
        rtype, _rclass, _ttl, rdlen = struct.unpack_from("!HHIH", msg, pos)
        pos += 10
        if rtype == 1 and rdlen == 4:
            out.append(pos)
        pos += rdlen
    return out


def dns_answers(src: Path, dst: Path, mapping: Mapping[str, str]) -> int:
    """Apply MAPPING to the A records of DNS answers (UDP/TCP source port 53) of an Ethernet
    pcap, so the names still resolve to the addresses the rewritten packets go to. Checksums
    are left to the tcprewrite --fixcsum pass that follows. Returns the records changed."""
    import dpkt

    nets = [(ipaddress.ip_network(a), ipaddress.ip_network(b)) for a, b in mapping.items()]
    changed = 0
    data = src.read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    (linktype,) = struct.unpack_from(endian + "I", data, 20)
    if linktype != 1:
        raise ValueError(f"{src}: link type {linktype}, expected Ethernet")
    out = bytearray(data[:24])  # records are copied as they are, only DNS A rdata changes
    pos = 24
    while pos + 16 <= len(data):
        incl = struct.unpack_from(endian + "IIII", data, pos)[2]
        frame = bytearray(data[pos + 16 : pos + 16 + incl])
        try:
            eth = dpkt.ethernet.Ethernet(bytes(frame))
            ip = eth.data
            if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, (dpkt.udp.UDP, dpkt.tcp.TCP)):
                l4 = ip.data
                if l4.sport == 53 and l4.data:
                    tcp = isinstance(l4, dpkt.tcp.TCP)
                    base = 14 + ip.hl * 4 + (l4.off * 4 + 2 if tcp else 8)
                    msg = bytes(frame[base:])
                    for off in dns_a_offsets(msg):
                        addr = ipaddress.ip_address(msg[off : off + 4])
                        for a, b in nets:
                            if addr in a:
                                new = b.network_address + (int(addr) - int(a.network_address))
                                frame[base + off : base + off + 4] = new.packed
                                changed += 1
        except (dpkt.UnpackError, IndexError, struct.error, ValueError):
            pass
        out += data[pos : pos + 16] + frame
        pos += 16 + incl
    dst.write_bytes(bytes(out))
    return changed
