"""`dronewatch agent`: capture on interfaces and feed the alert service."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dronewatch.cli.analyzer_options import add_analyzer_option, analyzer_options
from dronewatch.cli.args import (
    LOCAL_SUBNET_HELP,
    add_device,
    add_engine_options,
    add_rules_and_geoip,
    engine_options,
)
from dronewatch.exceptions import DronewatchError
from dronewatch.output.terminal import inline

if TYPE_CHECKING:
    from dronewatch.transport.publisher import NatsPublisher

logger = logging.getLogger(__name__)

KEY_ENV = "DRONEWATCH_API_KEY"


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "agent",
        help="capture on network interfaces (a mirrored port) and feed the alert service",
        description=(
            "Capture on one or more interfaces (e.g. fed by a mirrored switch port), rebuild and "
            "classify flows, and send them in batches to a dronewatch service, which raises the "
            "alerts under its device policy. Batches wait in a durable on-disk spool while the "
            "service is unreachable and are delivered in order, once each, when it is back. "
            "SIGTERM or Ctrl-C stops cleanly: open flows are flushed and the spool drained."
        ),
        epilog="exit codes: 0 stopped cleanly, 2 bad usage or the capture could not start",
    )
    p.add_argument(
        "--interface",
        "-i",
        action="append",
        required=True,
        metavar="IF",
        help="interface to capture on; repeatable",
    )
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--api", metavar="URL", help="service URL: batches go to its ingest API")
    dest.add_argument(
        "--publish",
        metavar="NATS_URL",
        help=(
            "publish batches to NATS JetStream instead (nats://HOST:PORT), for services that "
            "consume them with serve --consume"
        ),
    )
    p.add_argument("--key", metavar="KEY", help=f"agent API key for --api (default ${KEY_ENV})")
    p.add_argument(
        "--name", default=None, help="this agent's name in the service (default: the key's name)"
    )
    p.add_argument(
        "--backend",
        choices=["afpacket", "dumpcap", "scapy"],
        help=(
            "capture backend: afpacket (Linux AF_PACKET ring, walked in C; the default where "
            "this process may open AF_PACKET sockets; needed for --workers), dumpcap (the "
            "default where only Wireshark's dumpcap may capture), scapy (portable, slower, "
            "drops unknown)"
        ),
    )
    p.add_argument(
        "--buffer-mb",
        type=int,
        default=64,
        metavar="MB",
        help="kernel capture buffer per interface: the AF_PACKET ring, or dumpcap -B (64)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=(
            "processes sharing the interfaces by flow hash (AF_PACKET fanout; implies "
            "--backend afpacket); each has its own spool under the spool directory (1)"
        ),
    )
    p.add_argument(
        "--report-s",
        type=float,
        default=10.0,
        metavar="S",
        help="how often coverage (packets, drops) is reported to the service (10 s)",
    )
    ring = p.add_argument_group("pcap ring (raw evidence, bounded on disk)")
    ring.add_argument(
        "--ring", type=Path, metavar="DIR", help="keep the captured packets in rotating pcap files"
    )
    ring.add_argument("--ring-mb", type=int, default=64, metavar="MB", help="size of a file (64)")
    ring.add_argument(
        "--ring-files", type=int, default=8, metavar="N", help="files kept, oldest dropped (8)"
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help=(
            "serve the agent's Prometheus metrics on this port (worker K of --workers on PORT+K)"
        ),
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", metavar="ADDR", help="address for --metrics-port"
    )
    p.add_argument("--fanout-group", type=int, help=argparse.SUPPRESS)
    p.add_argument("--worker-index", type=int, help=argparse.SUPPRESS)
    f = p.add_mutually_exclusive_group()
    f.add_argument("--filter", metavar="BPF", default="", help="capture filter (BPF syntax)")
    f.add_argument(
        "--devices-only",
        action="store_true",
        help="capture only the devices declared in the service (BPF from their IPs and MACs)",
    )
    p.add_argument("--snaplen", type=int, default=262144, help="bytes kept per packet")
    add_device(p)
    p.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="spool directory (default ~/.local/share/dronewatch/spool)",
    )
    p.add_argument("--spool-max-mb", type=int, default=512, help="spool size limit (512 MB)")
    p.add_argument(
        "--flush-s", type=float, default=2.0, help="longest a record waits before it is sent (2 s)"
    )
    p.add_argument(
        "--drain-s",
        type=float,
        default=10.0,
        help="on stop, how long to keep delivering the spool; what is left stays in it for the "
        "next start (10 s)",
    )
    add_rules_and_geoip(p, rules_default=[])
    p.add_argument(
        "--local-subnet",
        action="append",
        default=[],
        metavar="CIDR",
        help=LOCAL_SUBNET_HELP,
    )
    p.add_argument(
        "--log-format",
        choices=["json", "text"],
        default="json",
        help="stderr log lines as JSON objects (default) or text",
    )
    add_analyzer_option(p)
    add_engine_options(p)
    p.set_defaults(func=cmd_agent)


def _devices_filter(api: str, key: str) -> str:
    import httpx

    from dronewatch.capture.live import bpf_for

    try:
        resp = httpx.get(
            api.rstrip("/") + "/api/v1/devices",
            headers={"Authorization": f"Bearer {key}"},
            timeout=10,
        )
        resp.raise_for_status()
    except httpx.HTTPError as exc:
        raise DronewatchError(
            f"--devices-only: cannot read the devices from {api}: {exc}"
        ) from None
    devices: list[dict[str, Any]] = resp.json()
    bpf = bpf_for(
        [d["ip"] for d in devices if d.get("ip")], [d["mac"] for d in devices if d.get("mac")]
    )
    if not bpf:
        raise DronewatchError("--devices-only: the service has no device with an IP or MAC yet")
    return bpf


def cmd_agent(args: argparse.Namespace) -> int:
    from dronewatch.agent.runner import Agent, AgentOptions
    from dronewatch.agent.shipper import Shipper
    from dronewatch.agent.spool import Spool
    from dronewatch.capture.live import LiveSource
    from dronewatch.core.pipeline import AnalysisConfig
    from dronewatch.geoip.local import LocalNets
    from dronewatch.geoip.maxmind import MaxMindResolver
    from dronewatch.judge.classify import Classifier
    from dronewatch.judge.evidence import EvidenceOptions
    from dronewatch.judge.policy import Policy, with_devices
    from dronewatch.paths import default_data_dir
    from dronewatch.transport.replay import HttpSender

    if args.log_format == "json":
        root = logging.getLogger()
        for handler in root.handlers:
            handler.setFormatter(JsonFormatter())
        if root.level > logging.INFO:
            root.setLevel(logging.INFO)
    key = args.key or os.environ.get(KEY_ENV)
    if args.api and not key:
        raise DronewatchError(f"an API key is needed: --key KEY or ${KEY_ENV}")
    if args.flush_s <= 0:
        raise DronewatchError("--flush-s must be above 0")
    if args.report_s <= 0:
        raise DronewatchError("--report-s must be above 0")
    if args.drain_s < 0:
        raise DronewatchError("--drain-s must be 0 or more")
    if args.workers < 1:
        raise DronewatchError("--workers must be at least 1")
    if args.buffer_mb < 2:
        raise DronewatchError("--buffer-mb must be at least 2")
    analyzers = analyzer_options(args.analyzer_option)  # a mistake stops it before any worker
    if args.workers > 1:
        if args.backend not in (None, "afpacket"):
            raise DronewatchError("--workers shares interfaces with AF_PACKET: --backend afpacket")
        return _run_workers(args)
    if args.devices_only and not args.api:
        raise DronewatchError("--devices-only reads the devices from the service: it needs --api")
    bpf = _devices_filter(args.api, key or "") if args.devices_only else args.filter
    source = LiveSource(
        args.interface,
        bpf=bpf,
        backend=args.backend,
        snaplen=args.snaplen,
        fanout_group=args.fanout_group,
        buffer_mb=args.buffer_mb,
    )
    policy = with_devices(Policy(), args.device)
    local = LocalNets([*args.local_subnet, *policy.local_subnets])
    resolver = MaxMindResolver.open(args.geoip_dir, local=local)
    config = AnalysisConfig(
        policy=policy,
        classifier=Classifier.load(args.rules),
        resolver=resolver,
        evidence=EvidenceOptions(),
        announce_devices=True,
        analyzers=analyzers,
        engine=engine_options(args),
        checksums=args.checksums,
    )
    spool_dir = args.spool or default_data_dir() / "spool"
    name = args.name or "agent"
    if args.worker_index is not None:
        spool_dir = spool_dir / f"worker-{args.worker_index}"
        name = f"{name}-w{args.worker_index}"
    spool = Spool(spool_dir, args.spool_max_mb * 1024 * 1024)
    sender: HttpSender | NatsPublisher
    if args.publish:
        from dronewatch.transport.publisher import NatsPublisher

        sender = NatsPublisher(args.publish, agent=name)
    else:
        sender = HttpSender(args.api, key or "", agent=name, retries=0)
    ring = None
    if args.ring:
        from dronewatch.capture.ring import PcapRing

        ring_dir = args.ring
        if args.worker_index is not None:
            ring_dir = ring_dir / f"worker-{args.worker_index}"
        ring = PcapRing(
            ring_dir,
            file_bytes=args.ring_mb * 1024 * 1024,
            files=args.ring_files,
            snaplen=args.snaplen,
        )
    agent = Agent(
        source,
        config,
        spool,
        Shipper(spool, sender),
        AgentOptions(flush_s=args.flush_s, report_s=args.report_s, drain_s=args.drain_s),
        ring=ring,
    )
    agent.install_signals()
    metrics = None
    if args.metrics_port is not None:
        from dronewatch.agent.metrics import serve_metrics

        port = args.metrics_port + (args.worker_index or 0)
        metrics = serve_metrics(agent, args.metrics_host, port)

    def started() -> None:
        logger.info(
            "capturing on %s with %s%s; sending to %s",
            ",".join(args.interface),
            source.backend,
            f" (filter: {bpf})" if bpf else "",
            args.api or args.publish,
        )

    try:
        result = agent.run(on_started=started)
    finally:
        if metrics is not None:
            metrics.shutdown()
        sender.close()
        spool.close()
    cap = result.capture
    logger.info(
        "stopped: %d packets, %d flows, drops %s, %d batches delivered",
        cap.packets,
        cap.flows,
        "not reported" if cap.drops is None else cap.drops,
        agent.shipper.sent if agent.shipper is not None else 0,
    )
    if cap.errors:
        for err in cap.errors:
            print(f"dronewatch: {inline(err)}", file=sys.stderr)
        return 2
    return 0


def _run_workers(args: argparse.Namespace) -> int:
    """Start `--workers` copies of this agent in one AF_PACKET fanout group; pass on signals."""
    import signal
    import subprocess

    group = os.getpid() & 0xFFFF
    argv = _without_workers(sys.argv[1:])
    procs = []
    for index in range(args.workers):
        cmd = [
            sys.executable,
            "-m",
            "dronewatch.cli.app",
            *argv,
            "--backend",
            "afpacket",
            "--fanout-group",
            str(group),
            "--worker-index",
            str(index),
        ]
        procs.append(subprocess.Popen(cmd))
    logger.info(
        "%d workers sharing %s (fanout group %d)", len(procs), ",".join(args.interface), group
    )

    def forward(signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [proc.wait() for proc in procs]
    return max(codes)


def _without_workers(argv: list[str]) -> list[str]:
    """The command line minus --workers and --backend (the workers get their own)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--workers", "--backend"):
            skip = True
            continue
        if arg.startswith(("--workers=", "--backend=")):
            continue
        out.append(arg)
    return out
