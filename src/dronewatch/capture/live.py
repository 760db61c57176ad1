"""Live capture on network interfaces: Wireshark's dumpcap (default), Linux AF_PACKET sockets
(optionally sharing an interface between processes with PACKET_FANOUT), or scapy's sniffer.

All give the same thing: raw packets for the pipeline, and `None` whenever nothing arrived for a
tick, so idle flows still end on time. dumpcap writes a pcapng stream that the file reader parses;
at the end its interface statistics give the kernel's drop count. AF_PACKET sockets tell their
drops at any time, so coverage reports carry them while the capture runs.
"""

from __future__ import annotations

import logging
import queue
import shutil
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from dronewatch.capture.afpacket import AfPacketSocket
from dronewatch.capture.base import RawPacket, SourceStats
from dronewatch.capture.files import FileSource
from dronewatch.exceptions import CaptureError

logger = logging.getLogger(__name__)

BACKENDS = ("dumpcap", "afpacket", "scapy")
DEFAULT_SNAPLEN = 262144
LINKTYPE_ETHERNET = 1
SIDE_CHANNEL = -1
"""Interface index of the packets of the side channel (every DNS response, for the name cache of
a worker that shares its interface with others)."""
SIDE_CHANNEL_BPF = "udp src port 53"
_END = object()


def check_interface(name: str) -> None:
    """Raise CaptureError when the interface does not exist (Linux: /sys/class/net)."""
    if Path("/sys/class/net").is_dir() and not (Path("/sys/class/net") / name).exists():
        known = ", ".join(sorted(p.name for p in Path("/sys/class/net").iterdir()))
        raise CaptureError(f"no network interface named {name!r} (have: {known})")


