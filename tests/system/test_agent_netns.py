"""The live agent on real traffic: a phone and a cloud in network namespaces this test creates,
joined by a bridge the agent captures on, as a mirrored switch port would show them."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dronewatch.agent.spool import Spool
from dronewatch.capture.decode import Decoder
from dronewatch.capture.files import FileSource
from dronewatch.core.flow import ip_str
from tests.live import (
    LiveService,
    free_port,
    run_service,
    spawn_agent,
    spawn_service,
    sqlite_settings,
    stop_agent,
    stop_service,
)
from tests.servers import NatsServer

ROOT = Path(__file__).resolve().parents[2]
DRONEWATCH = Path(sys.executable).parent / "dronewatch"
PHONE_IP = "10.200.0.2"
CLOUD_IP = "198.51.100.10"
SNI = "flysafe-api.dji.com"
PHONE6 = "2001:db8:1::10"
"""The phone on an IPv6 network: a global address (documentation range: not local by itself)."""
ROUTER6 = "2001:db8:1::1"
CLOUD6 = "2001:db8:2::20"
PHONE_MAC = "02:dd:00:00:00:10"
PHONE_PUBLIC4 = "192.0.2.10"
"""The phone on a site whose hosts have public IPv4 addresses (documentation range)."""

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("dumpcap") is None,
    reason="needs root, iproute2 and dumpcap to build namespaces and capture",
)


def sh(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True)


@dataclass
class Lab:
    phone: str
    cloud: str
    bridge: str
    tmp: Path
    cloud_ip: str = CLOUD_IP

    def in_ns(self, ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *args]

    def upload(self, size: int = 200_000) -> None:
        """A real TLS client in the phone namespace uploads `size` bytes to the cloud."""
        subprocess.run(
            self.in_ns(
                self.phone,
                sys.executable,
                "-m",
                "tests.netns_peer",
                "client",
                self.cloud_ip,
                "443",
                SNI,
                str(size),
            ),
            check=True,
            cwd=ROOT,
            timeout=30,
            capture_output=True,
        )


def _cert(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SNI)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """phone (10.200.0.2) and cloud (198.51.100.10) namespaces on a bridge in this namespace."""
    yield from _lab(tmp_path, v6=False)


@pytest.fixture(params=["ipv6", "public-ipv4"])
def public_lab(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lab]:
    """The phone (MAC `PHONE_MAC`) at an address no table of local ranges holds: a global IPv6
    one (2001:db8:1::10/64, the cloud's router at 2001:db8:1::1, the cloud at 2001:db8:2::20
    behind it), or a public IPv4 one (192.0.2.10/24, the router at 192.0.2.1, the cloud at
    198.51.100.10); the kernels find each other by Neighbor Discovery or ARP on the bridge, as
    on a site's network."""
    yield from _lab(tmp_path, v6=request.param == "ipv6", public=True)


