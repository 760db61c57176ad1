"""Linux AF_PACKET sockets: opening one on an interface, its filter, and PACKET_FANOUT.

Several processes that open the same interface with the same fanout group id share its packets
by flow hash (the kernel's symmetric hash of the addresses and ports), so both directions of a
flow reach the same process. A capture filter is compiled to classic BPF by tcpdump
(`tcpdump -ddd`) and attached to the socket before it is bound, so no unfiltered packet gets in.
The receive ring that packets are read from is `dronewatch.capture.tpacket`.
"""

from __future__ import annotations

import ctypes
import shutil
import socket
import struct
import subprocess
from pathlib import Path

from dronewatch.capture.decode import (
    LINKTYPE_ETHERNET,
    LINKTYPE_IEEE802_11,
    LINKTYPE_IEEE802_11_RADIOTAP,
    LINKTYPE_RAW,
)
from dronewatch.exceptions import CaptureError

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
SO_ATTACH_FILTER = 26

# ARPHRD_* device types (<linux/if_arp.h>) -> the link type of their frames and its libpcap name
# (for `tcpdump -y`), as libpcap maps them.
ARPHRD_LINKTYPES = {
    1: (LINKTYPE_ETHERNET, "EN10MB"),  # ARPHRD_ETHER
    772: (LINKTYPE_ETHERNET, "EN10MB"),  # ARPHRD_LOOPBACK: Ethernet headers with zero MACs
    65534: (LINKTYPE_RAW, "RAW"),  # ARPHRD_NONE: tun devices, WireGuard (IP packets)
    801: (LINKTYPE_IEEE802_11, "IEEE802_11"),  # ARPHRD_IEEE80211
    803: (LINKTYPE_IEEE802_11_RADIOTAP, "IEEE802_11_RADIO"),  # ARPHRD_IEEE80211_RADIOTAP
}


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def interface_linktype(interface: str) -> tuple[int, str]:
    """The link type of an interface's frames and its libpcap name (Linux: /sys/class/net)."""
    try:
        arphrd = int((Path("/sys/class/net") / interface / "type").read_text())
    except (OSError, ValueError):
        return LINKTYPE_ETHERNET, "EN10MB"
    if arphrd not in ARPHRD_LINKTYPES:
        raise CaptureError(
            f"{interface} has device type {arphrd}, whose frames the afpacket backend does not "
            "read: use --backend dumpcap"
        )
    return ARPHRD_LINKTYPES[arphrd]


def compile_bpf(expression: str, dlt: str = "EN10MB") -> list[tuple[int, int, int, int]]:
    """Classic BPF instructions for a tcpdump filter expression over frames of link type `dlt`
    (needs tcpdump)."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise CaptureError("a capture filter with the afpacket backend needs tcpdump installed")
    proc = subprocess.run(
        [tcpdump, "-ddd", "-y", dlt, expression],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        msg = " ".join(proc.stderr.split()) or "tcpdump failed"
        raise CaptureError(f"capture filter {expression!r}: {msg}")
    lines = proc.stdout.split("\n")
    count = int(lines[0])
    return [tuple(int(x) for x in line.split()) for line in lines[1 : 1 + count]]  # type: ignore[misc]


def packet_socket(interface: str) -> socket.socket:
    """A raw AF_PACKET socket that receives nothing until `join` binds it."""
    try:
        # Protocol 0: no packet is queued before the ring and the filter are in place.
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    except PermissionError:
        raise CaptureError(
            f"no permission to capture on {interface}: run as root or give the Python "
            "interpreter CAP_NET_RAW"
        ) from None
    except (OSError, AttributeError) as exc:
        raise CaptureError(f"AF_PACKET sockets are not available here: {exc}") from None


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program (the kernel keeps its own copy)."""
    insns = (_SockFilter * len(program))(*(_SockFilter(*i) for i in program))
    prog = _SockFprog(len(program), insns)
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))


def join(sock: socket.socket, interface: str, fanout_group: int | None) -> None:
    """Bind the socket to every protocol on `interface`, in promiscuous mode, and into the
    PACKET_FANOUT group `fanout_group` (hash of the flow, fragments reassembled first)."""
    sock.bind((interface, ETH_P_ALL))
    ifindex = socket.if_nametoindex(interface)
    mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
    sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
    if fanout_group is not None:
        mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
        value = (fanout_group & 0xFFFF) | mode << 16
        sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", value))


def can_capture() -> bool:
    """Whether this process may open AF_PACKET sockets (Linux, root or CAP_NET_RAW)."""
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0).close()
    except (OSError, AttributeError):
        return False
    return True
