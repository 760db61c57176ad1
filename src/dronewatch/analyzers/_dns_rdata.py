"""DNS record types: their IANA names, and each record's data as text, as Zeek's dns.log writes it.

`DNS_TYPE_NAMES` is the IANA "Resource Record (RR) TYPEs" registry (the DNS parameters,
RFC 6895), the one table of type mnemonics: the DNS analyzer names the type asked for, and the
types an UPDATE names, with it.

`render` writes one record of an answer section as Zeek's dns.log `answers` field shows it:
an address, a target name, or a short summary of the data (`TXT <len> <text>`,
`RRSIG <type covered> <signer>`, `DNSKEY <algorithm>`, `DS <algorithm> <digest type>`,
`SSHFP: <fingerprint hex>`...). The formats are those of Zeek's base DNS scripts, read off
their test baselines; the wire layouts are the RFCs' (named at each type). Types Zeek logs no
text for (HINFO, CAA, SVCB, HTTPS, OPT, TKEY, TSIG, NB) give None, and so does data too short
for its type; types not rendered here give `<unknown type=N>`, as Zeek writes them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from dronewatch.core.flow import ip_str

DNS_TYPE_NAMES: dict[int, str] = {
    1: "A",
    2: "NS",
    3: "MD",
    4: "MF",
    5: "CNAME",
    6: "SOA",
    7: "MB",
    8: "MG",
    9: "MR",
    10: "NULL",
    11: "WKS",
    12: "PTR",
    13: "HINFO",
    14: "MINFO",
    15: "MX",
    16: "TXT",
    17: "RP",
    18: "AFSDB",
    19: "X25",
    20: "ISDN",
    21: "RT",
    22: "NSAP",
    23: "NSAP-PTR",
    24: "SIG",
    25: "KEY",
    26: "PX",
    27: "GPOS",
    28: "AAAA",
    29: "LOC",
    30: "NXT",
    31: "EID",
    32: "NIMLOC",
    33: "SRV",
    34: "ATMA",
    35: "NAPTR",
    36: "KX",
    37: "CERT",
    38: "A6",
    39: "DNAME",
    40: "SINK",
    41: "OPT",
    42: "APL",
    43: "DS",
    44: "SSHFP",
    45: "IPSECKEY",
    46: "RRSIG",
    47: "NSEC",
    48: "DNSKEY",
    49: "DHCID",
    50: "NSEC3",
    51: "NSEC3PARAM",
    52: "TLSA",
    53: "SMIMEA",
    55: "HIP",
    56: "NINFO",
    57: "RKEY",
    58: "TALINK",
    59: "CDS",
    60: "CDNSKEY",
    61: "OPENPGPKEY",
    62: "CSYNC",
    63: "ZONEMD",
    64: "SVCB",
    65: "HTTPS",
    66: "DSYNC",
    67: "HHIT",
    68: "BRID",
    99: "SPF",
    100: "UINFO",
    101: "UID",
    102: "GID",
    103: "UNSPEC",
    104: "NID",
    105: "L32",
    106: "L64",
    107: "LP",
    108: "EUI48",
    109: "EUI64",
    128: "NXNAME",
    249: "TKEY",
    250: "TSIG",
    251: "IXFR",
    252: "AXFR",
    253: "MAILB",
    254: "MAILA",
    255: "ANY",  # the registry writes `*`; dronewatch keeps RFC 8482's name, as dig prints it
    256: "URI",
    257: "CAA",
    258: "AVC",
    259: "DOA",
    260: "AMTRELAY",
    261: "RESINFO",
    262: "WALLET",
    263: "CLA",
    264: "IPN",
    32768: "TA",
    32769: "DLV",
}
"""The IANA registry of resource record types: value to mnemonic (unassigned, private-use and
reserved values are not in it; `dns_type_name` writes those `TYPE<n>`, RFC 3597)."""

TYPE_A = 1
TYPE_NS = 2
TYPE_CNAME = 5
TYPE_SOA = 6
TYPE_WKS = 11
TYPE_PTR = 12
TYPE_MX = 15
TYPE_TXT = 16
TYPE_AAAA = 28
TYPE_LOC = 29
TYPE_SRV = 33
TYPE_NAPTR = 35
TYPE_DS = 43
TYPE_SSHFP = 44
TYPE_RRSIG = 46
TYPE_NSEC = 47
TYPE_DNSKEY = 48
TYPE_NSEC3 = 50
TYPE_NSEC3PARAM = 51
TYPE_SPF = 99
TYPE_ANY = 255
TYPE_BIND_SIGNING = 65534
"""BIND 9's private type for the state of zone signing (its default `sig-signing-type`)."""