def _lab(tmp_path: Path, v6: bool, public: bool = False) -> Iterator[Lab]:
    s = uuid.uuid4().hex[:6]
    phone, cloud, br = f"dwph{s}", f"dwcl{s}", f"dwbr{s}"
    made: list[list[str]] = []
    if v6:
        phone_addrs, cloud_addrs = [f"{PHONE6}/64"], [f"{ROUTER6}/64", f"{CLOUD6}/128"]
    elif public:
        phone_addrs, cloud_addrs = [f"{PHONE_PUBLIC4}/24"], ["192.0.2.1/24", f"{CLOUD_IP}/32"]
    else:
        phone_addrs, cloud_addrs = [f"{PHONE_IP}/24"], ["10.200.0.1/24", f"{CLOUD_IP}/32"]
    try:
        for ns in (phone, cloud):
            sh("ip", "netns", "add", ns)
            made.append(["ip", "netns", "del", ns])
        sh("ip", "link", "add", br, "type", "bridge")
        made.append(["ip", "link", "del", br])
        for ns, host_if, addrs in (
            (phone, f"dwp{s}", phone_addrs),
            (cloud, f"dwc{s}", cloud_addrs),
        ):
            sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", ns)
            sh("ip", "link", "set", host_if, "master", br, "up")
            if ns == phone and public:
                sh("ip", "-n", ns, "link", "set", "eth0", "address", PHONE_MAC)
            for addr in addrs:
                # No Duplicate Address Detection: the address is usable at once.
                sh("ip", "-n", ns, "addr", "add", addr, "dev", "eth0", *(("nodad",) if v6 else ()))
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "set", br, "up")
        if v6:
            sh("ip", "-n", phone, "-6", "route", "add", "2001:db8:2::/64", "via", ROUTER6)
        elif public:
            sh("ip", "-n", phone, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
        else:
            sh("ip", "-n", phone, "route", "add", "198.51.100.0/24", "via", "10.200.0.1")
        cert, key = _cert(tmp_path)
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                cloud,
                sys.executable,
                "-m",
                "tests.netns_peer",
                "server",
                str(cert),
                str(key),
                "443",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        try:
            yield Lab(phone, cloud, br, tmp_path, CLOUD6 if v6 else CLOUD_IP)
        finally:
            server.terminate()
            server.wait(5)
            server.stdout.close()
    finally:
        for cmd in reversed(made):
            subprocess.run(cmd, capture_output=True)


def start_agent(
    lab: Lab,
    api: str,
    key: str,
    spool: Path,
    publish: str | None = None,
    extra: tuple[str, ...] = (),
    workers: int = 1,
) -> subprocess.Popen[str]:
    """Start the agent; return once each of its `workers` has opened the capture."""
    dest = ["--publish", publish] if publish else ["--api", api, "--key", key]
    return spawn_agent(
        "-i",
        lab.bridge,
        *dest,
        "--spool",
        str(spool),
        "--flush-s",
        "0.5",
        "--name",
        "lab-sensor",
        *extra,
        workers=workers,
    )


def wait_for_alerts(live: LiveService, n: int, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    alerts: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        with live.client() as c:
            alerts = c.get("/api/v1/alerts", params={"limit": 100}).json()["items"]
        if len(alerts) >= n:
            return alerts
        time.sleep(0.3)
    return alerts


def declare_phone(live: LiveService, ldm: bool) -> None:
    with live.client() as c:
        dev = c.post("/api/v1/devices", json={"ip": PHONE_IP, "name": "pilot-phone"}).json()
        c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": ldm, "at": 0}).raise_for_status()


def test_agent_raises_alert_for_real_upload(lab: Lab) -> None:
    """LDM on: a TLS upload from the phone namespace reaches the API as an alert, with evidence."""
    ring = lab.tmp / "ring"
    for live in run_service(sqlite_settings(lab.tmp / "svc")):
        declare_phone(live, ldm=True)
        agent = start_agent(
            lab,
            live.url,
            live.key("agent", "sensor"),
            lab.tmp / "spool",
            extra=("--ring", str(ring)),
        )
        try:
            lab.upload()
            assert len(wait_for_alerts(live, 1)) == 1
        finally:
            log = stop_agent(agent)
        # Stopped: every flow is flushed and delivered, so the alert is final now.
        alerts = wait_for_alerts(live, 1)
        assert len(alerts) == 1, log
        # The pcap ring kept the packets: the upload's ClientHello is in it.
        kept = [p for f in sorted(ring.glob("ring-*.pcap")) for p in FileSource(str(f)).packets()]
        assert any(SNI.encode() in p.data for p in kept)
        decoder = Decoder()
        upload = [
            pkt
            for pkt in map(decoder.decode, kept)
            if pkt is not None
            and (ip_str(pkt.src), ip_str(pkt.dst), pkt.dport) == (PHONE_IP, CLOUD_IP, 443)
        ]
        alert = alerts[0]
        assert (alert["device_ip"], alert["dest_name"], alert["dest_ip"]) == (
            PHONE_IP,
            SNI,
            CLOUD_IP,
        )
        assert (alert["vendor"], alert["category"]) == ("DJI", "geofence")
        # Exactly the IP bytes the agent captured from the phone to the cloud (what the kernel
        # handed over: a loaded machine may lose a segment), and most of the 200 kB upload.
        assert int(str(alert["bytes_out"])) == sum(pkt.ip_len for pkt in upload)
        assert int(str(alert["bytes_out"])) > 100_000
        with live.client() as c:
            (ev,) = c.get(f"/api/v1/alerts/{alert['id']}/evidence").json()
        assert ev["frames"] and ev["uid"] == alert["uids"][0]  # type: ignore[index]


def test_agent_alerts_for_a_phone_at_a_public_address(public_lab: Lab) -> None:
    """A phone on an IPv6 network sends from a global address, and a site may give its hosts
    public IPv4 addresses: no table of local ranges holds them. The agent is told nothing of
    the phone, the service knows it by its MAC. The kernels' Neighbor Discovery or ARP on the
    bridge shows the address on the link, so the agent takes the phone's end for local and the
    upload for something that left it: the service raises the alert on the device it declared."""
    lab6 = public_lab
    phone_ip = PHONE6 if lab6.cloud_ip == CLOUD6 else PHONE_PUBLIC4
    for live in run_service(sqlite_settings(lab6.tmp / "svc")):
        with live.client() as c:
            dev = c.post("/api/v1/devices", json={"mac": PHONE_MAC, "name": "pilot-phone"}).json()
            c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 0}).raise_for_status()
        agent = start_agent(lab6, live.url, live.key("agent", "sensor"), lab6.tmp / "spool")
        try:
            lab6.upload()
            alerts = wait_for_alerts(live, 1)
        finally:
            log = stop_agent(agent)
        alerts = wait_for_alerts(live, 1)
        assert len(alerts) == 1, log
        alert = alerts[0]
        assert (alert["device_ip"], alert["device_mac"], alert["dest_name"], alert["dest_ip"]) == (
            phone_ip,
            PHONE_MAC,
            SNI,
            lab6.cloud_ip,
        )
        assert int(str(alert["bytes_out"])) > 100_000


