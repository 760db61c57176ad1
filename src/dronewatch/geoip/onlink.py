"""The addresses a capture itself shows to be on the capture's link.

A phone on an IPv6 network sends from global addresses (SLAAC, RFC 4862, and temporary ones,
RFC 8981), and a site may give its hosts public IPv4 addresses: no fixed table of local ranges
knows them, so without this a phone's flows to the internet would run between two public
addresses and nothing would count as having left it. The link's own protocols say on the wire
which addresses are on it, and the analyzers read them into this table:

- IPv6 Neighbor Discovery (RFC 4861, `dronewatch.analyzers.ndp`): its messages never cross a
  router (3.1), so their source is an address of a node on the link; a Duplicate Address
  Detection solicitation names the address its sender is taking (RFC 4862 5.4.2); a Router
  Advertisement's Prefix Information option with the on-link (L) or autonomous (A) flag names
  the link's prefix (4.6.2): every address in it is a host of the link;
- ARP (RFC 826, read by the decoder, `Decoder.on_arp`): a request's sender address is its
  sender's own, and a probe's target (RFC 5227, from 0.0.0.0) the address its sender is taking.

What a proxy may say for addresses beyond the link is not taken (a Neighbor Advertisement's
target, RFC 4389; an ARP reply, proxy ARP), nor an address a host asks for (another
solicitation's target, an ARP request's): a host that takes an address for on-link by mistake
asks for it, and taking those for local would hide what goes to them.

The table is per run (`Context.on_link`): what one capture teaches never reaches another. It
is bounded, and refuses a prefix shorter than `MIN_PREFIX` (a rogue or mistaken advertisement
of ::/1 would otherwise make the whole internet local and hide everything that leaves).
"""

from __future__ import annotations

import ipaddress
import logging

from dronewatch.geoip.local import LocalNets

logger = logging.getLogger(__name__)

MIN_PREFIX = 48
"""The shortest prefix taken from a Router Advertisement: a site's whole allocation (RFC 6177);
an on-link prefix is a /64 in practice (RFC 4862 5.5.3 with RFC 4291's 64-bit interface ids)."""

MAX_HOSTS = 4096
"""Addresses learned one by one, at most: past it the one named least recently goes (a live
sensor runs for weeks while phones change their temporary addresses every day; the prefixes
routers advertise cover those anyway)."""

MAX_PREFIXES = 64
"""Prefixes learned from Router Advertisements, at most."""


class OnLink:
    """The IPv6 prefixes, and the IPv6 and IPv4 addresses, the link's protocols showed on the
    capture's link."""

    __slots__ = ("_hosts", "_prefixes", "_masks", "refused", "full")

    def __init__(self) -> None:
        self._hosts: dict[bytes, None] = {}
        """The addresses, least recently named first."""
        self._prefixes: dict[tuple[int, int], int] = {}
        """(network as an integer, prefix length) -> mask, in the order learned."""
        self._masks: tuple[tuple[int, int], ...] = ()
        """(network, mask) of each prefix, for `__contains__`."""
        self.refused: dict[str, int] = {}
        """Advertised prefixes too short to be taken (`MIN_PREFIX`), CIDR text -> times."""
        self.full = 0
        """Addresses let go and prefixes not taken because the table was full."""

    def __bool__(self) -> bool:
        return bool(self._hosts or self._prefixes)

    def __contains__(self, addr: bytes) -> bool:
        """Whether the address (4 or 16 bytes) is on the link as far as the capture showed so
        far."""
        if addr in self._hosts:
            return True
        if self._masks and len(addr) == 16:
            n = int.from_bytes(addr, "big")
            for net, mask in self._masks:
                if n & mask == net:
                    return True
        return False

    def add_host(self, addr: bytes) -> None:
        """An address Neighbor Discovery named: it is on the link."""
        hosts = self._hosts
        if addr in hosts:
            del hosts[addr]  # named again: the most recent now
        elif self._masks and len(addr) == 16 and self._in_prefix(addr):
            return
        elif len(hosts) >= MAX_HOSTS:
            del hosts[next(iter(hosts))]
            self.full += 1
        hosts[addr] = None

    def add_prefix(self, prefix: bytes, length: int) -> bool:
        """A Router Advertisement's on-link or autonomous prefix; False when refused (too short,
        or the table full)."""
        if not MIN_PREFIX <= length <= 128 or len(prefix) != 16:
            text = f"{ipaddress.IPv6Address(prefix)}/{length}" if len(prefix) == 16 else "?"
            if text not in self.refused:
                logger.warning(
                    "a router advertisement names %s on the link: shorter than /%d, not taken "
                    "(a rogue or mistaken advertisement would make every address local)",
                    text,
                    MIN_PREFIX,
                )
            self.refused[text] = self.refused.get(text, 0) + 1
            return False
        mask = ((1 << length) - 1) << (128 - length)
        net = int.from_bytes(prefix, "big") & mask
        if (net, length) in self._prefixes:
            return True
        if len(self._prefixes) >= MAX_PREFIXES:
            self.full += 1
            return False
        self._prefixes[net, length] = mask
        self._masks = (*self._masks, (net, mask))
        return True

    def cidrs(self) -> tuple[str, ...]:
        """What was learned, as CIDR text: the prefixes in the order learned, then the
        addresses not in any of them (as /32 or /128), sorted."""
        nets = tuple(f"{ipaddress.IPv6Address(net)}/{length}" for net, length in self._prefixes)
        hosts = sorted(h for h in self._hosts if len(h) == 4 or not self._in_prefix(h))
        return nets + tuple(f"{ipaddress.ip_address(h)}/{len(h) * 8}" for h in hosts)

    def _in_prefix(self, addr: bytes) -> bool:
        n = int.from_bytes(addr, "big")
        return any(n & mask == net for net, mask in self._masks)


def learn_host(on_link: OnLink, local: LocalNets, addr: bytes) -> None:
    """An address the link's protocols showed on the link, into `on_link` unless it is local
    already (private, link-local, multicast, unspecified...: `local`)."""
    if len(addr) in (4, 16) and local.reason(addr) is None:
        on_link.add_host(addr)


SHOWN = 4
"""Prefixes and addresses a summary names (the capture record lists them all)."""


def on_link_text(cidrs: tuple[str, ...] | None, refused: dict[str, int] | None) -> str:
    """What a capture showed on its link, for a summary or a report: "" when nothing."""
    parts = []
    if cidrs:
        named = ", ".join(cidrs[:SHOWN])
        more = f" and {len(cidrs) - SHOWN:,} more" if len(cidrs) > SHOWN else ""
        parts.append(f"shown on the link by Neighbor Discovery or ARP, local: {named}{more}")
    if refused:
        parts.append(
            "router advertisements named "
            + ", ".join(sorted(refused))
            + f" on the link, not taken (shorter than /{MIN_PREFIX}: rogue or mistaken)"
        )
    return "; ".join(parts)
