"""Process, capture, namespace and certificate plumbing for the recorder (runs as root)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
AGENT = HERE / "agent.py"
PY = sys.executable


def log(msg: str) -> None:
    print(f"[record] {msg}", flush=True)


def ns_prefix(netns: str | None) -> list[str]:
    return ["ip", "netns", "exec", netns] if netns else []


def run(argv: Sequence[str], netns: str | None = None, check: bool = True) -> str:
    """Run a short command (optionally inside NETNS) and return its stdout."""
    cmd = [*ns_prefix(netns), *argv]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if check and res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


class Proc:
    """A background process whose output is kept in a log file; stopped by its own pid."""

    def __init__(
        self, name: str, argv: Sequence[str], workdir: Path, netns: str | None = None
    ) -> None:
        self.name = name
        self.argv = [*ns_prefix(netns), *argv]
        self.logpath = workdir / f"{name}.log"
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._logf = open(self.logpath, "w")  # noqa: SIM115 - closed in stop()
        # `ip netns exec` execs the command, so this pid is the command's own.
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._logf.write(line)
            self._logf.flush()
            with self._cond:
                self._lines.append(line)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def output(self) -> str:
        with self._cond:
            return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = 15.0) -> str:
        """Wait until a line matching PATTERN was printed; fail if the process ends first."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines:
                    if rx.search(line):
                        return line
                if self.popen.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(
                        f"{self.name} exited ({self.popen.returncode}) before /{pattern}/:\n"
                        + "".join(self._lines[-20:])
                    )
                left = deadline - time.monotonic()
                if left <= 0:
                    raise RuntimeError(
                        f"{self.name}: no /{pattern}/ after {timeout}s:\n"
                        + "".join(self._lines[-20:])
                    )
                self._cond.wait(min(left, 0.2))

    def wait(self, timeout: float) -> int:
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"{self.name} still running after {timeout}s:\n{self.output()[-2000:]}"
            ) from exc
        self._reader.join(5)
        return rc

    def stop(self, sig: int = signal.SIGTERM, grace: float = 5.0) -> int | None:
        """Signal the process (by pid) and reap it; SIGKILL after GRACE seconds."""
        if self.popen.poll() is None:
            try:
                os.kill(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._reader.join(5)
        if self.popen.stdout is not None and not self._reader.is_alive():
            self.popen.stdout.close()
        if not self._logf.closed:
            self._logf.close()
        return self.popen.returncode


class Procs:
    """The background processes of one recording; stop_all() ends them in reverse order."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(self, name: str, argv: Sequence[str], netns: str | None = None) -> Proc:
        p = Proc(name, argv, self.workdir, netns)
        self.procs.append(p)
        return p

    def agent(self, name: str, args: Sequence[str], netns: str | None = None) -> Proc:
        """Start `agent.py ARGS` and wait for its READY line."""
        p = self.start(name, [PY, "-u", str(AGENT), *args], netns)
        p.wait_for(r"^READY")
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            try:
                p.stop()
            except Exception as exc:  # keep stopping the others
                log(f"stopping {p.name}: {exc}")
        self.procs.clear()


class Capture:
    """tcpdump on one interface into a file; start() returns once it is listening."""

    def __init__(
        self,
        procs: Procs,
        name: str,
        iface: str,
        path: Path,
        bpf: str = "",
        netns: str | None = None,
    ) -> None:
        self.procs, self.name, self.iface, self.path = procs, name, iface, path
        self.bpf, self.netns = bpf, netns
        self.proc: Proc | None = None
        self.captured = -1

    def start(self) -> Capture:
        argv = [
            "tcpdump",
            "-i",
            self.iface,
            "-s",
            "65535",
            "-B",
            "32768",
            "-U",
            "--immediate-mode",
            "-nn",
            "-Z",
            "root",
            "-w",
            str(self.path),
        ]
        if self.bpf:
            argv.append(self.bpf)
        self.proc = self.procs.start(self.name, argv, self.netns)
        self.proc.wait_for(r"listening on")
        return self

    def stop(self) -> int:
        """Let the last packets arrive, SIGINT tcpdump (it flushes and closes), check drops."""
        assert self.proc is not None
        time.sleep(1.0)
        self.proc.stop(signal.SIGINT, grace=10)
        out = self.proc.output()
        m = re.search(r"(\d+) packets? captured", out)
        d = re.search(r"(\d+) packets? dropped by kernel", out)
        if not m:
            raise RuntimeError(f"tcpdump {self.name} did not report its count:\n{out}")
        if d and int(d.group(1)):
            raise RuntimeError(f"tcpdump {self.name} dropped packets:\n{out}")
        self.captured = int(m.group(1))
        return self.captured


# --- network namespaces ---------------------------------------------------------------------


def netns_exists(name: str) -> bool:
    return name in run(["ip", "netns", "list"]).split()


def netns_delete(name: str) -> None:
    """Delete NAME, ending only the processes that run inside it (by pid)."""
    if not netns_exists(name):
        return
    pids = run(["ip", "netns", "pids", name], check=False).split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    run(["ip", "netns", "del", name], check=False)


def netns_create(name: str) -> None:
    netns_delete(name)
    run(["ip", "netns", "add", name])
    # No IPv6 (no router solicitations or MLD reports in the captures), loopback up.
    run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"], netns=name)
    run(["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"], netns=name)
    run(["ip", "link", "set", "lo", "up"], netns=name)


def veth(ns_a: str, if_a: str, mac_a: str, ns_b: str, if_b: str, mac_b: str) -> None:
    """A veth pair between two namespaces, with fixed MACs and offloads off (MTU-sized,
    checksummed frames in the capture, as a real NIC would put on the air)."""
    run(
        [
            "ip",
            "link",
            "add",
            if_a,
            "netns",
            ns_a,
            "address",
            mac_a,
            "type",
            "veth",
            "peer",
            "name",
            if_b,
            "netns",
            ns_b,
            "address",
            mac_b,
        ]
    )
    for ns, dev in ((ns_a, if_a), (ns_b, if_b)):
        run(
            ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off"],
            netns=ns,
            check=False,
        )
        run(["ip", "link", "set", dev, "up"], netns=ns)


def veth_to_bridge(ns: str, dev: str, mac: str, host_dev: str, bridge: str) -> None:
    """`dev` in namespace `ns`, its peer `host_dev` in the root namespace on `bridge` (created
    when missing): the host sees the namespace's traffic there, like a switch's mirror port."""
    if not Path(f"/sys/class/net/{bridge}").exists():
        run(["ip", "link", "add", bridge, "type", "bridge"])
        run(["ip", "link", "set", bridge, "up"])
    run(
        [
            "ip", "link", "add", host_dev, "type", "veth",
            "peer", "name", dev, "netns", ns, "address", mac,
        ]
    )  # fmt: skip
    run(["ip", "link", "set", host_dev, "master", bridge, "up"])
    run(
        ["ethtool", "-K", dev, "tso", "off", "gso", "off", "gro", "off", "tx", "off"],
        netns=ns,
        check=False,
    )
    run(["ip", "link", "set", dev, "up"], netns=ns)


def addr(ns: str, dev: str, cidr: str) -> None:
    run(["ip", "addr", "add", cidr, "dev", dev], netns=ns)


def route(ns: str, dest: str, via: str) -> None:
    run(["ip", "route", "add", dest, "via", via], netns=ns)


# --- certificates ---------------------------------------------------------------------------


def make_cert(workdir: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """A self-signed EC certificate for NAMES (plus 127.0.0.1 and ::1); returns (cert, key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "dronewatch lab (self-signed)"),
        ]
    )
    now = dt.datetime.now(dt.UTC)  # noqa: TID251 - certificate validity is wall-clock
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    san += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = workdir / "lab-cert.pem", workdir / "lab-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def require_tools(tools: Sequence[str]) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        raise SystemExit(
            f"missing tools: {', '.join(missing)} "
            "(apt-get install -y tcpdump tshark mosquitto tcpreplay ffmpeg ethtool)"
        )
