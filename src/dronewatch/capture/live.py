"""Live capture on network interfaces: a Linux AF_PACKET ring (the default where this process may
open one), Wireshark's dumpcap (where only dumpcap holds the capture capability), or scapy's
sniffer (anywhere else).

All give the same stream (`batches`): packets for the pipeline, `None` whenever nothing arrived
for a tick (so idle flows still end on time), and, when asked (`request_mark`), a
`CoverageMark` with the packets and drops up to that point, for the coverage reports. The ring
(`capture.tpacket`) hands over whole blocks of packets as `PcapBatch`es, walked by the same C walk
as capture files; its kernel drop counts are read at each mark. dumpcap's pcapng stream is read
packet by packet, and its drops become known at each mark by handing the capture over to a new
dumpcap process (`capture.dumpcap`). scapy does not tell its drops.
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import shutil
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from dronewatch.capture.afpacket import can_capture
from dronewatch.capture.base import CoverageMark, RawPacket, SourceStats
from dronewatch.capture.dumpcap import DumpcapCapture
from dronewatch.capture.pcapbatch import PcapBatch
from dronewatch.capture.tpacket import BLOCK_BYTES, BLOCK_TIMEOUT_MS, PacketRing, RingStats
from dronewatch.exceptions import CaptureError

logger = logging.getLogger(__name__)

BACKENDS = ("afpacket", "dumpcap", "scapy")
DEFAULT_SNAPLEN = 262144
DEFAULT_BUFFER_MB = 64
"""Kernel capture buffer per interface: the AF_PACKET ring, or dumpcap's `-B`."""
LINKTYPE_ETHERNET = 1
SIDE_CHANNEL = -1
"""Interface index of the packets of the side channel (every DNS response, for the name cache of
a worker that shares its interface with others)."""
SIDE_CHANNEL_BPF = "udp src port 53"
_END = object()

LiveItem = PcapBatch | RawPacket | CoverageMark | None
"""What a live source yields: a batch of packets (ring), one packet, a coverage mark, or None
after a tick without packets."""


def check_interface(name: str) -> None:
    """Raise CaptureError when the interface does not exist (Linux: /sys/class/net)."""
    if Path("/sys/class/net").is_dir() and not (Path("/sys/class/net") / name).exists():
        known = ", ".join(sorted(p.name for p in Path("/sys/class/net").iterdir()))
        raise CaptureError(f"no network interface named {name!r} (have: {known})")


def pick_backend(requested: str | None, bpf: str = "") -> str:
    """The backend to use: the one asked for, else the AF_PACKET ring where this process may
    open AF_PACKET sockets (and compile the filter `bpf` with tcpdump, when there is one), else
    dumpcap when installed, else scapy."""
    if requested is not None:
        if requested not in BACKENDS:
            raise CaptureError(f"unknown capture backend {requested!r}: use {', '.join(BACKENDS)}")
        if requested == "dumpcap" and shutil.which("dumpcap") is None:
            raise CaptureError("dumpcap is not installed (Debian: apt install tshark)")
        return requested
    dumpcap = shutil.which("dumpcap") is not None
    if can_capture() and (not bpf or shutil.which("tcpdump") or not dumpcap):
        return "afpacket"
    return "dumpcap" if dumpcap else "scapy"


