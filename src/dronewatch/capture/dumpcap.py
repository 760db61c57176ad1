"""Live capture through Wireshark's dumpcap, with its drop counts known while it runs.

dumpcap tells its kernel drop count only when it stops: in the interface statistics block
(ISB, `isb_ifdrop`) that ends its pcapng output, or, in its capture-child mode (`-Z`, as Wireshark
runs it), in the one drops message it sends its parent at the end. Its ring-buffer files (`-b`)
carry no statistics block (dumpcap 4.0: not even the last one). So the capture is handed over
from one dumpcap process to the next whenever a coverage report is due (`rotate`): the next one
is started, and once its capture is open (its pcapng header has arrived on the pipe) the running
one is stopped with SIGINT, ends its output with its statistics, and the report is cut there.
A stopped dumpcap does not write what its kernel buffer still holds, so it is stopped only once
that can only be packets the next one has too: once it has written a packet that came after the
next one opened, or, on a quiet link, once it has written nothing for `QUIET_S` (twice the
250 ms after which dumpcap's buffer hands packets over). No moment goes uncaptured; for a moment
both capture, so the packets both took are read once: the next process's packets up to the last
time stamp the stopped one wrote (and at that very time stamp, those with the same bytes) are
skipped. A packet the stopped one dropped in that moment is counted in its drops, so the
coverage never claims more than was seen.
"""

from __future__ import annotations

import io
import logging
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import cast

from dronewatch.capture.base import RawPacket
from dronewatch.capture.files import FileSource
from dronewatch.exceptions import CaptureError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 10.0
"""How long a dumpcap process may take to open the capture."""
QUIET_S = 0.5
"""A dumpcap that wrote nothing for this long holds no packet older than this (it hands its
buffer over every 250 ms)."""
CATCH_UP_S = 30.0
"""Longest a hand-over waits for the running process to write what it holds."""


@dataclass(eq=False)
class _Run:
    """One dumpcap process and what its reader learnt."""

    proc: subprocess.Popen[bytes]
    prev: _Run | None
    active: threading.Event = field(default_factory=threading.Event)
    """Its pcapng header arrived: the capture is open."""
    decided: threading.Event = field(default_factory=threading.Event)
    """It took over (`abandoned` False) or was given up."""
    done: threading.Event = field(default_factory=threading.Event)
    abandoned: bool = False
    stop_at: float | None = None
    """When it was stopped to hand over to the next one."""
    error: str = ""
    tail_ts: float = float("-inf")
    """Its latest packet time, and the frames it took at that time (the next one skips them)."""
    tail: list[bytes] = field(default_factory=list)
    last_read: float = field(default_factory=time.monotonic)
    """When its reader last got a packet (monotonic clock)."""


