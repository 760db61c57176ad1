#!/usr/bin/env python3
"""Dashboard polling while agents ingest: latency of the web page's requests against a real
`dronewatch serve` holding 1M alerts, with 0, 50 and 150 clients posting batches at once.

    .venv/bin/python bench/poll.py                            # N = 0, 50, 150; 30 s each
    .venv/bin/python bench/poll.py --clients 0,150 --duration 20 --out /tmp/poll.md
    .venv/bin/python bench/poll.py --setting ingest_queue=4   # DRONEWATCH_INGEST_QUEUE=4

The service runs as `dronewatch serve` (SQLite, the default) in a temporary data directory,
with a reader key for the dashboard and an admin key for the ingesting clients, made with
`dronewatch keys create` as the README says. Its database is seeded first: one declared device
with LDM on, one batch ingested through the service's own code (`Service.ingest`) so the alerts
are what the judge writes, then copies of those alerts bulk-inserted straight into the `alerts`
table through the project's db layer (`dronewatch.api.db`, SQLAlchemy Core) until it holds
`--alerts` of them, spread over 10,000 device addresses, with the alert sequence counter moved
past them. Seeding 1M alerts takes a minute or two; the seeded database is kept in
`--seed-cache` (bench/work/, not in git) and copied for the next run.

Each phase starts N ingesting clients (asyncio + httpx, one process) that post without pause,
as `dronewatch replay --api --ldm on` posts: batches of about 500 observation records, here ten
copies of the records `dji_fly_ldm_off.pcap` gives (flows, dns, tls, http, quic, rtmp,
dji_wifi, evidence with frames, egress and the ground station's `devices` record), each copy
with flow uids of its own. Each client is an agent at a site of its own: its ground station
has an address and MAC of its own and is replaced by a new one every `--batches-per-device`
batches (a new phone), so the judge's work per batch stays bounded, as it does for a fleet. A
client answered 503 or 429 posts the same batch again after a wait, as
the agents' senders do (Retry-After, or a backoff from 0.5 s doubling to 10 s if that is
longer). After `--warmup` seconds, one dashboard client (its own process, one
keep-alive connection) makes the page's polling request, `GET /api/v1/alerts?since=<last
seq>&limit=500` (again while `has_more`), every `--interval` seconds, and every `--page-every`
seconds, on a connection and thread of its own as a browser would, the page's other reads: the
device list, the newest page of alerts, and the declared device's verdict (`--overview` adds
`/api/v1/overview`, which the page reads every 10 s).

Everything runs on this machine: the clients take CPU the service would otherwise have (the
table gives the CPU each side used), so the figures are those of a machine that serves and
loads itself at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import measured_on, table  # noqa: E402

SCENARIO = ROOT / "pcaps" / "scenarios" / "dji_fly_ldm_off.pcap"
DEFAULT_SEED_CACHE = ROOT / "bench" / "work" / "poll-seed-{alerts}.db"
DEFAULT_OUT = ROOT / "bench" / "work" / "poll.md"
SEED_DEVICES = 10_000
"""Device addresses the seeded alerts are spread over."""
SEED_DEVICE_IP = "172.16.0.1"
"""The declared device (LDM on) whose verdict the dashboard reads; it holds its share of seeds."""
CLIENT_TIMEOUT_S = 300.0
BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 10.0
"""A client refused (503, 429) waits as `dronewatch replay` and the agents' HttpSender do: the
Retry-After asked for, or longer: 0.5 s, doubling up to 10 s, from its last success."""
HELP_EPILOG = "Writes the markdown table to --out and prints it."


# --- the records the ingesting clients post -----------------------------------------------------


def session_template() -> tuple[str, int]:
    """The records of the scenario capture as JSON text with placeholders (@IP@, @MAC@ for the
    ground station, @U@ ending every uid), and how many records it holds. `capture` records are
    left out: an agent reports coverage now and then, not in every batch."""
    from dronewatch.capture.files import FileSource
    from dronewatch.core.pipeline import AnalysisConfig, run_source
    from dronewatch.geoip.maxmind import MaxMindResolver
    from dronewatch.judge.classify import Classifier
    from dronewatch.judge.evidence import EvidenceOptions
    from dronewatch.transport.replay import Batcher

    records: list[dict[str, Any]] = []
    config = AnalysisConfig(
        classifier=Classifier.load(),
        resolver=MaxMindResolver.bundled(),
        evidence=EvidenceOptions(),
    )
    batcher = Batcher(lambda _batch, recs: records.extend(recs), size=1 << 30)
    run_source(FileSource(str(SCENARIO)), batcher, config)
    batcher.flush()
    records = [r for r in records if r["log"] != "capture"]
    station = next(
        r for r in records if r["log"] == "devices" and "ground_station" in r.get("roles", [])
    )
    text = json.dumps(records, separators=(",", ":"))
    text = text.replace(f'"{station["ip"]}"', '"@IP@"').replace(f'"{station["mac"]}"', '"@MAC@"')
    uids = {str(r["uid"]) for r in records if isinstance(r.get("uid"), str)}
    for uid in sorted(uids, key=len, reverse=True):
        text = text.replace(f'"{uid}"', f'"{uid[:8]}@U@"')
    json.loads(text.replace("@U@", "0"))  # still JSON
    return text, len(records)


def device_address(phase: int, client: int, device: int) -> tuple[str, str]:
    """(IP, MAC) of a client's `device`-th ground station in a phase: unique in the run."""
    g = ((phase * 256 + client) * 4096 + device) & 0xFFFFFF
    ip = f"10.{g >> 16}.{(g >> 8) & 255}.{g & 255}"
    return ip, f"02:bd:00:{g >> 16:02x}:{(g >> 8) & 255:02x}:{g & 255:02x}"


