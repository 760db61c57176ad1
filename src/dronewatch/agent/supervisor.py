"""Run the capture agent as a child process and keep it running (`dronewatch serve -i`).

The child is `dronewatch agent`, the same code a standalone sensor runs, so a capture that stalls
or crashes stalls or crashes that process only. It runs in a session of its own: a terminal's
Ctrl-C reaches the supervisor, which stops the child in order, and a kill reaches the child's own
children (dumpcap) too. Its log lines (JSON, one object a line) are written to this process's log
at their own level, prefixed with the child's label and process id. A child that exits without
being asked to has its exit status logged and is started again after a delay that doubles up to a
bound, and starts over at the first delay once a child has run for a while. `stop` sends SIGTERM
(and SIGCONT, for a child that was suspended), waits, then kills what is left of the child's
process group. Nothing here knows of the service: the child ships to it like any agent.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

logger = logging.getLogger(__name__)

ChildState = Literal["starting", "capturing", "suspended", "restarting", "stopped"]
CHILD_STATES: tuple[ChildState, ...] = (
    "starting",
    "capturing",
    "suspended",
    "restarting",
    "stopped",
)
"""starting: spawned, capture not open yet; capturing: the child said its capture is open;
suspended: the child is stopped by a signal (SIGSTOP); restarting: waiting to start the child
again; stopped: not running (before `start`, after `stop`)."""

CAPTURING_PREFIX = "capturing on "
"""How `dronewatch agent` begins the log line it writes once its capture is open."""

PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True, slots=True)
class SupervisorOptions:
    """How the child is restarted and stopped."""

    backoff_s: float = 1.0
    """Delay before the first restart after an unexpected exit."""
    max_backoff_s: float = 30.0
    """Longest delay between restarts (the delay doubles after each quick exit up to this)."""
    healthy_s: float = 60.0
    """A child that ran at least this long is restarted after `backoff_s` again."""
    stop_timeout_s: float = 15.0
    """How long the child has to exit after SIGTERM before its process group is killed."""


def describe_exit(code: int | None) -> str:
    """An exit status in words: `exit code 2`, `killed by SIGKILL`, or `could not be started`."""
    if code is None:
        return "could not be started"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def process_suspended(pid: int) -> bool:
    """True when the process is stopped by a signal (state T in /proc/PID/stat, Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # The command name in parentheses may hold spaces: the state is the field after its ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    return bool(fields) and fields[0] in ("T", "t")


def _parent_death_signal() -> Callable[[], None] | None:
    """A pre-exec function that has the kernel SIGTERM the child when its parent dies, so a
    supervisor that is killed outright leaves no capture running (None off Linux)."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


class CaptureSupervisor:
    """One child process, restarted until `stop`; its state for the log and the metrics."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        *,
        label: str,
        options: SupervisorOptions | None = None,
        on_capturing: Callable[[int], object] | None = None,
    ) -> None:
        """`env` is the child's whole environment (secrets go there, never into `argv`);
        `on_capturing(pid)` is called each time a child reports that its capture is open."""
        self.argv = list(argv)
        self.env = dict(env)
        self.label = label
        self.options = options or SupervisorOptions()
        self.on_capturing = on_capturing
        self.restarts = 0
        """Children started after an unexpected exit."""
        self.last_exit: int | None = None
        """Exit status of the last child that ended (negative: the signal that killed it)."""
        self._state: ChildState = "stopped"
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._arm_death_signal = _parent_death_signal()

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        proc = self._proc
        return proc.pid if proc is not None and proc.returncode is None else None

    @property
    def state(self) -> ChildState:
        """What the child is doing now (see CHILD_STATES)."""
        state, pid = self._state, self.pid
        if state in ("starting", "capturing") and pid is not None and process_suspended(pid):
            return "suspended"
        return state

    def start(self) -> None:
        """Start the child and watch it from a thread of its own."""
        if self._thread is not None:
            raise RuntimeError("the capture supervisor was started already")
        self._thread = threading.Thread(target=self._run, name="capture-supervisor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `stop_timeout_s`) and stop restarting it.
        Blocks until it has exited; safe to call more than once, and before `start`."""
        with self._lock:
            self._stopping.set()
            proc = self._proc
        if proc is not None and proc.poll() is None:
            logger.info("%s pid %d: stopping", self.label, proc.pid)
            _signal(proc.pid, signal.SIGTERM)
            _signal(-proc.pid, signal.SIGCONT)
            try:
                proc.wait(self.options.stop_timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning(
                    "%s pid %d: still running %g s after SIGTERM; killing it",
                    self.label,
                    proc.pid,
                    self.options.stop_timeout_s,
                )
                _signal(-proc.pid, signal.SIGKILL)
                proc.wait()
        if proc is not None:
            _signal(-proc.pid, signal.SIGKILL)  # what the child left in its group (dumpcap)
        if self._thread is not None:
            self._thread.join(self.options.stop_timeout_s)
        self._state = "stopped"

    def _run(self) -> None:
        delay = self.options.backoff_s
        while not self._stopping.is_set():
            began = time.monotonic()
            code = self._run_child()
            if self._stopping.is_set():
                break
            ran = time.monotonic() - began
            if ran >= self.options.healthy_s:
                delay = self.options.backoff_s
            self.last_exit = code
            self._state = "restarting"
            logger.warning(
                "%s: the capture process ended unexpectedly (%s) after %.1f s; restarting it in "
                "%g s",
                self.label,
                describe_exit(code),
                ran,
                delay,
            )
            if self._stopping.wait(delay):
                break
            self.restarts += 1
            delay = min(delay * 2, self.options.max_backoff_s)
        self._state = "stopped"

    def _run_child(self) -> int | None:
        """Start one child and wait for it; its exit status (None: it could not be started)."""
        with self._lock:
            if self._stopping.is_set():
                return None
            try:
                proc = subprocess.Popen(
                    self.argv,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                    errors="replace",
                    start_new_session=True,
                    # Armed in the child between fork and exec; it only calls prctl. The kernel
                    # sends the signal when the thread that started the child ends: this one,
                    # which ends after the last child (or when the supervisor dies with it).
                    preexec_fn=self._arm_death_signal,
                )
            except OSError as exc:
                logger.error("%s: cannot start the capture process: %s", self.label, exc)
                return None
            self._proc = proc
            self._state = "starting"
        logger.info("%s pid %d: started", self.label, proc.pid)
        assert proc.stdout is not None
        relay = threading.Thread(
            target=self._relay, args=(proc.pid, proc.stdout), name="capture-log", daemon=True
        )
        relay.start()
        code = proc.wait()
        _signal(-proc.pid, signal.SIGKILL)  # what the child left in its group (dumpcap)
        relay.join(5)
        proc.stdout.close()
        return code

    def _relay(self, pid: int, stream: IO[str]) -> None:
        """The child's log lines into this process's log, at their level, with a prefix."""
        prefix = f"{self.label} pid {pid}"
        for line in stream:
            text = line.rstrip()
            if not text:
                continue
            level, msg = _parse_line(text)
            if msg.startswith(CAPTURING_PREFIX) and self._state == "starting":
                self._state = "capturing"
                if self.on_capturing is not None:
                    self.on_capturing(pid)
            logger.log(level, "%s: %s", prefix, msg)


def _parse_line(text: str) -> tuple[int, str]:
    """A JSON log line of the agent as (level, message); any other line is a warning."""
    if text.startswith("{"):
        try:
            doc = json.loads(text)
        except ValueError:
            return logging.WARNING, text
        if isinstance(doc, dict) and isinstance(doc.get("msg"), str):
            level = logging.getLevelName(str(doc.get("level", "warning")).upper())
            msg = doc["msg"]
            if isinstance(doc.get("exc"), str):
                msg = f"{msg}\n{doc['exc']}"
            return (level if isinstance(level, int) else logging.WARNING), msg
    return logging.WARNING, text


def _signal(pid: int, signum: int) -> None:
    """Send a signal to a process (or, with a negative pid, a process group) that may be gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, signum)