class DumpcapCapture:
    """dumpcap processes one after the other on the same interfaces, read by threads that hand
    each packet to `on_packet` in capture order, and call `on_mark(at)` when a hand-over has
    made the drops up to `at` known and `on_end(error)` once the capture is over."""

    def __init__(
        self,
        name: str,
        interfaces: Sequence[str],
        *,
        bpf: str,
        snaplen: int,
        buffer_mb: int,
        on_packet: Callable[[RawPacket], None],
        on_mark: Callable[[float], None],
        on_end: Callable[[str | None], None],
    ) -> None:
        self.name = name
        self.cmd = ["dumpcap", "-q", "-n", "-s", str(snaplen), "-B", str(buffer_mb), "-w", "-"]
        for interface in interfaces:
            self.cmd += ["-i", interface]
            if bpf:
                self.cmd += ["-f", bpf]
        self.on_packet, self.on_mark, self.on_end = on_packet, on_mark, on_end
        self._lock = threading.Lock()
        self._runs: list[_Run] = []
        self._current: _Run | None = None
        self._stopping = False
        self._rotating = False
        self._ended = False
        self._known = 0
        self._in_doubt = False
        self.handovers = 0
        """Hand-overs done (for tests and logs)."""

    def drops(self) -> int | None:
        """Drops of the processes that ended, or None while a span's drops are not known."""
        with self._lock:
            return None if self._in_doubt else self._known

    def start(self) -> None:
        """Start the first process; raises CaptureError when it cannot open the capture."""
        logger.info("capture: %s", " ".join(self.cmd))
        run = self._spawn(None)
        if run is None or not _wait_active(run, START_TIMEOUT_S):
            if run is not None:
                run.abandoned = True
                run.decided.set()
                _end_process(run)
                run.done.wait(5)
            raise CaptureError((run.error if run else "") or "dumpcap did not open the capture")
        with self._lock:
            self._current = run
        run.decided.set()

    def rotate(self) -> None:
        """Hand the capture over to a new process (in the background); `on_mark` follows."""
        with self._lock:
            if self._stopping or self._rotating or self._current is None:
                return
            self._rotating = True
        threading.Thread(target=self._rotate, name="dumpcap-handover", daemon=True).start()

    def _rotate(self) -> None:
        try:
            with self._lock:
                old = self._current
            assert old is not None
            try:
                new = self._spawn(old)
            except CaptureError as exc:
                logger.warning("dumpcap hand-over failed (%s); the capture goes on", exc)
                with self._lock:
                    self._in_doubt = True  # this span's drops are known when `old` ends
                self.on_mark(time.time())
                return
            if new is None:
                return
            ok = _wait_active(new, START_TIMEOUT_S) and _caught_up(old, time.time())
            with self._lock:
                if ok and not self._stopping and old.proc.poll() is None:
                    old.stop_at = time.time()
                    self._current = new
                    self.handovers += 1
                    old.proc.send_signal(signal.SIGINT)
                    new.decided.set()
                    return
                new.abandoned = True
                new.decided.set()
                stopping = self._stopping
                if not stopping:
                    self._in_doubt = True  # this span's drops are known when `old` ends
            _end_process(new)
            if not stopping:
                new.done.wait(5)
                logger.warning(
                    "dumpcap hand-over failed (%s); the capture goes on, the drops of this "
                    "interval are known when it ends",
                    new.error or "the new process did not open the capture",
                )
                self.on_mark(time.time())
        finally:
            with self._lock:
                self._rotating = False

    def stop(self) -> None:
        """Stop every process; `on_end` follows once the last one's output is read."""
        with self._lock:
            self._stopping = True
            runs = list(self._runs)
        for run in runs:
            _end_process(run)

    def _spawn(self, prev: _Run | None) -> _Run | None:
        with self._lock:
            if self._stopping:
                return None
            try:
                proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            except OSError as exc:
                raise CaptureError(f"cannot run dumpcap: {exc.strerror or exc}") from None
            run = _Run(proc, prev)
            self._runs.append(run)
        threading.Thread(target=self._read, args=(run,), name="dumpcap-reader", daemon=True).start()
        return run

    def _read(self, run: _Run) -> None:
        assert run.proc.stdout is not None and run.proc.stderr is not None
        try:
            head = cast(io.BufferedReader, run.proc.stdout).peek(1)
        except (OSError, ValueError):
            head = b""
        if head:
            run.active.set()
            run.decided.wait()
        drops: int | None = None
        if head and not run.abandoned:
            if run.prev is not None:
                run.prev.done.wait()
            drops = self._packets(run)
        else:
            while run.proc.stdout.read(1 << 16):
                pass  # an abandoned process's packets are the running one's too
        err = run.proc.stderr.read().decode("utf-8", "replace").strip()
        code = run.proc.wait()
        run.proc.stdout.close()
        run.proc.stderr.close()
        if not head or (code not in (0, -signal.SIGINT, -signal.SIGTERM)):
            run.error = _dumpcap_error(err, code)
        if not head or run.abandoned:
            run.done.set()
            return
        with self._lock:
            if drops is None:
                self._in_doubt = True
            else:
                self._known += drops
                self._in_doubt = False
            last = run is self._current
            stopping = self._stopping
        if run.stop_at is not None:
            self.on_mark(run.stop_at)
        run.done.set()
        if last and not self._ended:
            self._ended = True
            error = None if stopping else (run.error or "dumpcap stopped on its own")
            self.stop()  # whatever else was started goes too
            self.on_end(error)

    def _packets(self, run: _Run) -> int | None:
        """Hand the run's packets on, skipping those its predecessor took; its drops (ISB)."""
        assert run.proc.stdout is not None
        skip_ts = run.prev.tail_ts if run.prev is not None else float("-inf")
        skip = Counter(run.prev.tail) if run.prev is not None else Counter[bytes]()
        skipping = run.prev is not None
        reader = FileSource(self.name, stream=run.proc.stdout)  # type: ignore[arg-type]
        on_packet = self.on_packet
        for raw in reader.packets():
            ts = raw.ts
            run.last_read = time.monotonic()
            if ts > run.tail_ts:
                run.tail_ts, run.tail = ts, [raw.data]
            elif ts == run.tail_ts:
                run.tail.append(raw.data)
            if skipping:
                if ts < skip_ts:
                    continue
                if ts == skip_ts and skip[raw.data] > 0:
                    skip[raw.data] -= 1
                    continue
                skipping = False
            on_packet(raw)
        for err in reader.stats.errors:
            logger.warning("dumpcap output: %s", err)
        return reader.stats.drops


def _wait_active(run: _Run, timeout_s: float) -> bool:
    """Wait until the process has opened the capture; False when it ended or took too long."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if run.active.wait(0.05):
            return True
        if run.done.is_set() or run.proc.poll() is not None:
            return run.active.is_set()
    return False


def _caught_up(run: _Run, opened: float) -> bool:
    """Wait until `run` holds no packet from before `opened` (the next process's start) that it
    has not written; False when that takes longer than CATCH_UP_S or it ended."""
    deadline = time.monotonic() + CATCH_UP_S
    while time.monotonic() < deadline and run.proc.poll() is None:
        now = time.monotonic()
        if run.tail_ts >= opened:
            return True
        if time.time() - opened >= QUIET_S and now - run.last_read >= QUIET_S:
            return True
        time.sleep(0.05)
    return False


def _end_process(run: _Run) -> None:
    if run.proc.poll() is None:
        try:
            run.proc.send_signal(signal.SIGINT)
        except ProcessLookupError:
            pass


def _dumpcap_error(stderr: str, code: int) -> str:
    text = " ".join(stderr.split())
    if "permission" in text.lower() or "Operation not permitted" in text:
        return (
            f"no permission to capture ({text}); run as root or give dumpcap the "
            "capabilities: setcap cap_net_raw,cap_net_admin+eip /usr/bin/dumpcap"
        )
    return f"dumpcap failed with exit {code}: {text or 'no message'}"