def pick_backend(requested: str | None) -> str:
    """The backend to use: the one asked for, else dumpcap when installed, else scapy."""
    if requested is not None:
        if requested not in BACKENDS:
            raise CaptureError(f"unknown capture backend {requested!r}: use {', '.join(BACKENDS)}")
        if requested == "dumpcap" and shutil.which("dumpcap") is None:
            raise CaptureError("dumpcap is not installed (Debian: apt install tshark)")
        return requested
    return "dumpcap" if shutil.which("dumpcap") else "scapy"


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
    ) -> None:
        """`fanout_group`: with the afpacket backend, join this PACKET_FANOUT group, so that the
        processes opening the interface with the same group share its flows; each also gets
        every DNS response on a side channel (`SIDE_CHANNEL`), to name the flows it owns."""
        if not interfaces:
            raise CaptureError("no interface to capture on")
        for name in interfaces:
            check_interface(name)
        self.interfaces = list(interfaces)
        self.bpf = bpf
        self.backend = pick_backend(backend)
        self.snaplen = snaplen
        self.tick_s = tick_s
        self.stats = SourceStats(name="live:" + ",".join(self.interfaces), format="live")
        self._queue: queue.Queue[object] = queue.Queue(maxsize=65536)
        self._stop = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._thread: threading.Thread | None = None
        self._error: str | None = None
        self._queue_drops = 0
        self._sockets: list[AfPacketSocket] = []
        self.fanout_group = fanout_group
        if fanout_group is not None and self.backend != "afpacket":
            raise CaptureError("sharing an interface between workers needs --backend afpacket")

    def progress(self) -> tuple[int, int | None]:
        return self.stats.bytes, None

    def drops_so_far(self) -> int | None:
        """Packets lost so far (by the kernel, or when the pipeline fell behind); None while
        the backend cannot tell (dumpcap tells at its end, scapy never)."""
        if self.backend == "afpacket":
            return sum(s.statistics()[1] for s in self._sockets) + self._queue_drops
        if self.backend == "dumpcap" and self.stats.drops is not None:
            return self.stats.drops
        return None

    def start(self) -> None:
        """Start capturing; raises CaptureError when the capture cannot start."""
        if self.backend == "dumpcap":
            self._start_dumpcap()
        elif self.backend == "afpacket":
            self._start_afpacket()
        else:
            self._start_scapy()

    def _start_afpacket(self) -> None:
        for name in self.interfaces:
            self._sockets.append(
                AfPacketSocket(
                    name, snaplen=self.snaplen, bpf=self.bpf, fanout_group=self.fanout_group
                )
            )
        channels = list(enumerate(self._sockets))
        if self.fanout_group is not None:
            for name in self.interfaces:
                side = AfPacketSocket(name, snaplen=self.snaplen, bpf=SIDE_CHANNEL_BPF)
                channels.append((SIDE_CHANNEL, side))
        readers = []
        for index, sock in channels:

            def pump(sock: AfPacketSocket = sock, index: int = index) -> None:
                while not self._stop.is_set():
                    try:
                        got = sock.recv()
                    except CaptureError as exc:
                        self._error = str(exc)
                        break
                    if got is not None:
                        ts, data, wirelen = got
                        raw = RawPacket(ts, LINKTYPE_ETHERNET, data, wirelen, index, 0)
                        self._put(raw, counted=index != SIDE_CHANNEL)

            thread = threading.Thread(target=pump, name=f"afpacket-{sock.interface}", daemon=True)
            thread.start()
            readers.append(thread)

        def finish() -> None:
            for thread in readers:
                thread.join()
            self.stats.drops = self.drops_so_far()
            for _, sock in channels:
                sock.sock.close()
            self._queue.put(_END)

        self._thread = threading.Thread(target=finish, name="afpacket-end", daemon=True)
        self._thread.start()

    def _start_dumpcap(self) -> None:
        cmd = ["dumpcap", "-q", "-n", "-s", str(self.snaplen), "-w", "-"]
        for name in self.interfaces:
            cmd += ["-i", name]
            if self.bpf:
                cmd += ["-f", self.bpf]
        logger.info("capture: %s", " ".join(cmd))
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self._proc.stdout is not None
        reader = FileSource(self.stats.name, stream=self._proc.stdout)  # type: ignore[arg-type]
        self._reader = reader

        def pump() -> None:
            for raw in reader.packets():
                self._put(raw)
            if self._proc is not None and self._proc.stderr is not None:
                err = self._proc.stderr.read().decode("utf-8", "replace").strip()
                self._proc.stderr.close()
                code = self._proc.wait()
                if code not in (0, -15) and not self._stop.is_set():
                    self._error = _dumpcap_error(err, code)
            if reader.stats.drops is not None or self._queue_drops:
                self.stats.drops = (reader.stats.drops or 0) + self._queue_drops
            self._queue.put(_END)

        self._thread = threading.Thread(target=pump, name="dumpcap-reader", daemon=True)
        self._thread.start()

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
            self._sniffer = AsyncSniffer(
                iface=self.interfaces,
                filter=self.bpf or None,
                prn=on_packet,
                store=False,
                promisc=True,
            )
            self._sniffer.start()
        except (OSError, PermissionError) as exc:
            raise CaptureError(f"cannot capture on {', '.join(self.interfaces)}: {exc}") from None

    def _put(self, raw: RawPacket, counted: bool = True) -> None:
        if counted:
            self.stats.packets += 1
            self.stats.bytes += len(raw.data)
            if raw.wirelen > len(raw.data):
                self.stats.truncated += 1
        try:
            self._queue.put(raw, timeout=5)
        except queue.Full:
            self._queue_drops += 1

    def packets(self) -> Iterator[RawPacket | None]:
        """Packets as they come; None after every `tick_s` without one; ends after stop()."""
        if self._proc is None and getattr(self, "_sniffer", None) is None and not self._sockets:
            self.start()
        frame = 0
        while True:
            try:
                item = self._queue.get(timeout=self.tick_s)
            except queue.Empty:
                if self._proc is not None and self._proc.poll() not in (None, 0, -15):
                    continue  # the reader thread reports the failure
                yield None
                continue
            if item is _END:
                break
            assert isinstance(item, RawPacket)
            if item.iface != SIDE_CHANNEL:
                frame += 1
                item.frame = frame
            yield item
        if self._error:
            self.stats.errors.append(self._error)
            raise CaptureError(self._error, path=self.stats.name)

    def stop(self) -> None:
        """Stop capturing; packets() ends once what was captured is read."""
        self._stop.set()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
        sniffer = getattr(self, "_sniffer", None)
        if sniffer is not None:
            try:
                sniffer.stop()
            except Exception:  # scapy raises if it never started
                logger.debug("scapy sniffer stop", exc_info=True)
            self._queue.put(_END)


def _dumpcap_error(stderr: str, code: int) -> str:
    text = " ".join(stderr.split())
    if "permission" in text.lower() or "Operation not permitted" in text:
        return (
            f"no permission to capture ({text}); run as root or give dumpcap the "
            "capabilities: setcap cap_net_raw,cap_net_admin+eip /usr/bin/dumpcap"
        )
    return f"dumpcap failed with exit {code}: {text or 'no message'}"


def bpf_for(ips: Sequence[str], macs: Sequence[str]) -> str:
    """A capture filter for the monitored devices' traffic (empty: everything)."""
    parts = [f"host {ip}" for ip in ips] + [f"ether host {mac}" for mac in macs]
    return " or ".join(parts)
