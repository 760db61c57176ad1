"""DHCP on UDP 67/68: who a device says it is when it joins the network.

A client's DISCOVER and REQUEST carry its hostname (option 12), vendor class (option 60, e.g.
`android-dhcp-13`) and the options it asks for (55), which together name and fingerprint the
ground station; the server's OFFER and ACK carry the address it gets. Messages are read with
`dpkt.dhcp` (RFC 2131 layout, RFC 2132 options).

Every client that has no address yet broadcasts from 0.0.0.0:68 to 255.255.255.255:67, so the
clients of a network share one flow: once it has carried a DHCP message the analyzer follows it
to its end (`Flow.follow`), past the engine's first inspected packets, and writes every message.
A flow on the DHCP ports that carries no DHCP (`DHCP_MAX_FAILURES` undecodable datagrams and no
valid one) is given up; a DHCP flow is read until it ends (the engine's idle and active
timeouts bound it).
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass
from typing import ClassVar

from dronewatch.core.flow import IP_PROTO_UDP, Flow, Packet, ip_str, mac_str
from dronewatch.core.hooks import ConnRecord, Context, conn
from dronewatch.exceptions import DecodeError

logger = logging.getLogger(__name__)

DHCP_SERVER_PORT = 67
DHCP_CLIENT_PORT = 68
DHCP_OP_REQUEST = 1  # RFC 2131 op; option codes below from RFC 2132
DHCP_OPT_HOSTNAME = 12
DHCP_OPT_REQ_IP = 50
DHCP_OPT_MSGTYPE = 53
DHCP_OPT_SERVER_ID = 54
DHCP_OPT_PARAM_REQ = 55
DHCP_OPT_VENDOR_ID = 60
_DHCP_MAGIC = 0x63825363  # RFC 2131 3: 99.130.83.99
_HTYPE_ETHERNET = 1
_DHCP_PORTS = (DHCP_SERVER_PORT, DHCP_CLIENT_PORT)  # client 68 to server 67, or relay 67 to 67
DHCP_MAX_FAILURES = 4
"""Undecodable datagrams on a DHCP-port flow, with no valid message yet, before giving it up."""

DHCP_MSG_TYPE_NAMES: dict[int, str] = {
    1: "DISCOVER",
    2: "OFFER",
    3: "REQUEST",
    4: "DECLINE",
    5: "ACK",
    6: "NAK",
    7: "RELEASE",
    8: "INFORM",
    9: "FORCERENEW",
    10: "LEASEQUERY",
    11: "LEASEUNASSIGNED",
    12: "LEASEUNKNOWN",
    13: "LEASEACTIVE",
}
"""Option 53 message types (RFC 2132 9.6, RFC 3203, RFC 4388)."""
_ADDRESS_GIVING = frozenset({2, 5})  # OFFER and ACK carry the client's address in yiaddr


def dhcp_msg_type_name(msg_type: int) -> str:
    """The name of an option-53 message type, or `TYPE<n>`."""
    return DHCP_MSG_TYPE_NAMES.get(msg_type) or f"TYPE{msg_type}"


@dataclass(frozen=True, slots=True)
class DhcpMessage:
    """The fields of a DHCP message the analyzer uses."""

    op: int
    """1 for a client request (BOOTREQUEST), 2 for a server reply."""
    xid: int
    """Transaction id chosen by the client."""
    htype: int
    chaddr: bytes
    """Client hardware address, cut to its declared length."""
    yiaddr: bytes
    """Address the server gives the client (4 bytes)."""
    options: tuple[tuple[int, bytes], ...]
    """Options in order, as (code, value)."""

    def option(self, code: int) -> bytes | None:
        """The value of the first option `code`, or None."""
        for key, value in self.options:
            if key == code:
                return value
        return None

    @property
    def msg_type(self) -> int | None:
        """Option 53; None for plain BOOTP."""
        value = self.option(DHCP_OPT_MSGTYPE)
        return value[0] if value else None


def parse_dhcp(data: bytes) -> DhcpMessage:
    """Decode a DHCP message.

    Raises:
        DecodeError: too short, no DHCP magic cookie, or a broken option list.
    """
    import dpkt  # on the first DHCP message: a capture without one starts without dpkt

    try:
        msg = dpkt.dhcp.DHCP(data)
        if msg.magic != _DHCP_MAGIC:
            raise DecodeError(f"no DHCP magic cookie ({msg.magic:#010x})")
        options = tuple((int(code), bytes(value)) for code, value in msg.opts)
        return DhcpMessage(
            op=int(msg.op),
            xid=int(msg.xid),
            htype=int(msg.hrd),
            chaddr=bytes(msg.chaddr),
            yiaddr=struct.pack(">I", msg.yiaddr),
            options=options,
        )
    except (dpkt.Error, struct.error, IndexError, ValueError, TypeError) as exc:
        raise DecodeError(f"bad DHCP message: {exc}") from exc


def _text(value: bytes | None) -> str | None:
    """An option's text, NUL padding removed; None when absent or empty."""
    if value is None:
        return None
    text = value.rstrip(b"\x00").decode("utf-8", "backslashreplace")
    return text or None


