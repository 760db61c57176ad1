"""Scale-out over NATS JetStream, with real servers: agents, two services, one PostgreSQL.

Two agents capture traffic that tcpreplay sends into veth pairs and publish their batches to a
real nats-server; two `dronewatch serve --consume` processes share the durable consumer and write
into one PostgreSQL database. One service is killed (SIGKILL) while it is consuming: every batch
the agents delivered still arrives, exactly once, with every flow they reported.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.live import free_port, spawn_agent, spawn_service, stop_agent, stop_service
from tests.pcaps import PCAPS
from tests.servers import NatsServer, _need

DRONEWATCH = Path(sys.executable).parent / "dronewatch"
ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = sorted((PCAPS / "scenarios").glob("*.pcap"))


def start_service(db: str, nats: str, port: int, data: Path) -> subprocess.Popen[str]:
    proc, _ = spawn_service(
        data,
        port,
        "--db",
        db,
        "--consume",
        nats,
        "--open-reads",
        env={"DRONEWATCH_CONSUME_ACK_WAIT_S": "3"},
    )
    return proc


def publish(nats: str, agent: str, files: list[Path]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            str(DRONEWATCH),
            "replay",
            *map(str, files),
            "--publish",
            nats,
            "--agent",
            agent,
            "--batch-size",
            "5",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def sent(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """(flows, batches) a finished publisher reports."""
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = re.findall(r"([\d,]+) flows in ([\d,]+) batches", out)
    assert "every batch delivered to" in out
    assert lines, out
    return (
        sum(int(f.replace(",", "")) for f, _ in lines),
        sum(int(b.replace(",", "")) for _, b in lines),
    )


def consumed(port: int) -> float:
    """Batches a service has ingested (its Prometheus counter)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    match = re.search(
        r'^dronewatch_ingest_batches_total\{result="accepted"\} ([\d.e+]+)$', text, re.M
    )
    return float(match.group(1)) if match else 0.0


def counts(db: str) -> tuple[int, int, int]:
    """(batches, records in them, flows) in the database."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            batches, records = conn.execute(
                sa.text("SELECT count(*), coalesce(sum(records), 0) FROM ingest_batches")
            ).one()
            flows = conn.execute(sa.text("SELECT count(DISTINCT uid) FROM flows")).scalar_one()
            rows = conn.execute(sa.text("SELECT count(*) FROM flows")).scalar_one()
            assert rows == flows
    finally:
        engine.dispose()
    return int(batches), int(records), int(flows)


@pytest.fixture
def bench_capture(tmp_path: Path) -> Path:
    """A larger capture (the benchmark's generator, a few thousand packets)."""
    out = tmp_path / "sessions.pcap"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "make_capture.py"),
            "--packets",
            "12000",
            "--out",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    return out


@pytest.fixture
def veths() -> Iterator[list[tuple[str, str]]]:
    """Two veth pairs in this namespace: (send end, capture end) each."""
    if os.geteuid() != 0 or shutil.which("tcpreplay") is None:
        _need("root and tcpreplay", "tcpreplay")
    suffix = uuid.uuid4().hex[:5]
    pairs = [(f"dwso{k}{suffix}", f"dwsi{k}{suffix}") for k in range(2)]
    try:
        for send, capture in pairs:
            subprocess.run(
                ["ip", "link", "add", send, "type", "veth", "peer", "name", capture], check=True
            )
            for name in (send, capture):
                subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield pairs
    finally:
        for send, _ in pairs:
            subprocess.run(["ip", "link", "del", send], capture_output=True)


def start_agent(interface: str, nats: str, name: str, spool: Path) -> subprocess.Popen[str]:
    return spawn_agent(
        "-i",
        interface,
        "--publish",
        nats,
        "--name",
        name,
        "--spool",
        str(spool),
        "--flush-s",
        "0.2",
        "--report-s",
        "1",
        "--drain-s",
        "60",  # a loaded CI machine may take more than the default 10 s to publish the last batches
    )


def flows_by_agent(db: str) -> dict[str, int]:
    """The flows in the database, by the agent that sent them."""
    engine = sa.create_engine(db)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT agent, count(*) FROM flows GROUP BY agent"))
            return {str(agent): int(n) for agent, n in rows}
    finally:
        engine.dispose()


