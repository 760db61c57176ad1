"""Which addresses never leave the site: private, loopback, link-local, multicast, drone links.

The ranges are listed here on purpose instead of taken from `ipaddress.is_private`, which also
calls the documentation ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32),
benchmarking (198.18.0.0/15) and others "private": a flow to one of those does leave the device.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable

from dronewatch.exceptions import GeoIPError

logger = logging.getLogger(__name__)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

GEOIP_LOCAL_V4: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/32", "unspecified"),  # RFC 1122 3.2.1.3 "this host" (a DHCP client's source)
    ("10.0.0.0/8", "private"),  # RFC 1918
    ("100.64.0.0/10", "cgnat"),  # RFC 6598 shared address space (carrier-grade NAT)
    ("127.0.0.0/8", "loopback"),  # RFC 1122 3.2.1.3
    ("169.254.0.0/16", "link-local"),  # RFC 3927
    ("172.16.0.0/12", "private"),  # RFC 1918
    ("192.168.0.0/16", "private"),  # RFC 1918
    ("224.0.0.0/4", "multicast"),  # RFC 5771
    ("255.255.255.255/32", "broadcast"),  # RFC 919 limited broadcast
)
"""IPv4 ranges that are local, with the reason reported for them."""

GEOIP_LOCAL_V6: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified"),  # RFC 4291 2.5.2
    ("::1/128", "loopback"),  # RFC 4291 2.5.3
    ("fc00::/7", "ula"),  # RFC 4193 unique local addresses
    ("fe80::/10", "link-local"),  # RFC 4291 2.5.6
    ("ff00::/8", "multicast"),  # RFC 4291 2.7
)
"""IPv6 ranges that are local, with the reason reported for them."""

# IPv6 addresses that carry an IPv4 address in their last 32 bits, classified and located as that
# IPv4 address: IPv4-mapped (RFC 4291 2.5.5.2) and the NAT64 well-known prefix (RFC 6052 2.1),
# which a phone on an IPv6-only network with 464XLAT uses for every IPv4 destination.
_EMBEDDED_V4_PREFIXES = (
    bytes(10) + b"\xff\xff",
    b"\x00\x64\xff\x9b" + bytes(8),
)

_Entry = tuple[int, int, str]  # network as an integer, netmask as an integer, reason
_SCAN = object()
"""`LocalNets._v4_octet` of a first octet whose entries must be looked at one by one."""


class LocalNets:
    """Classifies addresses as local (with a reason) or not; extra subnets come from the policy."""

    __slots__ = ("_subnets", "_v4", "_v4_octet", "_v6")

    def __init__(self, extra: Iterable[str] = (), *, drone_link: Iterable[str] = ()) -> None:
        """Args:
        extra: more subnets (CIDR text) on the device's local network, reported as `configured`.
        drone_link: subnets of the drone/remote-controller link (e.g. 192.168.2.0/24), reported
            as `drone-link`. Both are checked before the built-in ranges, so their label wins.

        Raises GeoIPError for text that is not a network.
        """
        configured = [(net, "drone-link") for net in drone_link]
        configured += [(net, "configured") for net in extra]
        parsed: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
        for text, reason in configured:
            try:
                parsed.append((ipaddress.ip_network(str(text).strip(), strict=False), reason))
            except ValueError as exc:
                raise GeoIPError(f"local subnet {text!r}: {exc}") from None
        self._subnets = tuple((str(net), reason) for net, reason in parsed)
        builtin = [(ipaddress.ip_network(n), r) for n, r in GEOIP_LOCAL_V4 + GEOIP_LOCAL_V6]
        table: list[list[_Entry]] = [[] for _ in range(256)]
        v6: list[_Entry] = []
        for net, reason in parsed + builtin:
            entry = (int(net.network_address), int(net.netmask), reason)
            if net.version == 6:
                v6.append(entry)
                continue
            # Index IPv4 entries by first octet: most public addresses then match nothing at once.
            first = int(net.network_address) >> 24
            span = 1 << max(0, 8 - net.prefixlen)
            for octet in range(first, first + span):
                table[octet].append(entry)
        self._v4 = tuple(tuple(entries) for entries in table)
        self._v4_octet: tuple[str | None | object, ...] = tuple(
            (entries[0][2] if entries[0][1] & 0x00FFFFFF == 0 else _SCAN) if entries else None
            for entries in self._v4
        )
        """By first octet: the answer for every address in it, when its first entry spans the
        whole octet (10/8, 127/8, multicast) or it has none; else `_SCAN` (look at the entries)."""
        self._v6 = tuple(v6)

    @property
    def subnets(self) -> tuple[tuple[str, str], ...]:
        """The configured subnets as (CIDR, reason), in the order they are checked."""
        return self._subnets

    def reason(self, ip: str | bytes | IpAddress) -> str | None:
        """Why `ip` is local (`private`, `drone-link`...), or None for a public address.

        Packed 4- or 16-byte input takes the fast path (no parsing). Raises GeoIPError for input
        that is not an IP address.
        """
        if isinstance(ip, bytes):
            if len(ip) == 4:
                return self._reason_v4(ip)
            if len(ip) == 16:
                if ip[:12] in _EMBEDDED_V4_PREFIXES:
                    return self._reason_v4(ip[12:])
                n = int.from_bytes(ip, "big")
                for net, mask, reason in self._v6:
                    if n & mask == net:
                        return reason
                return None
            raise GeoIPError(f"{len(ip)}-byte address: a packed IP address has 4 or 16 bytes")
        if isinstance(ip, str):
            return self.reason(parse_address(ip).packed)
        return self.reason(ip.packed)

    def is_local(self, ip: str | bytes | IpAddress) -> bool:
        """True when `ip` never leaves the site (see `reason`)."""
        return self.reason(ip) is not None

    def _reason_v4(self, packed: bytes) -> str | None:
        whole = self._v4_octet[packed[0]]
        if whole is not _SCAN:
            return whole  # type: ignore[return-value]
        entries = self._v4[packed[0]]
        if entries:
            n = int.from_bytes(packed, "big")
            for net, mask, reason in entries:
                if n & mask == net:
                    return reason
        return None

    def __repr__(self) -> str:
        return f"LocalNets({', '.join(f'{n} ({r})' for n, r in self._subnets)})"


def parse_address(ip: str | bytes) -> IpAddress:
    """The address `ip` (text, or 4/16 packed bytes) denotes, with IPv4 unwrapped from IPv4-mapped
    and NAT64 (64:ff9b::/96) IPv6 addresses. Raises GeoIPError when it is not an IP address."""
    try:
        if isinstance(ip, bytes):
            if len(ip) not in (4, 16):
                raise ValueError(f"{len(ip)} bytes, not 4 or 16")
            addr = ipaddress.ip_address(ip)
        else:
            addr = ipaddress.ip_address(ip.strip())
    except ValueError:
        raise GeoIPError(f"not an IP address: {ip!r}") from None
    if addr.version == 6 and addr.packed[:12] in _EMBEDDED_V4_PREFIXES:
        return ipaddress.IPv4Address(addr.packed[12:])
    return addr


LOCAL_NAME_SUFFIXES: tuple[str, ...] = (
    "local",  # RFC 6762 multicast DNS
    "localhost",  # RFC 6761 6.3
    "home.arpa",  # RFC 8375 residential networks
    "lan",  # de facto home-router zone (OpenWrt, dnsmasq defaults)
    "localdomain",  # de facto (glibc and dnsmasq defaults)
    "internal",  # ICANN reserved for private use (2024)
    "intranet",  # RFC 6762 appendix G
    "home",  # RFC 6762 appendix G
    "corp",  # RFC 6762 appendix G
    "private",  # RFC 6762 appendix G
)
"""DNS zones whose names are answered on the local network, never by the internet."""
_LOCAL_ZONES = frozenset(LOCAL_NAME_SUFFIXES)
_LOCAL_ZONE_ENDINGS = tuple("." + zone for zone in LOCAL_NAME_SUFFIXES)
"""The zones, and the endings of the names in them (one `endswith` call tries them all)."""


def is_local_name(name: str, nets: LocalNets | None = None) -> bool:
    """Whether a DNS name stays on the local network: a single label (a host on the LAN), a name
    in a local zone (`LOCAL_NAME_SUFFIXES`), or the reverse name of a local address. A lookup of
    any other name is an attempt to reach off the device."""
    text = name.strip().rstrip(".").lower()
    if not text or "." not in text:
        return True
    if text in _LOCAL_ZONES or text.endswith(_LOCAL_ZONE_ENDINGS):
        return True
    addr = _reverse_address(text)
    return addr is not None and (nets or _BUILTIN).is_local(addr)


def _reverse_address(name: str) -> IpAddress | None:
    """The address a reverse-lookup name stands for (`4.3.2.1.in-addr.arpa`), or None; a partial
    reverse name (a zone such as `168.192.in-addr.arpa`) stands for its first address."""
    if name.endswith(".in-addr.arpa"):
        octets = name.removesuffix(".in-addr.arpa").split(".")[::-1]
        if not 1 <= len(octets) <= 4 or not all(o.isdigit() and int(o) < 256 for o in octets):
            return None
        return ipaddress.IPv4Address(".".join(octets + ["0"] * (4 - len(octets))))
    if name.endswith(".ip6.arpa"):
        nibbles = name.removesuffix(".ip6.arpa").split(".")[::-1]
        if not 1 <= len(nibbles) <= 32 or not all(
            len(n) == 1 and n in "0123456789abcdef" for n in nibbles
        ):
            return None
        return ipaddress.IPv6Address(int("".join(nibbles).ljust(32, "0"), 16))
    return None


_BUILTIN = LocalNets()


def builtin_local_v4() -> tuple[tuple[int, int], ...]:
    """`GEOIP_LOCAL_V4` as (network, netmask) integers (for the C walk: `fastpath.bulk`)."""
    nets = (ipaddress.IPv4Network(cidr) for cidr, _ in GEOIP_LOCAL_V4)
    return tuple((int(n.network_address), int(n.netmask)) for n in nets)


def builtin_local_nets() -> LocalNets:
    """The built-in local ranges alone (no user subnets), one shared table."""
    return _BUILTIN