NOT_LOGGED = frozenset({13, 32, 41, 64, 65, 249, 250, 257})
"""HINFO, NIMLOC (NetBIOS NB), OPT, SVCB, HTTPS, TKEY, TSIG and CAA: Zeek reads them, but its
dns.log writes no answer for them."""

ReadName = Callable[[int], str]
"""Reads the (possibly compressed) name at an offset of the message, as sent (case kept, no
trailing dot); raises `DecodeError` when it does not parse."""

_U16 = struct.Struct(">H")
_LOC_LEN = 16  # RFC 1876 2: version, size, precisions, latitude, longitude, altitude
_RRSIG_FIXED = 18  # RFC 4034 3.1: type covered .. key tag, before the signer's name
_SOA_NUMBERS = 20  # RFC 1035 3.3.13: serial, refresh, retry, expire, minimum
_NSEC3_FIXED = 5  # RFC 5155 3.2 and 4.2: hash algorithm, flags, iterations, salt length


def render(
    rtype: int, owner: str, data: bytes, start: int, end: int, read_name: ReadName
) -> str | None:
    """A record of type `rtype` owned by `owner`, whose data is `data[start:end]` (`data` is the
    whole message, for compressed names), as Zeek's dns.log writes it among the answers.

    Returns "" where Zeek counts the record as an answer but writes no text for it (WKS, a TXT
    without strings, a name record pointing at the root), None where it logs nothing (the types
    of `NOT_LOGGED`, data too short or too long for its type). Names are lower case, as Zeek
    writes them (the replacement of a NAPTR record aside). Raises only `DecodeError` (from
    `read_name`)."""
    size = end - start
    if size <= 0 or rtype in NOT_LOGGED:
        return None
    if rtype == TYPE_A:
        return ip_str(data[start:end]) if size == 4 else None
    if rtype == TYPE_AAAA:
        return ip_str(data[start:end]) if size == 16 else None
    if rtype in (TYPE_NS, TYPE_CNAME, TYPE_PTR):
        return read_name(start).lower()
    if rtype == TYPE_MX:  # RFC 1035 3.3.9: preference, exchange
        return read_name(start + 2).lower() if size > 2 else None
    if rtype == TYPE_SRV:  # RFC 2782: priority, weight, port, target
        return read_name(start + 6).lower() if size > 6 else None
    if rtype == TYPE_SOA:  # the primary server's name
        return _soa(data, start, end, read_name)
    if rtype == TYPE_WKS:
        return ""
    if rtype in (TYPE_TXT, TYPE_SPF):
        strings = _strings(data, start, end)
        if strings is None:
            return None
        word = "TXT" if rtype == TYPE_TXT else "SPF"
        return " ".join(f"{word} {len(s)} {_text(s)}" for s in strings)
    if rtype == TYPE_NAPTR:
        return _naptr(data, start, end, read_name)
    if rtype == TYPE_RRSIG:  # RFC 4034 3.1: type covered .. key tag, signer's name, signature
        if size <= _RRSIG_FIXED:
            return None
        signer = read_name(start + _RRSIG_FIXED).lower()
        return f"RRSIG {_U16.unpack_from(data, start)[0]} {signer or '<Root>'}"
    if rtype == TYPE_DNSKEY:  # RFC 4034 2.1: flags, protocol, algorithm, public key
        return f"DNSKEY {data[start + 3]}" if size >= 4 else None
    if rtype == TYPE_DS:  # RFC 4034 5.1: key tag, algorithm, digest type, digest
        return f"DS {data[start + 2]} {data[start + 3]}" if size >= 4 else None
    if rtype == TYPE_NSEC:  # RFC 4034 4.1: next owner name, type bitmaps
        return f"NSEC {owner.lower()} {read_name(start).lower()}"
    if rtype == TYPE_NSEC3:
        return "NSEC3" if size >= _NSEC3_FIXED else None
    if rtype == TYPE_NSEC3PARAM:
        return "NSEC3PARAM" if size >= _NSEC3_FIXED else None
    if rtype == TYPE_SSHFP:  # RFC 4255 3.1: algorithm, fingerprint type, fingerprint
        return f"SSHFP: {data[start + 2 : end].hex()}" if size >= 2 else None
    if rtype == TYPE_LOC:  # RFC 1876 2: version, size, horizontal and vertical precision...
        if size != _LOC_LEN:
            return None
        return f"LOC:  {data[start + 1]} {data[start + 2]} {data[start + 3]}"
    if rtype == TYPE_BIND_SIGNING:  # algorithm, key id, removal flag, complete flag
        return "BIND9 signing signal" if size >= 5 else None
    return f"<unknown type={rtype}>"


