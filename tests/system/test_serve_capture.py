"""`serve -i` captures in a supervised child process (`dronewatch agent`) that ships to the service
over HTTP: the whole sensor runs in a network namespace this test creates, on one end of a veth
pair whose other end tcpreplay feeds a recorded DJI Fly session, so no frame leaves it. The API is
reached on that namespace's loopback from a thread switched into it (setns)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.live import DRONEWATCH, free_port, stop_service
from tests.pcaps import PCAPS

VIOLATION = PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap"
PHONE_IP = "10.77.0.2"
CLOUD = ("47.88.0.13", 443)
SNI = "mydjiflight.dji.com"
CLONE_NEWNET = 0x40000000
CAPTURING = re.compile(r"capturing on \S+ with \S+ \(capture process (\d+)\)")

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0
    or shutil.which("ip") is None
    or shutil.which("dumpcap") is None
    or shutil.which("tcpreplay") is None,
    reason="needs root, iproute2, dumpcap and tcpreplay to build a namespace and capture in it",
)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@contextlib.contextmanager
def netns(name: str) -> Iterator[None]:
    """Sockets this thread opens in the block belong to network namespace `name`."""
    setns = ctypes.CDLL(None, use_errno=True).setns
    here = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    there = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if setns(there, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {name}")
        yield
    finally:
        setns(here, CLONE_NEWNET)
        os.close(here)
        os.close(there)


def in_group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(stat.parent.name))
    return pids


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def until(cond: Callable[[], Any], timeout: float) -> Any:
    """`cond()` once it is truthy, or its last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.2)
    return cond()


@pytest.fixture(scope="module")
def session_with_reset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded DJI Fly violation with a client RST appended to its upload: live, the
    upload's flow then ends in seconds instead of at the 300 s TCP idle timeout."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap, wrpcap

    packets = list(rdpcap(str(VIOLATION)))
    last = [
        p
        for p in packets
        if TCP in p and p[IP].src == PHONE_IP and (p[IP].dst, p[TCP].dport) == CLOUD
    ][-1]
    tcp = last[TCP]
    reset = (
        Ether(src=last[Ether].src, dst=last[Ether].dst)
        / IP(src=PHONE_IP, dst=CLOUD[0])
        / TCP(sport=tcp.sport, dport=tcp.dport, flags="R", seq=tcp.seq + len(tcp.payload))
    )
    reset.time = packets[-1].time + 0.05
    out = tmp_path_factory.mktemp("capture") / "violation_reset.pcap"
    wrpcap(str(out), [*packets, reset])
    return out


