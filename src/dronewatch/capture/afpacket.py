"""Linux AF_PACKET capture: a raw socket per interface, optionally in a PACKET_FANOUT group.

Several processes that open the same interface with the same fanout group id share its packets
by flow hash (the kernel's symmetric hash of the addresses and ports), so both directions of a
flow reach the same process. The kernel counts what each socket received and dropped
(PACKET_STATISTICS), which the capture reads at any time: drops are known while capturing.
A capture filter is compiled to classic BPF by tcpdump (`tcpdump -ddd`) and attached to the socket.
"""

from __future__ import annotations

import ctypes
import shutil
import socket
import struct
import subprocess

from dronewatch.exceptions import CaptureError

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_FANOUT = 18
PACKET_FANOUT_HASH = 0
PACKET_FANOUT_FLAG_DEFRAG = 0x8000
SO_ATTACH_FILTER = 26
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
RCVBUF_BYTES = 64 << 20
"""Socket receive buffer asked for: bursts wait here instead of being dropped."""
_TIMESPEC = struct.Struct("qq")


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def compile_bpf(expression: str, interface: str) -> list[tuple[int, int, int, int]]:
    """Classic BPF instructions for a tcpdump filter expression (needs tcpdump)."""
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise CaptureError("a capture filter with the afpacket backend needs tcpdump installed")
    proc = subprocess.run(
        [tcpdump, "-ddd", "-y", "EN10MB", expression],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        msg = " ".join(proc.stderr.split()) or "tcpdump failed"
        raise CaptureError(f"capture filter {expression!r}: {msg}")
    lines = proc.stdout.split("\n")
    count = int(lines[0])
    return [tuple(int(x) for x in line.split()) for line in lines[1 : 1 + count]]  # type: ignore[misc]


class AfPacketSocket:
    """One AF_PACKET socket on one interface: promiscuous, filtered, optionally in a fanout."""

    def __init__(
        self,
        interface: str,
        *,
        snaplen: int,
        bpf: str = "",
        fanout_group: int | None = None,
        timeout_s: float = 0.5,
    ) -> None:
        self.interface = interface
        self.snaplen = snaplen
        self.received = 0
        self.dropped = 0
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
        except PermissionError:
            raise CaptureError(
                f"no permission to capture on {interface}: run as root or give the Python "
                "interpreter CAP_NET_RAW"
            ) from None
        except (OSError, AttributeError) as exc:
            raise CaptureError(f"AF_PACKET sockets are not available here: {exc}") from None
        self.sock = sock
        try:
            if bpf:
                self._attach(compile_bpf(bpf, interface))
            sock.bind((interface, 0))
            ifindex = socket.if_nametoindex(interface)
            mreq = struct.pack("iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            if fanout_group is not None:
                mode = PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG
                value = (fanout_group & 0xFFFF) | mode << 16
                sock.setsockopt(SOL_PACKET, PACKET_FANOUT, struct.pack("I", value))
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            try:  # beyond net.core.rmem_max needs CAP_NET_ADMIN; else the capped size
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RCVBUF_BYTES)
            except OSError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF_BYTES)
            sock.settimeout(timeout_s)
        except OSError as exc:
            sock.close()
            raise CaptureError(f"cannot capture on {interface} with AF_PACKET: {exc}") from None

    def _attach(self, program: list[tuple[int, int, int, int]]) -> None:
        insns = (_SockFilter * len(program))(*(_SockFilter(*i) for i in program))
        prog = _SockFprog(len(program), insns)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(prog))
        self._keep = (insns, prog)  # the kernel copies the program; keep ours until then

    def recv(self) -> tuple[float, bytes, int] | None:
        """(kernel receive time, frame as captured, its length), or None after the timeout."""
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(262144, 64)
        except TimeoutError:
            return None
        except OSError as exc:
            raise CaptureError(f"capture on {self.interface} failed: {exc}") from None
        ts = 0.0
        for level, kind, value in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                sec, nsec = _TIMESPEC.unpack_from(value)
                ts = sec + nsec * 1e-9
        return ts, data[: self.snaplen], len(data)

    def statistics(self) -> tuple[int, int]:
        """(received, dropped) since the socket opened (the kernel resets on each read)."""
        try:
            raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        except OSError:
            return self.received, self.dropped
        packets, drops = struct.unpack("II", raw)
        self.received += packets
        self.dropped += drops
        return self.received, self.dropped

    def close(self) -> None:
        self.statistics()
        self.sock.close()