def test_agent_ldm_off_stores_flows_without_alert(lab: Lab) -> None:
    """LDM off: the same upload is stored as a flow of the device, and raises nothing."""
    for live in run_service(sqlite_settings(lab.tmp / "svc")):
        declare_phone(live, ldm=False)
        agent = start_agent(lab, live.url, live.key("agent", "sensor"), lab.tmp / "spool")
        try:
            lab.upload()
            deadline = time.monotonic() + 30
            flows: list[dict[str, object]] = []
            while time.monotonic() < deadline and not flows:
                with live.client() as c:
                    flows = c.get("/api/v1/devices/1/flows").json()["items"]
                time.sleep(0.3)
        finally:
            stop_agent(agent)
        assert [f["server_name"] for f in flows] == [SNI]
        assert wait_for_alerts(live, 1, timeout=1) == []


@contextlib.contextmanager
def spawned(lab: Lab, *args: str) -> Iterator[httpx.Client]:
    """`dronewatch serve ARGS` as a process, the phone declared with LDM on; an admin client."""
    port = free_port()
    proc, admin = spawn_service(lab.tmp / "svc", port, *args)
    try:
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {admin}"}
        ) as c:
            dev = c.post("/api/v1/devices", json={"ip": PHONE_IP, "name": "pilot-phone"}).json()
            c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 0}).raise_for_status()
            yield c
    finally:
        stop_service(proc)


def first_alerts(c: httpx.Client, timeout: float = 30) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    alerts: list[dict[str, object]] = []
    while time.monotonic() < deadline and not alerts:
        alerts = c.get("/api/v1/alerts").json()["items"]
        time.sleep(0.3)
    return alerts