def _strings(data: bytes, start: int, end: int) -> list[bytes] | None:
    """The <character-string>s of TXT/SPF data (RFC 1035 3.3); None when one runs past the end."""
    out: list[bytes] = []
    off = start
    while off < end:
        n = data[off]
        if off + 1 + n > end:
            return None
        out.append(data[off + 1 : off + 1 + n])
        off += 1 + n
    return out


def _text(raw: bytes) -> str:
    """A character-string as text: UTF-8, other bytes kept as `\\xNN` (as names are)."""
    return raw.decode("utf-8", "backslashreplace")


def _soa(data: bytes, start: int, end: int, read_name: ReadName) -> str | None:
    """The primary server's name of SOA data (RFC 1035 3.3.13), when the data is all there."""
    off = start
    for _ in range(2):  # past mname and rname, to check that the five numbers follow
        off = _skip_name(data, off, end)
        if off < 0:
            return None
    return read_name(start).lower() if end - off >= _SOA_NUMBERS else None


def _skip_name(data: bytes, off: int, end: int) -> int:
    """The offset just past the wire name at `off` (a pointer ends it), or -1 past `end`."""
    while off < end:
        n = data[off]
        if n == 0:
            return off + 1
        if n & 0xC0:
            return off + 2 if off + 2 <= end else -1
        off += 1 + n
    return -1


def _naptr(data: bytes, start: int, end: int, read_name: ReadName) -> str | None:
    """NAPTR data (RFC 3403 4.1) as Zeek writes it: `NAPTR <order> <preference> <flags>
    <services> <regexp> <replacement>`, the last two only when not empty."""
    if end - start < 4:
        return None
    order, preference = struct.unpack_from(">HH", data, start)
    off = start + 4
    fields: list[str] = []
    for _ in range(3):  # flags, services, regexp
        if off >= end or off + 1 + data[off] > end:
            return None
        n = data[off]
        fields.append(_text(data[off + 1 : off + 1 + n]))
        off += 1 + n
    if off >= end:
        return None
    flags, services, regexp = fields
    tail = " ".join(part for part in (regexp, read_name(off)) if part)
    return f"NAPTR {order} {preference} {flags} {services} {tail}"


__all__ = [
    "DNS_TYPE_NAMES",
    "NOT_LOGGED",
    "TYPE_ANY",
    "ReadName",
    "render",
]