def delivered(proc: subprocess.Popen[str]) -> tuple[int, int]:
    """Stop the agent: the (flows, batches) it says it delivered."""
    log = stop_agent(proc, timeout=120)
    # Batches left in the spool were not sent: their flows are counted but not in the database.
    assert "stay in the spool" not in log, log
    found = re.findall(
        r"stopped: \d+ packets, (\d+) flows, drops \S+, (\d+) batches delivered", log
    )
    assert found, log
    return int(found[-1][0]), int(found[-1][1])


def test_killed_service_loses_and_duplicates_nothing(
    tmp_path: Path,
    pg_db_url: str,
    nats_server: NatsServer,
    bench_capture: Path,
    veths: list[tuple[str, str]],
) -> None:
    """Two agents capture replayed traffic and publish to JetStream; two services consume into
    one PostgreSQL; one service is SIGKILLed while it works. Every batch and every flow the
    agents sent is in the database once."""
    ports = [free_port(), free_port()]
    first = start_service(pg_db_url, nats_server.url, ports[0], tmp_path / "s1")
    second = start_service(pg_db_url, nats_server.url, ports[1], tmp_path / "s2")
    agents = [
        start_agent(veths[k][1], nats_server.url, f"sensor-{k}", tmp_path / f"spool{k}")
        for k in range(2)
    ]
    try:
        replays = []
        for k, files in enumerate([[bench_capture], SCENARIOS]):
            # The bench capture's first session is the scenarios' own packets (their Tello and
            # DHCP flows byte for byte): sent at the same pace from the same instant, a flow
            # would reach both sensors at the same microsecond and be the same flow, the same
            # uid, stored once. Half a second apart they are two flows, as the test means them.
            if k:
                time.sleep(0.5)
            replays.append(
                subprocess.Popen(
                    ["tcpreplay", "-q", "-i", veths[k][0], "--pps", "2000", *map(str, files)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 60
        while consumed(ports[0]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert consumed(ports[0]) >= 3, "the first service never took a batch"
        first.kill()  # mid-stream: batches it holds are not acknowledged
        first.wait(10)
        for replay in replays:
            assert replay.wait(120) == 0
        time.sleep(1.0)
        totals = [delivered(a) for a in agents]
        flows = sum(f for f, _ in totals)
        batches = sum(b for _, b in totals)
        deadline = time.monotonic() + 90
        while counts(pg_db_url)[0] < batches and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(4)  # past the ack wait: a redelivered batch would show as a duplicate now
        got_batches, records, got_flows = counts(pg_db_url)
        assert got_batches == batches
        # Each agent's flows as it counted them and as the database holds them: which sensor a
        # difference comes from, should one show.
        assert got_flows == flows > 50, (totals, flows_by_agent(pg_db_url), records)
        assert records >= flows
        assert consumed(ports[1]) > 0
    finally:
        for agent in agents:
            if agent.poll() is None:
                agent.kill()
                agent.wait(10)
        for proc in (first, second):
            stop_service(proc)


def test_serve_names_an_unreachable_nats_server(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [
            str(DRONEWATCH),
            "serve",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(free_port()),
            "--consume",
            f"nats://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert f"cannot reach the NATS server at nats://127.0.0.1:{port}" in proc.stderr
    assert "created the first API key" not in proc.stderr  # nothing made before the check
    assert "Traceback" not in proc.stderr


def test_bad_nats_url_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(DRONEWATCH), "serve", "--data-dir", str(tmp_path), "--consume", "http://x"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "not a NATS URL" in proc.stderr and "Traceback" not in proc.stderr


def test_replay_publishes_every_batch(tmp_path: Path, nats_server: NatsServer) -> None:
    """`replay --publish`: a lab's capture goes through JetStream into a consuming service."""
    port = free_port()
    service, _ = spawn_service(tmp_path / "svc", port, "--consume", nats_server.url, "--open-reads")
    try:
        flows, batches = sent(publish(nats_server.url, "lab", SCENARIOS))
        deadline = time.monotonic() + 60
        while consumed(port) < batches and time.monotonic() < deadline:
            time.sleep(0.2)
        assert consumed(port) == batches
        db = f"sqlite:///{tmp_path / 'svc' / 'dronewatch.db'}"
        assert counts(db)[1:] >= (flows, flows) and counts(db)[2] == flows
    finally:
        stop_service(service)
