"""IPv6 Neighbor Discovery (RFC 4861): which global addresses are on the capture's link.

Neighbor Discovery messages never cross a router (3.1): their source is an address of the link.
Router Advertisements name the link's prefixes too (a Prefix Information option with the
on-link or autonomous flag, 4.6.2), and a Duplicate Address Detection solicitation the address
its sender is taking (RFC 4862 5.4.2). What a proxy may say for addresses beyond the link (an
advertisement's target, RFC 4389) is not taken. What they name goes to the run's on-link table
(`Context.on_link`, `dronewatch.geoip.onlink`), which the monitor reads when a flow ends: a
phone on an IPv6 network sends from a global address, and that end of its flows is then local,
so what it sends to the internet counts as having left it.

The analyzer follows every Neighbor Discovery flow to its end (they are few and small), and in a
process sharing a capture reads the messages of the others' flows too (`facts`), so every
process learns what one process would, at the same packet. It writes no record of its own; the
capture record lists what was learned (`on_link`). The hop limit of 255 that RFC 4861 asks a
receiver to check (a message from off the link has less) is not read: the decoder keeps no hop
limit.
"""

from __future__ import annotations

from dronewatch.core.flow import Flow, Packet
from dronewatch.core.hooks import Context
from dronewatch.geoip.onlink import MIN_PREFIX, learn_host

IP_PROTO_ICMP6 = 58
ND_ROUTER_ADVERT = 134
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
ND_TYPES = frozenset({133, ND_ROUTER_ADVERT, ND_NEIGHBOR_SOLICIT, ND_NEIGHBOR_ADVERT, 137})
"""The Neighbor Discovery message types (router solicitation to redirect, RFC 4861 4): the
ICMPv6 types whose flows this analyzer reads (as ports, the engine keys ICMP flows by type)."""

RA_FIXED = 12
"""A Router Advertisement's fields after the ICMPv6 header (hop limit, flags, router lifetime,
reachable time, retransmission timer), before its options (4.2)."""
TARGET_AT = 4
"""Where a solicitation's target address starts after the ICMPv6 header (after 4 reserved
bytes, 4.3)."""
UNSPECIFIED = bytes(16)
OPT_PREFIX_INFO = 3
PREFIX_ON_LINK = 0x80
PREFIX_AUTONOMOUS = 0x40


def kept(pkt: Packet) -> bool:
    """Whether a receiver keeps the message, as far as the packet shows (RFC 4861 6.1 and 7.1.1;
    the hop limit of 255 is not kept by the decoder): ICMP code 0, a router advertisement from a
    link-local address, a solicitation or advertisement long enough for its target."""
    if pkt.dport != 0:  # the decoder's ICMP "port": the code
        return False
    kind = pkt.sport
    if kind == ND_ROUTER_ADVERT:
        src = pkt.src
        link_local = len(src) == 16 and src[0] == 0xFE and src[1] & 0xC0 == 0x80
        return link_local and pkt.payload_len >= RA_FIXED
    if kind == ND_NEIGHBOR_SOLICIT or kind == ND_NEIGHBOR_ADVERT:
        return pkt.payload_len >= TARGET_AT + 16
    return True


def learn(ctx: Context, pkt: Packet) -> None:
    """What one Neighbor Discovery message says is on the link, into `ctx.on_link`: its source
    (a node sends them from an address of its own on the link: they never cross a router, 3.1),
    the target of a Duplicate Address Detection solicitation (sent from the unspecified address
    for the sender's own tentative address, RFC 4862 5.4.2), and the prefixes of a router
    advertisement. Not the target of another solicitation or of an advertisement, nor a unicast
    destination: a proxy (RFC 4389) answers for addresses beyond the link, and a host that
    takes an address for on-link by mistake solicits it; taking those for local would hide what
    goes to them. A message a receiver must discard (`kept`) says nothing; one cut short says
    what it holds whole; a malformed option ends the walk (4.6: a zero length is invalid)."""
    if not kept(pkt):
        return
    on_link, local = ctx.on_link, ctx.local
    src, kind, body = pkt.src, pkt.sport, pkt.payload
    learn_host(on_link, local, src)  # never the unspecified address: local already
    if kind == ND_NEIGHBOR_SOLICIT and src == UNSPECIFIED:
        target = body[TARGET_AT : TARGET_AT + 16]
        if len(target) == 16:  # not cut by the snap length
            learn_host(on_link, local, target)
        return
    if kind != ND_ROUTER_ADVERT:
        return
    pos = RA_FIXED
    while pos + 2 <= len(body):
        size = body[pos + 1] * 8
        if size == 0 or pos + size > len(body):
            return
        if body[pos] == OPT_PREFIX_INFO and size == 32:
            length, flags = body[pos + 2], body[pos + 3]
            valid = int.from_bytes(body[pos + 4 : pos + 8], "big")
            prefix = body[pos + 16 : pos + 32]
            # A prefix too short is refused and said (`OnLink.add_prefix`), whatever it is.
            if (
                flags & (PREFIX_ON_LINK | PREFIX_AUTONOMOUS)
                and valid
                and (length < MIN_PREFIX or local.reason(prefix) is None)
            ):
                on_link.add_prefix(prefix, length)
        pos += size


class NdpAnalyzer:
    """Learn the on-link IPv6 prefixes and addresses Neighbor Discovery names (`learn`)."""

    name = "ndp"
    wants_ports = ND_TYPES
    """The ports `wants` reads (`WantsHook`): an ICMPv6 flow's are its message types."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def wants(self, flow: Flow) -> bool:
        """ICMPv6 flows of Neighbor Discovery messages."""
        return flow.proto == IP_PROTO_ICMP6 and (flow.orig_p in ND_TYPES or flow.resp_p in ND_TYPES)

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Learn from the message, and follow the flow: every later message of it too."""
        if pkt.proto != IP_PROTO_ICMP6 or pkt.sport not in ND_TYPES or pkt.bad_checksum:
            return
        if not flow.followers or self.name not in flow.followers:
            flow.follow(self.name)
        learn(self.ctx, pkt)

    def facts(self, pkt: Packet) -> None:
        """A message of another process's flow (`analyze --workers`): learned alike."""
        if pkt.proto == IP_PROTO_ICMP6 and pkt.sport in ND_TYPES and not pkt.bad_checksum:
            learn(self.ctx, pkt)