def _address(value: bytes | None) -> str | None:
    """An IPv4 address option as text; None when absent or not 4 bytes."""
    return ip_str(value) if value is not None and len(value) == 4 else None


@dataclass(frozen=True, slots=True)
class DhcpRecord(ConnRecord):
    """One DHCP message."""

    log: ClassVar[str] = "dhcp"
    trans_id: int
    """Transaction id (xid), shared by the messages of one exchange."""
    msg_type: str | None = None
    """DISCOVER, OFFER, REQUEST, ACK, NAK, RELEASE, INFORM...; None for plain BOOTP."""
    client_mac: str | None = None
    """Client hardware address (chaddr) of an Ethernet/Wi-Fi client."""
    hostname: str | None = None
    """Option 12."""
    vendor_class: str | None = None
    """Option 60 (`android-dhcp-13`, `MSFT 5.0`, `dhcpcd-9.4.1:Linux...`)."""
    requested_ip: str | None = None
    """Option 50: the address the client asks for."""
    assigned_ip: str | None = None
    """yiaddr of an OFFER or ACK: the address the server gives."""
    server_id: str | None = None
    """Option 54: the server's address."""
    param_list: tuple[int, ...] = ()
    """Option 55: the option codes the client asks for, in its order (a client fingerprint)."""


class DhcpAnalyzer:
    """Decode DHCP messages on UDP 67/68 into dhcp.jsonl records."""

    name = "dhcp"
    wants_ports = frozenset(_DHCP_PORTS)
    """The ports `wants` reads (`WantsHook`)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._failures: dict[str, int] = {}
        """Undecodable datagrams of flows with no valid message yet, by flow.uid; flow_end."""

    def wants(self, flow: Flow) -> bool:
        """Only UDP flows between the DHCP ports."""
        return (
            flow.proto == IP_PROTO_UDP and flow.orig_p in _DHCP_PORTS and flow.resp_p in _DHCP_PORTS
        )

    def packet(self, flow: Flow, pkt: Packet) -> None:
        """Write one record per DHCP message; put a client's hostname and vendor on its flow."""
        if flow.proto != IP_PROTO_UDP or not pkt.payload:
            return
        if flow.orig_p not in _DHCP_PORTS or flow.resp_p not in _DHCP_PORTS:
            return
        try:
            msg = parse_dhcp(pkt.payload)
        except DecodeError as exc:
            logger.debug("%s: undecodable DHCP message: %s", flow.uid, exc)
            if flow.service != "dhcp":
                failures = self._failures[flow.uid] = self._failures.get(flow.uid, 0) + 1
                if failures >= DHCP_MAX_FAILURES:
                    flow.decline(self.name)  # something else uses the DHCP ports
                    del self._failures[flow.uid]
            return
        if flow.service != "dhcp":
            flow.service = "dhcp"
            flow.follow(self.name)  # every message of the flow, past the inspected packets
            self._failures.pop(flow.uid, None)
        msg_type = msg.msg_type
        hostname = _text(msg.option(DHCP_OPT_HOSTNAME))
        vendor_class = _text(msg.option(DHCP_OPT_VENDOR_ID))
        if msg.op == DHCP_OP_REQUEST:  # the client's own words; a reply describes it only
            if hostname:
                flow.add_meta("dhcp_hostname", hostname)
            if vendor_class:
                flow.add_meta("dhcp_vendor_class", vendor_class)
        mac = mac_str(msg.chaddr) if msg.htype == _HTYPE_ETHERNET else ""
        params = msg.option(DHCP_OPT_PARAM_REQ)
        assigned = msg.yiaddr if msg_type in _ADDRESS_GIVING and any(msg.yiaddr) else None
        self.ctx.emit(
            DhcpRecord(
                ts=pkt.ts,
                **conn(flow),
                trans_id=msg.xid,
                msg_type=dhcp_msg_type_name(msg_type) if msg_type is not None else None,
                client_mac=mac or None,
                hostname=hostname,
                vendor_class=vendor_class,
                requested_ip=_address(msg.option(DHCP_OPT_REQ_IP)),
                assigned_ip=ip_str(assigned) if assigned is not None else None,
                server_id=_address(msg.option(DHCP_OPT_SERVER_ID)),
                param_list=tuple(params) if params else (),
            )
        )

    def flow_end(self, flow: Flow) -> None:
        """Drop the flow's state."""
        self._failures.pop(flow.uid, None)


__all__ = [
    "DHCP_MAX_FAILURES",
    "DHCP_MSG_TYPE_NAMES",
    "DhcpAnalyzer",
    "DhcpMessage",
    "DhcpRecord",
    "dhcp_msg_type_name",
    "parse_dhcp",
]