class LiveSource:
    """Packets from live interfaces, yielded as they come, with None after each idle tick."""

    def __init__(
        self,
        interfaces: Sequence[str],
        *,
        bpf: str = "",
        backend: str | None = None,
        snaplen: int = DEFAULT_SNAPLEN,
        tick_s: float = 1.0,
        fanout_group: int | None = None,
        buffer_mb: int = DEFAULT_BUFFER_MB,
    ) -> None:
        """`fanout_group`: with the afpacket backend, join this PACKET_FANOUT group, so that the
        processes opening the interface with the same group share its flows; each also gets
        every DNS response on a side channel (`SIDE_CHANNEL`), to name the flows it owns.
        `buffer_mb`: the kernel's capture buffer per interface (at least 2)."""
        if not interfaces:
            raise CaptureError("no interface to capture on")
        if buffer_mb < 2:
            raise CaptureError("the capture buffer must be at least 2 MB")
        for name in interfaces:
            check_interface(name)
        self.interfaces = list(interfaces)
        self.bpf = bpf
        if fanout_group is not None and backend not in (None, "afpacket"):
            raise CaptureError("sharing an interface between workers needs --backend afpacket")
        self.backend = pick_backend("afpacket" if fanout_group is not None else backend, bpf)
        self.snaplen = snaplen
        self.tick_s = tick_s
        self.buffer_mb = buffer_mb
        self.fanout_group = fanout_group
        self.stats = SourceStats(name="live:" + ",".join(self.interfaces), format="live")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=65536)
        self._stop = threading.Event()
        self._started = False
        self._error: str | None = None
        self._queue_drops = 0
        self._rings: list[PacketRing] = []
        self._side: list[PacketRing] = []
        self._dumpcap: DumpcapCapture | None = None
        self._sniffer: object | None = None
        self._mark_wanted = False
        self._frames = 0
        self._freezes = 0

    def progress(self) -> tuple[int, int | None]:
        return self.stats.bytes, None

    def drops_so_far(self) -> int | None:
        """Packets lost so far (by the kernel, the capture tool, or when the pipeline fell
        behind dumpcap or scapy); None while the backend cannot tell."""
        if self.backend == "afpacket":
            return sum(ring.statistics().drops for ring in self._rings)
        if self.backend == "dumpcap" and self._dumpcap is not None:
            drops = self._dumpcap.drops()
            return None if drops is None else drops + self._queue_drops
        return None

    def ring_statistics(self) -> RingStats:
        """The kernel's counts of the AF_PACKET rings (packets, drops, queue freezes)."""
        total = RingStats()
        for ring in self._rings:
            got = ring.statistics()
            total.packets += got.packets
            total.drops += got.drops
            total.freezes += got.freezes
        return total

    def start(self) -> None:
        """Start capturing; raises CaptureError when the capture cannot start."""
        if self._started:
            return
        self._started = True
        if self.backend == "afpacket":
            self._start_rings()
        elif self.backend == "dumpcap":
            self._dumpcap = DumpcapCapture(
                self.stats.name,
                self.interfaces,
                bpf=self.bpf,
                snaplen=self.snaplen,
                buffer_mb=self.buffer_mb,
                on_packet=self._put,
                on_mark=self._put_mark,
                on_end=self._put_end,
            )
            self._dumpcap.start()
        else:
            self._start_scapy()

    def _start_rings(self) -> None:
        try:
            for index, name in enumerate(self.interfaces):
                self._rings.append(
                    PacketRing(
                        name,
                        snaplen=self.snaplen,
                        bpf=self.bpf,
                        fanout_group=self.fanout_group,
                        buffer_bytes=self.buffer_mb << 20,
                        iface=index,
                    )
                )
            if self.fanout_group is not None:
                for name in self.interfaces:
                    side = PacketRing(
                        name,
                        snaplen=self.snaplen,
                        bpf=SIDE_CHANNEL_BPF,
                        buffer_bytes=2 * BLOCK_BYTES,
                        iface=SIDE_CHANNEL,
                    )
                    self._side.append(side)
        except CaptureError:
            self._close_rings()
            raise

    def _start_scapy(self) -> None:
        try:
            from scapy.all import AsyncSniffer
        except ImportError as exc:  # pragma: no cover - scapy is a dependency
            raise CaptureError(f"scapy is not usable: {exc}") from None

        def on_packet(p: object) -> None:
            data = bytes(p)  # type: ignore[call-overload]
            ts = float(getattr(p, "time", 0.0))
            self._put(RawPacket(ts, LINKTYPE_ETHERNET, data[: self.snaplen], len(data), 0, 0))

        try:
            sniffer = AsyncSniffer(
                iface=self.interfaces,
                filter=self.bpf or None,
                prn=on_packet,
                store=False,
                promisc=True,
            )
            sniffer.start()
        except (OSError, PermissionError) as exc:
            raise CaptureError(f"cannot capture on {', '.join(self.interfaces)}: {exc}") from None
        self._sniffer = sniffer

    def request_mark(self) -> None:
        """Ask for a `CoverageMark` in the stream: at once with the ring and scapy, after the
        hand-over to a new process with dumpcap."""
        if self.backend == "afpacket":
            self._mark_wanted = True
        elif self._dumpcap is not None:
            self._dumpcap.rotate()
        else:
            self._put_mark(time.time())

    def _mark(self, at: float) -> CoverageMark:
        s = self.stats
        if self.backend == "afpacket":
            kernel = self.ring_statistics()  # the kernel's counts, read now
            drops: int | None = kernel.drops
            if kernel.freezes > self._freezes:
                logger.warning(
                    "%s: the capture ring was full %d times since the last report; %d packets "
                    "dropped so far (a bigger --buffer-mb, or --workers, may help)",
                    s.name,
                    kernel.freezes - self._freezes,
                    kernel.drops,
                )
            self._freezes = kernel.freezes
        else:
            drops = self.drops_so_far()
        return CoverageMark(at, s.packets, s.bytes, s.truncated, drops)

    def _put(self, raw: RawPacket) -> None:
        self.stats.packets += 1
        self.stats.bytes += raw.wirelen
        if raw.wirelen > len(raw.data):
            self.stats.truncated += 1
        try:
            self._queue.put(raw, timeout=5)
        except queue.Full:
            self._queue_drops += 1

    def _put_mark(self, at: float) -> None:
        self._queue.put(self._mark(at))

    def _put_end(self, error: str | None) -> None:
        self._error = error
        self.stats.drops = self.drops_so_far()
        self._queue.put(_END)

    def batches(self) -> Iterator[LiveItem]:
        """What the capture gives, in order (see `LiveItem`); ends after stop()."""
        self.start()
        if self.backend == "afpacket":
            yield from self._ring_items()
        else:
            yield from self._queue_items()

    def packets(self) -> Iterator[RawPacket | None]:
        """The packets one by one, with None after every `tick_s` without one."""
        for item in self.batches():
            if isinstance(item, PcapBatch):
                for i in range(len(item)):
                    yield item.raw(i)
            elif not isinstance(item, CoverageMark):
                yield item

    def _queue_items(self) -> Iterator[LiveItem]:
        while True:
            try:
                item = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                yield None
                continue
            if item is _END:
                break
            if isinstance(item, RawPacket):
                self._frames += 1
                item.frame = self._frames
            assert isinstance(item, RawPacket | CoverageMark)
            yield item
        if self._error:
            self.stats.errors.append(self._error)
            raise CaptureError(self._error, path=self.stats.name)

    def _ring_items(self) -> Iterator[LiveItem]:
        rings = [*self._rings, *self._side]
        poller = select.poll()
        for ring in rings:
            poller.register(ring.fileno(), select.POLLIN)
        stats = self.stats
        checked = time.monotonic()
        try:
            while True:
                stopping = self._stop.is_set()
                if stopping:  # what the kernel still holds is handed over by the block timeout
                    time.sleep(2 * BLOCK_TIMEOUT_MS / 1000)
                got = False
                for ring in rings:
                    item = ring.take(self._frames)
                    if item is None:
                        continue
                    got = True
                    raws = range(len(item)) if isinstance(item, PcapBatch) else item
                    if not raws:
                        continue
                    if ring.iface == SIDE_CHANNEL:
                        if isinstance(item, PcapBatch):
                            yield from (item.raw(i) for i in range(len(item)))
                        else:
                            yield from item
                        ring.release()
                        continue
                    if isinstance(item, PcapBatch):
                        stats.packets += len(item)
                        stats.bytes += item.wire_bytes
                        stats.truncated += item.truncated
                    else:
                        for raw in item:
                            stats.packets += 1
                            stats.bytes += raw.wirelen
                            stats.truncated += raw.wirelen > len(raw.data)
                    self._frames += len(item)
                    if isinstance(item, PcapBatch):
                        yield item
                    else:
                        yield from item
                    ring.release()  # analyzed: the kernel may fill these blocks again
                if self._mark_wanted:
                    self._mark_wanted = False
                    yield self._mark(time.time())
                if stopping:
                    break
                now = time.monotonic()
                if now >= checked + self.tick_s:
                    checked = now
                    self._check_interfaces()
                if not got:
                    events = poller.poll(int(self.tick_s * 1000))
                    if not events:
                        yield None
                    elif any(ev & (select.POLLERR | select.POLLHUP) for _, ev in events):
                        self._check_interfaces()
        finally:
            self._close_rings()
            stats.drops = self.drops_so_far()

    def _check_interfaces(self) -> None:
        """Errors on the rings' sockets: an interface that went down (the capture goes on, it
        may come back) or disappeared (the capture ends)."""
        for ring in self._rings:
            err = ring.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if not (Path("/sys/class/net") / ring.interface).exists():
                message = f"capture on {ring.interface} failed: the interface is gone"
            elif err == errno.ENETDOWN:
                logger.warning("%s went down; the capture goes on when it is up", ring.interface)
                continue
            elif err:
                message = f"capture on {ring.interface} failed: {os.strerror(err)}"
            else:
                continue
            self.stats.errors.append(message)
            raise CaptureError(message, path=self.stats.name)

    def _close_rings(self) -> None:
        for ring in [*self._rings, *self._side]:
            ring.close()

    def stop(self) -> None:
        """Stop capturing; the stream ends once what was captured is read."""
        self._stop.set()
        if self._dumpcap is not None:
            self._dumpcap.stop()
        sniffer = self._sniffer
        if sniffer is not None:
            try:
                sniffer.stop()  # type: ignore[attr-defined]
            except Exception:  # scapy raises if it never started
                logger.debug("scapy sniffer stop", exc_info=True)
            self._put_end(None)


def bpf_for(ips: Sequence[str], macs: Sequence[str]) -> str:
    """A capture filter for the monitored devices' traffic (empty: everything)."""
    parts = [f"host {ip}" for ip in ips] + [f"ether host {mac}" for mac in macs]
    return " or ".join(parts)
