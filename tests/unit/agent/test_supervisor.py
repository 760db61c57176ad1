"""The capture supervisor of `serve -i` on real child processes (small Python scripts): log relay,
restart with a bounded backoff, stop with SIGTERM then SIGKILL, no process left behind."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dronewatch.agent.metrics import SupervisorCollector
from dronewatch.agent.supervisor import (
    CaptureSupervisor,
    SupervisorOptions,
    describe_exit,
    process_suspended,
)

LOGGER = "dronewatch.agent.supervisor"
FAST = SupervisorOptions(backoff_s=0.025, max_backoff_s=0.1, healthy_s=60, stop_timeout_s=5)

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")


def child(*parts: str) -> list[str]:
    """The command line of a child running the script made of `parts` (each dedented)."""
    return [sys.executable, "-c", "\n".join(textwrap.dedent(part) for part in parts)]


CAPTURING = """
    import json, sys, time
    def log(level, msg):
        print(json.dumps({"ts": 0, "level": level, "logger": "x", "msg": msg}), flush=True)
"""


def until(cond: Callable[[], object], timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def gone(pid: int) -> bool:
    """The process has exited (absent, or a zombie nobody has reaped yet)."""
    return not process_exists(pid)


def process_exists(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


@pytest.fixture
def supervisors() -> Iterator[list[CaptureSupervisor]]:
    """Supervisors made by a test, all stopped at its end whatever happens."""
    made: list[CaptureSupervisor] = []
    yield made
    for sup in made:
        sup.stop()


def test_relays_child_lines_with_prefix_at_their_level(
    supervisors: list[CaptureSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    """JSON lines keep their level and message, other lines are warnings; all carry the label
    and pid; the capture-open line turns the state to capturing and calls back with the pid."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    called: list[int] = []
    sup = CaptureSupervisor(
        child(
            CAPTURING,
            """
            log("info", "capturing on eth9 with dumpcap")
            log("error", "disk on fire")
            print("dronewatch: not json", flush=True)
            time.sleep(60)
            """,
        ),
        os.environ,
        label="capture[eth9]",
        options=FAST,
        on_capturing=called.append,
    )
    supervisors.append(sup)
    sup.start()
    assert until(lambda: "not json" in caplog.text)
    pid = sup.pid
    assert pid is not None and called == [pid] and sup.state == "capturing"
    relayed = {
        r.getMessage(): r.levelno for r in caplog.records if r.getMessage().startswith("capture[")
    }
    prefix = f"capture[eth9] pid {pid}: "
    assert relayed[prefix + "capturing on eth9 with dumpcap"] == logging.INFO
    assert relayed[prefix + "disk on fire"] == logging.ERROR
    assert relayed[prefix + "dronewatch: not json"] == logging.WARNING


def test_secret_travels_in_the_environment_only(supervisors: list[CaptureSupervisor]) -> None:
    """The child gets the environment it is given, and its command line holds no secret."""
    secret = "dw_secret_for_the_child"
    sup = CaptureSupervisor(
        child("import time; time.sleep(60)"),
        {**os.environ, "DRONEWATCH_API_KEY": secret},
        label="capture[x]",
        options=FAST,
    )
    supervisors.append(sup)
    sup.start()
    assert until(lambda: sup.pid is not None)
    pid = sup.pid
    assert pid is not None
    assert until(lambda: b"DRONEWATCH_API_KEY=" in Path(f"/proc/{pid}/environ").read_bytes())
    assert f"DRONEWATCH_API_KEY={secret}".encode() in Path(f"/proc/{pid}/environ").read_bytes()
    assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()