def test_agent_publishes_to_nats_for_a_consuming_service(lab: Lab, nats_server: NatsServer) -> None:
    """agent --publish and serve --consume: the upload's alert arrives through JetStream."""
    with spawned(lab, "--consume", nats_server.url) as c:
        agent = start_agent(lab, "", "", lab.tmp / "spool", publish=nats_server.url)
        try:
            lab.upload()
            alerts = first_alerts(c)
        finally:
            log = stop_agent(agent)
    assert [(a["device_ip"], a["dest_name"]) for a in alerts] == [(PHONE_IP, SNI)], log


def test_afpacket_workers_share_the_interface_and_report_coverage(lab: Lab) -> None:
    """Two AF_PACKET workers in one fanout group: the upload's flow is seen once (one alert, the
    full byte count), and coverage reports with kernel drop counts arrive while they run."""
    for live in run_service(sqlite_settings(lab.tmp / "svc")):
        declare_phone(live, ldm=True)
        agent = start_agent(
            lab,
            live.url,
            live.key("agent", "sensor"),
            lab.tmp / "spool",
            extra=("--workers", "2", "--report-s", "0.5"),
            workers=2,
        )
        try:
            lab.upload(300_000)
            alerts = wait_for_alerts(live, 1)
            time.sleep(1.5)
            with live.client() as c:
                verdict = c.get("/api/v1/devices/1/verdict").json()
                flows = c.get("/api/v1/devices/1/flows").json()["items"]
                alerts = c.get("/api/v1/alerts").json()["items"]
        finally:
            log = stop_agent(agent)
        # Both directions of the connection went to one worker: one whole flow, not two halves.
        tls = [f for f in flows if f["resp_p"] == 443]
        assert len(alerts) == 1 and len(tls) == 1 and tls[0]["server_name"] == SNI, log
        # The handshake both ways in that worker, and every byte of the flow in the alert.
        assert str(tls[0]["history"]).startswith("Sh"), tls
        assert alerts[0]["dest_name"] == SNI
        assert int(str(alerts[0]["bytes_out"])) == tls[0]["orig_bytes"] > 100_000
        coverage = verdict["coverage"]
        assert coverage["captures"] >= 2 and coverage["drops"] == 0, verdict
        assert log.count("stopped: ") == 2, log  # both workers ended cleanly


def test_serve_captures_on_an_interface(lab: Lab) -> None:
    """The all-in-one sensor: serve --interface raises the upload's alert by itself."""
    with spawned(lab, "--interface", lab.bridge) as c:
        time.sleep(1.0)  # dumpcap opens the interface
        lab.upload()
        alerts = first_alerts(c)
    assert [(a["device_ip"], a["dest_name"]) for a in alerts] == [(PHONE_IP, SNI)]