def batch_body(
    template: str, copies: int, phase: int, client: int, seq: int, per_device: int
) -> bytes:
    """The JSON body of one client's `seq`-th batch: `copies` copies of the session."""
    ip, mac = device_address(phase, client, seq // per_device)
    session = template.replace("@IP@", ip).replace("@MAC@", mac)
    parts = [
        session.replace("@U@", f"{phase}{client:03d}{seq:07d}{k:02d}")[1:-1] for k in range(copies)
    ]
    return (
        f'{{"batch_id":"bench-p{phase}-c{client}-{seq}","agent":"bench-{client}",'
        f'"discovered_ldm":true,"records":[{",".join(parts)}]}}'
    ).encode()


# --- seeding -----------------------------------------------------------------------------------


def seed(data_dir: Path, alerts: int, template: str) -> None:
    """Fill a fresh database in `data_dir` with `alerts` alerts (see the module docstring)."""
    from sqlalchemy import insert, update

    from dronewatch.api import db
    from dronewatch.api.service import Service
    from dronewatch.api.settings import Settings
    from dronewatch.api.store import AlertFilter

    service = Service.open(Settings(data_dir=data_dir))
    store = service.store
    try:
        device = store.create_device({"ip": SEED_DEVICE_IP, "name": "bench-phone"}, by="bench")
        store.set_ldm(device["id"], True, 0.0, by="bench")
        records = json.loads(
            template.replace("@IP@", SEED_DEVICE_IP)
            .replace("@MAC@", "02:bd:ff:00:00:01")
            .replace("@U@", "seed")
        )
        service.ingest("bench-seed", "bench", records, True)
        docs = store.list_alerts(AlertFilter(), since=0, cursor=None, limit=10_000)
        if not docs:
            raise SystemExit("seeding: the scenario raised no alert")
        have = len(docs)
        base_seq = max(d["seq"] for d in docs)
        chunk = 20_000
        started = time.monotonic()
        for lo in range(0, alerts - have, chunk):
            rows = []
            for i in range(lo, min(alerts - have, lo + chunk)):
                rows.append(_seed_row(docs[i % len(docs)], i, base_seq + 1 + i, device["id"]))
            with store.engine.begin() as conn:
                conn.execute(insert(db.alerts), rows)
            if lo and lo % 200_000 == 0:
                print(f"  seeded {lo + have:,} alerts in {time.monotonic() - started:.0f} s")
        with store.engine.begin() as conn:
            conn.execute(
                update(db.counters)
                .where(db.counters.c.name == "alert_seq")
                .values(value=base_seq + alerts - have)
            )
    finally:
        service.close()


def _seed_row(template: dict[str, Any], i: int, seq: int, declared_id: int) -> dict[str, Any]:
    from dronewatch.api.store import alert_columns

    group = i % SEED_DEVICES
    ip = f"172.16.{(group + 1) >> 8}.{(group + 1) & 255}"  # group 0: SEED_DEVICE_IP
    status = "acknowledged" if i % 10 == 3 else "resolved" if i % 10 == 7 else "open"
    shift = (i // SEED_DEVICES) * 60.0
    doc = {
        k: v
        for k, v in template.items()
        if k
        not in (
            "seq",
            "device_id",
            "acked_by",
            "acked_at",
            "resolved_by",
            "resolved_at",
            "updated_at",
        )
    }
    doc.update(
        id=f"seed{i:028d}",
        device_ip=ip,
        first_seen=template["first_seen"] - 86_400 * 30 + shift,
        last_seen=template["last_seen"] - 86_400 * 30 + shift,
        status=status,
    )
    return {
        "id": doc["id"],
        **alert_columns(doc, seq, declared_id if group == 0 else None),
        "acked_by": "bench" if status == "acknowledged" else None,
        "acked_at": doc["last_seen"] if status == "acknowledged" else None,
        "resolved_by": "bench" if status == "resolved" else None,
        "resolved_at": doc["last_seen"] if status == "resolved" else None,
        "doc": doc,
        "updated_at": doc["last_seen"],
    }


# --- the service -------------------------------------------------------------------------------


def dronewatch(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a dronewatch command; its standard output."""
    cmd = [sys.executable, "-m", "dronewatch.cli.app", *args]
    return subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"dronewatch serve exited with {proc.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit("dronewatch serve did not start")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process and of its live descendants so far (the
    service's writer process and fork server count as the service)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        total += sum(cpu_seconds(int(c)) for c in children)
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy since boot (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(values[:8]) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


# --- the ingesting clients (a process of their own) ---------------------------------------------


async def ingest_clients(args: argparse.Namespace) -> dict[str, Any]:
    """Post batches from `args.clients` clients until `args.run_for` seconds have passed."""
    template = Path(args.template).read_text()
    stats: dict[str, Any] = {"ok": 0, "busy": 0, "errors": 0, "other": {}, "latency": []}
    deadline = time.monotonic() + args.run_for
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    headers = {"Authorization": f"Bearer {args.key}", "Content-Type": "application/json"}
    async with httpx.AsyncClient(
        base_url=args.url, headers=headers, limits=limits, timeout=CLIENT_TIMEOUT_S
    ) as client:

        async def one(c: int) -> None:
            seq = 0
            body = batch_body(template, args.copies, args.phase, c, seq, args.per_device)
            await asyncio.sleep(c * 0.5 / max(args.clients, 1))  # not all in the same instant
            delay = BACKOFF_FIRST_S
            while time.monotonic() < deadline:
                started = time.perf_counter()
                try:
                    resp = await client.post("/api/v1/ingest", content=body)
                except httpx.HTTPError:
                    stats["errors"] += 1
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                if resp.status_code in (429, 503):
                    stats["busy"] += 1
                    await asyncio.sleep(max(delay, retry_after(resp)))
                    delay = min(delay * 2, BACKOFF_MAX_S)
                    continue
                delay = BACKOFF_FIRST_S
                if resp.status_code == 200:
                    stats["ok"] += 1
                    stats["latency"].append(time.perf_counter() - started)
                else:
                    other = stats["other"]
                    other[str(resp.status_code)] = other.get(str(resp.status_code), 0) + 1
                seq += 1
                body = batch_body(template, args.copies, args.phase, c, seq, args.per_device)

        tasks = [asyncio.create_task(one(c)) for c in range(args.clients)]
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), timeout=args.run_for + 5)
        except TimeoutError:
            pass  # a post still waiting for its answer: not counted
        for t in tasks:
            t.cancel()
    return stats


# --- the dashboard (a process of its own) -------------------------------------------------------


def dashboard(args: argparse.Namespace) -> dict[str, Any]:
    """Make the page's requests for `args.run_for` seconds; latencies by request. The polling
    and the page's other reads go on connections and threads of their own, as a browser makes
    them, so a slow verdict does not hold up the polls."""
    samples: dict[str, list[float]] = {}
    failed: dict[str, int] = {}
    headers = {"Authorization": f"Bearer {args.key}"}

    def getter(client: httpx.Client) -> Any:
        def get(name: str, path: str) -> Any:
            started = time.perf_counter()
            resp = client.get(path)
            samples.setdefault(name, []).append(time.perf_counter() - started)
            if resp.status_code != 200:
                failed[name] = failed.get(name, 0) + 1
                return None
            return resp.json()

        return get

    poll_client = httpx.Client(base_url=args.url, headers=headers, timeout=CLIENT_TIMEOUT_S)
    page_client = httpx.Client(base_url=args.url, headers=headers, timeout=CLIENT_TIMEOUT_S)
    poll, page = getter(poll_client), getter(page_client)
    newest = poll("alerts newest page", "/api/v1/alerts?limit=1")
    last = newest["items"][0]["seq"] if newest and newest["items"] else 0
    declared = [d for d in page("devices", "/api/v1/devices") or [] if d["ip"] == SEED_DEVICE_IP]
    device_id = declared[0]["id"] if declared else 1
    samples.clear()
    failed.clear()
    end = time.monotonic() + args.run_for

    def other_reads() -> None:
        next_page = next_overview = time.monotonic()
        while time.monotonic() < end:
            if time.monotonic() >= next_page:
                next_page += args.page_every
                page("devices", "/api/v1/devices")
                page("alerts newest page", "/api/v1/alerts?limit=100")
                page("device verdict", f"/api/v1/devices/{device_id}/verdict")
            if args.overview and time.monotonic() >= next_overview:
                next_overview += 10.0
                page("overview", "/api/v1/overview")
            wake = min(next_page, next_overview if args.overview else next_page)
            time.sleep(max(0.0, min(wake, end) - time.monotonic()))

    others = threading.Thread(target=other_reads, daemon=True)
    others.start()
    next_tick = time.monotonic()
    while time.monotonic() < end:
        while True:
            body = poll("poll: alerts?since", f"/api/v1/alerts?since={last}&limit=500")
            if body is None:
                break
            last = body["last_seq"]
            if not body["has_more"]:
                break
        next_tick = max(next_tick + args.interval, time.monotonic())
        time.sleep(max(0.0, next_tick - time.monotonic()))
    others.join(CLIENT_TIMEOUT_S)
    poll_client.close()
    page_client.close()
    return {"samples": samples, "failed": failed}


# --- the run -----------------------------------------------------------------------------------


def retry_after(resp: httpx.Response) -> float:
    """The seconds a Retry-After header asks for (0 without one). The bench reads it itself, so
    that it runs against the code before the ingest queue too."""
    value = resp.headers.get("retry-after", "").strip()
    return float(min(int(value), 60)) if value.isascii() and value.isdigit() else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def child(
    role: str, args: argparse.Namespace, extra: list[str], nice: int = 0
) -> subprocess.Popen[bytes]:
    """This script in another process, in `role`, at niceness `nice`."""
    cmd = [sys.executable, __file__, "--role", role, "--url", args.url, *extra]
    return subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, preexec_fn=(lambda: os.nice(nice)) if nice else None
    )


def run_phase(
    args: argparse.Namespace, phase: int, clients: int, server: subprocess.Popen[bytes], work: Path
) -> dict[str, Any]:
    """One phase: `clients` ingesting clients and the dashboard; everything measured."""
    ingest_out = work / f"ingest-{phase}.json"
    poll_out = work / f"poll-{phase}.json"
    ingester = None
    if clients:
        ingester = child(
            "ingest",
            args,
            [
                f"--key={args.agent_key}",
                f"--template={work / 'template.json'}",
                f"--clients={clients}",
                f"--phase={phase}",
                f"--copies={args.copies}",
                f"--per-device={args.batches_per_device}",
                f"--run-for={args.warmup + args.duration}",
                f"--result={ingest_out}",
            ],
            nice=args.client_nice,
        )
    time.sleep(args.warmup)
    pids = {"service": server.pid, "clients": ingester.pid if ingester else 0}
    cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items() if pid}
    busy_before = machine_busy()
    wall_before = time.monotonic()
    poller = child(
        "poll",
        args,
        [
            f"--key={args.reader_key}",
            f"--run-for={args.duration}",
            f"--interval={args.interval}",
            f"--page-every={args.page_every}",
            f"--result={poll_out}",
            *(["--overview"] if args.overview else []),
        ],
    )
    cpu_poller = 0.0
    while poller.poll() is None:
        cpu_poller = max(cpu_poller, cpu_seconds(poller.pid))
        time.sleep(0.2)
    wall = time.monotonic() - wall_before
    cores = {name: (cpu_seconds(pids[name]) - cpu) / wall for name, cpu in cpu_before.items()}
    cores["clients"] = cores.get("clients", 0.0) + cpu_poller / wall
    cores["machine"] = (machine_busy() - busy_before) / wall
    if ingester is not None:
        ingester.wait()
    time.sleep(args.cooldown)
    if poller.returncode != 0 or (ingester is not None and ingester.returncode != 0):
        raise SystemExit(f"phase {phase}: a client process failed")
    polled = json.loads(poll_out.read_text())
    ingested = json.loads(ingest_out.read_text()) if ingester is not None else None
    return {"clients": clients, "polled": polled, "ingested": ingested, "cores": cores}


def report(args: argparse.Namespace, phases: list[dict[str, Any]], records: int) -> str:
    """The markdown the run writes."""
    rows: list[tuple[str, ...]] = [
        (
            "ingesting clients",
            "request",
            "samples",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms",
            "not 200",
        )
    ]
    for ph in phases:
        for name, values in ph["polled"]["samples"].items():
            rows.append(
                (
                    str(ph["clients"]),
                    name,
                    str(len(values)),
                    ms(percentile(values, 50)),
                    ms(percentile(values, 95)),
                    ms(percentile(values, 99)),
                    ms(max(values)),
                    str(ph["polled"]["failed"].get(name, 0)),
                )
            )
    load_rows: list[tuple[str, ...]] = [
        (
            "ingesting clients",
            "batches taken/s",
            "records/s",
            "ingest p50 ms",
            "ingest p99 ms",
            "503/429 answers",
            "errors, other",
            "service CPU (cores)",
            "clients CPU (cores)",
            "other jobs' CPU (cores)",
        )
    ]
    for ph in phases:
        ing = ph["ingested"]
        lat = ing["latency"] if ing else []
        cores = ph["cores"]
        span = args.warmup + args.duration
        load_rows.append(
            (
                str(ph["clients"]),
                f"{ing['ok'] / span:,.1f}" if ing else "",
                f"{ing['ok'] * records / span:,.0f}" if ing else "",
                ms(percentile(lat, 50)) if lat else "",
                ms(percentile(lat, 99)) if lat else "",
                f"{ing['busy']:,}" if ing else "",
                f"{ing['errors']}, {ing['other'] or '-'}" if ing else "",
                f"{cores['service']:.2f}",
                f"{cores['clients']:.2f}",
                f"{max(0.0, cores['machine'] - cores['service'] - cores['clients']):.2f}",
            )
        )
    command = " ".join(["bench/poll.py", *sys.argv[1:]])
    return "\n".join(
        [
            f"{measured_on()}; `{command}`.",
            "",
            f"{args.alerts:,} alerts stored before the first phase; each phase: {args.warmup:g} s "
            f"of ingest alone, then {args.duration:g} s with the dashboard polling every "
            f"{args.interval:g} s (and the page's other reads every {args.page_every:g} s); "
            f"batches of {records} records.",
            "",
            table(rows),
            "",
            table(load_rows),
            "",
        ]
    )


def orchestrate(args: argparse.Namespace) -> int:
    counts = [int(c) for c in args.clients.split(",")]
    template, per_session = session_template()
    records = per_session * args.copies
    work = Path(tempfile.mkdtemp(prefix="dronewatch-poll-"))
    data_dir = work / "data"
    data_dir.mkdir()
    (work / "template.json").write_text(template)
    cache = Path(str(args.seed_cache).format(alerts=args.alerts))
    db_file = data_dir / "dronewatch.db"
    if cache.is_file():
        print(f"seeded database: copy of {cache}")
        shutil.copyfile(cache, db_file)
    else:
        print(f"seeding {args.alerts:,} alerts (kept in {cache} for the next run)")
        started = time.monotonic()
        seed(data_dir, args.alerts, template)
        print(f"  seeded in {time.monotonic() - started:.0f} s")
        cache.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(db_file, cache)
    env = {**os.environ}
    for setting in args.setting:
        name, _, value = setting.partition("=")
        env[f"DRONEWATCH_{name.upper()}"] = value
    flags = [f"--data-dir={data_dir}"]
    args.reader_key = dronewatch(
        "keys", "create", "--role=reader", "--name=bench-dashboard", *flags, env=env
    ).strip()
    args.agent_key = dronewatch(
        "keys", "create", "--role=admin", "--name=bench-agents", *flags, env=env
    ).strip()
    port = free_port()
    args.url = f"http://127.0.0.1:{port}"
    log = (work / "serve.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "dronewatch.cli.app", "serve", *flags, f"--port={port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    phases = []
    try:
        wait_ready(args.url, server)
        for phase, clients in enumerate(counts):
            print(f"phase {phase}: {clients} ingesting clients")
            result = run_phase(args, phase, clients, server, work)
            poll = result["polled"]["samples"].get("poll: alerts?since", [])
            if poll:
                print(
                    f"  poll p50 {ms(percentile(poll, 50))} ms, p99 {ms(percentile(poll, 99))} ms "
                    f"({len(poll)} samples)"
                )
            phases.append(result)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
    text = report(args, phases, records)
    print()
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"wrote {out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"kept {work} (service log in serve.log)")
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Latency of the dashboard's polling while N clients ingest.",
        epilog=HELP_EPILOG,
    )
    p.add_argument("--clients", default="0,50,150", help="ingesting clients per phase (0,50,150)")
    p.add_argument("--alerts", type=int, default=1_000_000, help="alerts stored first (1000000)")
    p.add_argument("--duration", type=float, default=30.0, help="seconds measured per phase (30)")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of ingest before (5)")
    p.add_argument("--cooldown", type=float, default=5.0, help="seconds between phases (5)")
    p.add_argument("--interval", type=float, default=0.1, help="seconds between polls (0.1)")
    p.add_argument(
        "--page-every", type=float, default=2.0, help="seconds between the other reads (2)"
    )
    p.add_argument("--overview", action="store_true", help="read /api/v1/overview every 10 s too")
    p.add_argument("--copies", type=int, default=10, help="sessions per batch (10: ~480 records)")
    p.add_argument(
        "--batches-per-device",
        type=int,
        default=10,
        help="batches a client sends for one ground station before a new one (10)",
    )
    p.add_argument(
        "--seed-cache",
        default=str(DEFAULT_SEED_CACHE),
        help="seeded database kept for the next run ({alerts} is replaced; default %(default)s)",
    )
    p.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a service setting, passed as DRONEWATCH_NAME; repeatable",
    )
    p.add_argument("--out", default=str(DEFAULT_OUT), help="markdown file (%(default)s)")
    p.add_argument(
        "--client-nice",
        type=int,
        default=0,
        metavar="N",
        help="run the ingesting clients at this niceness (0): 19 stands in for clients on "
        "machines of their own, leaving this machine's CPU to the service",
    )
    p.add_argument("--keep", action="store_true", help="keep the temporary data directory")
    # The client processes' own arguments (this script runs itself as them).
    for name in ("--role", "--url", "--key", "--template", "--result"):
        p.add_argument(name, help=argparse.SUPPRESS)
    for name in ("--phase", "--per-device"):
        p.add_argument(name, type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--run-for", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.role == "ingest":
        args.clients = int(args.clients)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.role == "ingest":
        Path(args.result).write_text(json.dumps(asyncio.run(ingest_clients(args))))
        return 0
    if args.role == "poll":
        Path(args.result).write_text(json.dumps(dashboard(args)))
        return 0
    return orchestrate(args)


if __name__ == "__main__":
    sys.exit(main())