def test_restarts_an_exited_child_with_a_bounded_backoff(
    supervisors: list[CaptureSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    """A child that keeps exiting is started again each time, its exit status logged, after
    delays that double up to the bound and never beyond it."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    sup = CaptureSupervisor(child("raise SystemExit(3)"), os.environ, label="cap", options=FAST)
    supervisors.append(sup)
    sup.start()
    assert until(lambda: sup.restarts >= 4, timeout=20)
    sup.stop()
    assert sup.last_exit == 3
    delays = [
        float(d)
        for d in re.findall(r"\(exit code 3\) after \S+ s; restarting it in (\S+) s", caplog.text)
    ]
    assert delays[:4] == [0.025, 0.05, 0.1, 0.1]
    assert max(delays) == FAST.max_backoff_s


def test_killed_child_is_restarted_and_its_group_cleared(
    supervisors: list[CaptureSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    """SIGKILL on the child: the exit is logged as such, what it left in its process group (its
    own child, like dumpcap) is killed, and a new child is started."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    sup = CaptureSupervisor(
        child(
            CAPTURING,
            """
            import subprocess
            sub = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
            log("info", f"grandchild {sub.pid}")
            log("info", "capturing on lo")
            time.sleep(60)
            """,
        ),
        os.environ,
        label="cap",
        options=FAST,
    )
    supervisors.append(sup)
    sup.start()
    assert until(lambda: sup.state == "capturing")
    first = sup.pid
    assert first is not None
    grandchild = int(re.findall(r"grandchild (\d+)", caplog.text)[0])
    assert process_exists(grandchild)
    os.kill(first, signal.SIGKILL)
    assert until(lambda: sup.restarts == 1 and sup.state == "capturing")
    assert sup.pid not in (None, first)
    assert sup.last_exit == -signal.SIGKILL
    assert "ended unexpectedly (killed by SIGKILL)" in caplog.text
    assert until(lambda: gone(grandchild))


def test_stop_sends_sigterm_then_sigkill(
    supervisors: list[CaptureSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    """A child that ignores SIGTERM is killed after the stop timeout; a stopped supervisor does
    not start it again."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    options = SupervisorOptions(stop_timeout_s=0.2)
    sup = CaptureSupervisor(
        child(
            CAPTURING,
            """
            import signal
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            log("info", "capturing on lo")
            time.sleep(60)
            """,
        ),
        os.environ,
        label="cap",
        options=options,
    )
    supervisors.append(sup)
    sup.start()
    assert until(lambda: sup.state == "capturing")
    pid = sup.pid
    assert pid is not None
    began = time.monotonic()
    sup.stop()
    assert time.monotonic() - began < 5
    assert gone(pid) and sup.pid is None and sup.state == "stopped"
    assert "still running 0.2 s after SIGTERM; killing it" in caplog.text
    time.sleep(0.1)
    assert sup.pid is None and sup.restarts == 0


def test_stop_resumes_a_suspended_child_so_it_can_exit(
    supervisors: list[CaptureSupervisor],
) -> None:
    """A child stopped with SIGSTOP is reported suspended, and `stop` still ends it with SIGTERM
    (sent with SIGCONT), well before the SIGKILL timeout."""
    sup = CaptureSupervisor(
        child(CAPTURING, 'log("info", "capturing on lo")\ntime.sleep(60)'),
        os.environ,
        label="cap",
        options=SupervisorOptions(stop_timeout_s=20),
    )
    supervisors.append(sup)
    sup.start()
    assert until(lambda: sup.state == "capturing")
    pid = sup.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    assert until(lambda: sup.state == "suspended")
    assert process_suspended(pid)
    began = time.monotonic()
    sup.stop()
    assert time.monotonic() - began < 10
    assert gone(pid)


def test_metrics_show_the_child_state(supervisors: list[CaptureSupervisor]) -> None:
    """The collector exposes up, state, pid, restarts and the last exit status."""
    registry = CollectorRegistry()
    sup = CaptureSupervisor(child("raise SystemExit(5)"), os.environ, label="cap", options=FAST)
    supervisors.append(sup)
    registry.register(SupervisorCollector(sup))
    text = generate_latest(registry).decode()
    assert 'dronewatch_capture_child_state{state="stopped"} 1.0' in text
    assert "dronewatch_capture_child_up 0.0" in text
    assert "last_exit_code" not in text
    sup.start()
    assert until(lambda: sup.restarts >= 1)
    text = generate_latest(registry).decode()
    assert "dronewatch_capture_child_last_exit_code 5.0" in text
    assert re.search(r"dronewatch_capture_child_restarts_total [1-9]", text)


def test_child_dies_with_a_killed_supervisor(tmp_path: Path) -> None:
    """A supervisor killed outright (SIGKILL) takes its child along: the kernel sends the child
    SIGTERM when its parent dies."""
    pidfile = tmp_path / "child.pid"
    runner = textwrap.dedent(
        f"""
        import os, sys, time
        from dronewatch.agent.supervisor import CaptureSupervisor
        argv = [sys.executable, "-c",
                "import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); "
                "time.sleep(60)"]
        CaptureSupervisor(argv, os.environ, label="cap").start()
        time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", runner])
    try:
        assert until(lambda: pidfile.exists() and pidfile.read_text().strip())
        pid = int(pidfile.read_text())
        assert process_exists(pid)
        proc.kill()
        proc.wait(10)
        assert until(lambda: gone(pid), timeout=10)
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (0, "exit code 0"),
        (2, "exit code 2"),
        (-9, "killed by SIGKILL"),
        (None, "could not be started"),
    ],
)
def test_describe_exit(code: int | None, words: str) -> None:
    """Exit statuses read as words, a negative one as the signal that killed the process."""
    assert describe_exit(code) == words


def test_a_child_that_ran_long_enough_restarts_after_the_first_delay(
    supervisors: list[CaptureSupervisor], caplog: pytest.LogCaptureFixture
) -> None:
    """The delay starts over once a child has run `healthy_s`: it does not keep doubling."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    options = SupervisorOptions(backoff_s=0.025, max_backoff_s=0.1, healthy_s=0.05)
    sup = CaptureSupervisor(
        child("import time; time.sleep(0.08); raise SystemExit(4)"),
        os.environ,
        label="cap",
        options=options,
    )
    supervisors.append(sup)
    sup.start()
    assert until(lambda: sup.restarts >= 3, timeout=20)
    sup.stop()
    delays = re.findall(r"\(exit code 4\) after \S+ s; restarting it in (\S+) s", caplog.text)
    assert delays[:3] == ["0.025", "0.025", "0.025"]