@dataclass
class Sensor:
    """`dronewatch serve -i` running in namespace `ns`, capturing on `capture_if`."""

    ns: str
    send_if: str
    port: int
    data: Path
    proc: subprocess.Popen[str]
    admin: str = ""
    log: list[str] = field(default_factory=list)

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """One API request, as admin, over the namespace's loopback."""
        with (
            netns(self.ns),
            httpx.Client(
                base_url=f"http://127.0.0.1:{self.port}",
                headers={"Authorization": f"Bearer {self.admin}"},
                timeout=10,
            ) as c,
        ):
            return c.request(method, path, **kw)

    def replay(self, capture: Path) -> None:
        """tcpreplay the capture into the other end of the veth pair, at four times its pace."""
        subprocess.run(
            ["ip", "netns", "exec", self.ns, "tcpreplay", "-q", "-x", "4", "-i", self.send_if]
            + [str(capture)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def child_pids(self) -> list[int]:
        """The pids the server reported capture children under, in order."""
        return [int(m.group(1)) for line in list(self.log) if (m := CAPTURING.search(line))]

    def metric(self, name: str) -> float | None:
        text = self.request("GET", "/metrics").text
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else None

    def alerts(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.request("GET", "/api/v1/alerts").json()["items"]
        return items


@pytest.fixture
def sensor(tmp_path: Path) -> Iterator[Sensor]:
    """A namespace with a veth pair (both ends inside), `serve -i` on one end with its capture
    child running, and the phone of the recording declared with LDM on."""
    s = uuid.uuid4().hex[:6]
    ns, send_if, capture_if = f"dwsc{s}", "send0", "mirror0"
    sh("ip", "netns", "add", ns)
    proc: subprocess.Popen[str] | None = None
    try:
        sh("ip", "-n", ns, "link", "add", send_if, "type", "veth", "peer", "name", capture_if)
        for name in ("lo", send_if, capture_if):
            sh("ip", "-n", ns, "link", "set", name, "up")
        port = free_port()
        proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, str(DRONEWATCH), "--log-level", "info", "serve"]
            + ["--data-dir", str(tmp_path), "--port", str(port), "-i", capture_if]
            # dumpcap: the child starts a process of its own, which supervision must clear too.
            + ["--backend", "dumpcap"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        sensor = Sensor(ns, send_if, port, tmp_path, proc)
        started = threading.Event()

        def drain() -> None:
            assert proc is not None and proc.stderr is not None
            with contextlib.suppress(ValueError, OSError):  # closed by stop_service
                for line in proc.stderr:
                    sensor.log.append(line)
                    if line.strip().startswith("dw_") and not sensor.admin:
                        sensor.admin = line.strip()
                    if CAPTURING.search(line):
                        started.set()

        threading.Thread(target=drain, daemon=True).start()
        assert started.wait(40), "".join(sensor.log)
        time.sleep(1.0)  # dumpcap opens the interface right after the agent says so
        dev = sensor.request("POST", "/api/v1/devices", json={"ip": PHONE_IP, "name": "phone"})
        ldm = sensor.request(
            "PUT", f"/api/v1/devices/{dev.json()['id']}/ldm", json={"on": True, "at": 0}
        )
        assert ldm.status_code == 200, ldm.text
        yield sensor
    finally:
        if proc is not None:
            stop_service(proc)
        pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
        for pid in pids.stdout.split():  # only processes inside this test's namespace
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def test_capture_child_delivers_alerts_over_http(sensor: Sensor, session_with_reset: Path) -> None:
    """Traffic on the interface becomes an alert through the child process, which posts with
    an agent key of its own that is on neither its command line nor in the server's log."""
    (pid,) = sensor.child_pids()
    assert int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) == (
        sensor.proc.pid
    )
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert b"agent" in cmdline and b"--interface=mirror0" in cmdline
    environ = dict(
        e.split(b"=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if e
    )
    secret = environ[b"DRONEWATCH_API_KEY"]
    assert secret.startswith(b"dw_") and secret != sensor.admin.encode()
    assert not any(secret in arg for arg in cmdline)
    sensor.replay(session_with_reset)
    alerts = until(sensor.alerts, 40)
    assert [(a["device_ip"], a["dest_name"], a["dest_ip"]) for a in alerts] == [
        (PHONE_IP, SNI, CLOUD[0])
    ], "".join(sensor.log)
    keys = {k["name"]: k for k in sensor.request("GET", "/api/v1/keys").json()}
    capture_keys = [k for name, k in keys.items() if name.startswith("serve-capture@")]
    assert len(capture_keys) == 1
    assert capture_keys[0]["role"] == "agent" and capture_keys[0]["last_used_at"] is not None
    assert secret.decode() not in "".join(sensor.log)
    assert sensor.metric("dronewatch_capture_child_up") == 1.0
    assert sensor.metric("dronewatch_capture_child_pid") == pid


def test_api_answers_while_the_capture_child_is_suspended(
    sensor: Sensor, session_with_reset: Path
) -> None:
    """With the capture child stopped by SIGSTOP, the API still answers at once and reports the
    child suspended; after SIGCONT the child captures again and delivers."""
    (pid,) = sensor.child_pids()
    os.kill(pid, signal.SIGSTOP)
    try:
        sensor.replay(session_with_reset)
        for path in ("/healthz", "/readyz", "/api/v1/alerts", "/metrics"):
            began = time.monotonic()
            assert sensor.request("GET", path).status_code == 200
            assert time.monotonic() - began < 2.0, path
        text = sensor.request("GET", "/metrics").text
        assert 'dronewatch_capture_child_state{state="suspended"} 1.0' in text
        assert "dronewatch_capture_child_up 0.0" in text
    finally:
        os.kill(pid, signal.SIGCONT)
    # The packets waited in the capture pipe: once resumed, the child delivers them.
    assert len(until(sensor.alerts, 40)) == 1
    assert sensor.metric("dronewatch_capture_child_up") == 1.0
    assert sensor.child_pids() == [pid]


def test_killed_capture_child_is_restarted(sensor: Sensor, session_with_reset: Path) -> None:
    """SIGKILL on the capture child: the server logs how it ended, clears what it left (its
    dumpcap), starts a new child, and the new child delivers the traffic that follows."""
    (first,) = sensor.child_pids()
    left = [p for p in in_group(first) if p != first]
    assert left, "the child's dumpcap is in its process group"
    os.kill(first, signal.SIGKILL)
    pids = until(lambda: sensor.child_pids()[1:], 40)
    assert pids and pids[0] != first, "".join(sensor.log)
    assert "ended unexpectedly (killed by SIGKILL)" in "".join(sensor.log)
    assert until(lambda: not any(alive(p) for p in left), 10)
    assert sensor.metric("dronewatch_capture_child_restarts_total") == 1.0
    assert sensor.metric("dronewatch_capture_child_last_exit_code") == -signal.SIGKILL
    time.sleep(1.0)  # the new child's dumpcap opens the interface
    sensor.replay(session_with_reset)
    assert [a["dest_name"] for a in until(sensor.alerts, 40)] == [SNI]


def test_stopping_the_server_stops_the_child(sensor: Sensor) -> None:
    """SIGTERM on the server stops its capture child and everything the child started, and
    revokes the child's key; the spool stays in the data directory."""
    (pid,) = sensor.child_pids()
    group = in_group(pid)
    assert pid in group and len(group) >= 2  # the agent and its dumpcap
    sensor.proc.send_signal(signal.SIGTERM)
    sensor.proc.wait(30)
    assert until(lambda: not any(alive(p) for p in group), 10), in_group(pid)
    listed = subprocess.run(
        [str(DRONEWATCH), "keys", "list", "--data-dir", str(sensor.data)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (line,) = [ln for ln in listed.splitlines() if ln.startswith("serve-capture@")]
    assert line.split()[-1] == "revoked" and " agent " in line
    assert (sensor.data / "spool" / "spool.db").is_file()