def test_spool_delivers_once_when_service_returns(lab: Lab) -> None:
    """Service down while traffic flows: the batches wait in the spool and arrive once, later."""
    settings = sqlite_settings(lab.tmp / "svc")
    url = f"http://127.0.0.1:{settings.port}"
    spool_dir = lab.tmp / "spool"
    agent = start_agent(lab, url, "dw_not_yet", spool_dir)
    try:
        lab.upload()
        spool = Spool(spool_dir)
        deadline = time.monotonic() + 20
        while spool.pending()[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert spool.pending()[0] > 0, "nothing reached the spool"
        spool.close()
    finally:
        stop_agent(agent)
    # The service comes up (with the key the agent will use), then a new agent run ships it.
    for live in run_service(settings):
        declare_phone(live, ldm=True)
        live.service.store.engine.dispose()
        key = live.key("agent", "sensor")
        agent = start_agent(lab, live.url, key, spool_dir)
        try:
            alerts = wait_for_alerts(live, 1)
            time.sleep(1.5)
            again = wait_for_alerts(live, 1)
        finally:
            stop_agent(agent)
        assert len(alerts) == 1 and len(again) == 1
        assert alerts[0]["flows"] == 1
        with httpx.Client(base_url=live.url) as c:
            assert c.get("/readyz").status_code == 200
        assert Spool(spool_dir).pending()[0] == 0


def test_agent_refuses_missing_interface(tmp_path: Path) -> None:
    """A wrong interface name is a one-line error and exit 2."""
    proc = subprocess.run(
        [
            str(DRONEWATCH),
            "agent",
            "-i",
            "nosuchif0",
            "--api",
            f"http://127.0.0.1:{free_port()}",
            "--key",
            "k",
            "--spool",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "no network interface named 'nosuchif0'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2", "--backend", "dumpcap"], "--backend afpacket"),
        (["--workers", "0"], "--workers must be at least 1"),
        (["--report-s", "0"], "--report-s must be above 0"),
        (["--drain-s", "-1"], "--drain-s must be 0 or more"),
        (["--ring-mb", "0", "--ring", "RING"], "at least 4 KB"),
    ],
)
def test_agent_refuses_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    """Bad combinations are one-line errors with exit 2, before any capture starts."""
    args = [a.replace("RING", str(tmp_path / "ring")) for a in args]
    proc = subprocess.run(
        [str(DRONEWATCH), "agent", "-i", "lo", "--publish", "nats://127.0.0.1:1", *args],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_workers_command_line_drops_its_own_options() -> None:
    from dronewatch.cli.agent import _without_workers

    argv = ["agent", "-i", "eth1", "--workers", "3", "--backend=afpacket", "--api", "http://x"]
    assert _without_workers(argv) == ["agent", "-i", "eth1", "--api", "http://x"]


def test_coverage_reports_add_up_to_the_capture(tmp_path: Path) -> None:
    """Interval coverage records, then the last one at stop: together they count every packet
    the capture took, each interval starting where the one before ended."""
    import threading

    from dronewatch.agent.metrics import serve_metrics
    from dronewatch.agent.runner import Agent, AgentOptions
    from dronewatch.capture.live import LiveSource
    from dronewatch.core.pipeline import AnalysisConfig

    source = LiveSource(["lo"], backend="dumpcap", bpf="udp port 9999")
    spool = Spool(tmp_path / "spool", 10**7)
    agent = Agent(source, AnalysisConfig(), spool, None, AgentOptions(report_s=0.5))
    port = free_port()
    metrics = serve_metrics(agent, "127.0.0.1", port)
    runner = threading.Thread(target=agent.run)
    runner.start()
    time.sleep(1.5)
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(40):
            s.sendto(b"x", ("127.0.0.1", 9999))
            time.sleep(0.05)
    time.sleep(1.0)
    scraped = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "dronewatch_agent_packets_total 40.0" in scraped
    assert "dronewatch_agent_flows_total" in scraped and "dronewatch_agent_spool_batches" in scraped
    agent.stop()
    runner.join(30)
    metrics.shutdown()
    metrics.server_close()
    reports = []
    while (batch := spool.peek(timeout=0.1)) is not None:
        reports += [r for r in batch.records if r.get("log") == "capture"]
        spool.ack(batch.seq)
    spool.close()
    assert len(reports) >= 3
    assert sum(int(r["packets"]) for r in reports) == source.stats.packets == 40
    assert all(a["last_ts"] == b["ts"] for a, b in zip(reports, reports[1:], strict=False))
    # The one UDP flow stays open until the stop: reports cut while it lived say so (a service
    # that never hears from this agent again knows it was never judged); the last one holds none.
    assert reports[-1]["open_flows"] == 0 and "open_since" not in reports[-1]
    held = [r for r in reports[:-1] if r["open_flows"]]
    assert held and all(r["open_flows"] == 1 and r["open_since"] <= r["last_ts"] for r in held)
