"""`dronewatch serve`, `dronewatch replay` and `dronewatch keys`.

Every command's parser is built at start-up, so this module imports only what the parsers need;
asyncio and the service's modules are imported by the functions that use them.
"""

from __future__ import annotations

import argparse
import errno
import gc
import hashlib
import logging
import os
import secrets
import socket
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dronewatch.cli.analyzer_options import add_analyzer_option, analyzer_options
from dronewatch.cli.args import (
    add_device,
    add_engine_options,
    add_rules_and_geoip,
    engine_argv,
    engine_options,
)
from dronewatch.exceptions import DronewatchError
from dronewatch.output.terminal import inline
from dronewatch.paths import default_data_dir

if TYPE_CHECKING:
    from dronewatch.analyzers import AnalyzerOptions
    from dronewatch.api.service import Service
    from dronewatch.api.settings import Settings
    from dronewatch.transport.publisher import NatsPublisher

logger = logging.getLogger(__name__)

EXIT_UNDELIVERED = 4
"""`replay`: some batches were not delivered (they wait in the spool) or were refused."""

KEY_ENV = "DRONEWATCH_API_KEY"
CAPTURE_AGENT = "local"
"""The agent name on the batches of the capture child of `serve -i`."""
CAPTURE_KEY_PREFIX = "serve-capture@"
"""Names of the agent keys `serve -i` makes for its capture child: PREFIX HOST:PORT/START-RANDOM."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the service commands."""
    _add_serve(sub)
    _add_replay(sub)
    _add_keys(sub)


def _settings_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("settings (flags beat DRONEWATCH_* variables, which beat --config)")
    g.add_argument("--config", type=Path, metavar="FILE", help="YAML settings file")
    g.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="where the SQLite database lives (default ~/.local/share/dronewatch)",
    )
    g.add_argument(
        "--db",
        metavar="URL",
        help="sqlite:///PATH or postgresql://USER:PASS@HOST/DB (default: SQLite in "
        "the data directory)",
    )


def _flags(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    return {n: getattr(args, n, None) for n in ("data_dir", "db", *names)}


def _add_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "serve",
        help="run the alert service (API, web page, SIEM outputs)",
        description=(
            "Run the alert service: it stores devices and their local-data-mode policy, takes "
            "analysis results from agents and replays, raises alerts when data leaves a device "
            "whose LDM is on, and serves them (REST API with OpenAPI at /docs, a live web page "
            "at /, Prometheus /metrics). On first start it creates an admin API key and prints "
            "it once."
        ),
    )
    _settings_args(p)
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8470)")
    p.add_argument(
        "--open-reads",
        action="store_true",
        default=None,
        help="serve GET requests without an API key (labs on a closed network)",
    )
    p.add_argument(
        "--cors-origin",
        action="append",
        dest="cors_origins",
        metavar="ORIGIN",
        help="browser origin allowed to call the API; repeatable",
    )
    add_rules_and_geoip(p)
    add_analyzer_option(p)
    add_engine_options(p)
    p.add_argument(
        "--consume",
        metavar="NATS_URL",
        help=(
            "also take batches from NATS JetStream (nats://HOST:PORT), shared with every other "
            "service consuming the same stream (scale-out; see the README)"
        ),
    )
    cap = p.add_argument_group(
        "capture on interfaces too (an all-in-one sensor)",
        "The capture runs in a child process (`dronewatch agent`) that ships to this service "
        "over HTTP with an agent key made at start; it is restarted when it dies, and its "
        "spool is in the data directory.",
    )
    cap.add_argument(
        "--interface",
        "-i",
        action="append",
        default=[],
        metavar="IF",
        help="capture on this interface and feed the service; repeatable",
    )
    cap.add_argument(
        "--backend",
        choices=["dumpcap", "afpacket", "scapy"],
        help="capture backend (default: afpacket where it may open AF_PACKET sockets, else "
        "dumpcap when installed, else scapy)",
    )
    cap.add_argument("--filter", metavar="BPF", default="", help="capture filter (BPF syntax)")
    r = p.add_argument_group("replay a capture into the service once it is up")
    r.add_argument(
        "--replay",
        action="append",
        default=[],
        metavar="FILE",
        help="capture to feed through the pipeline; repeatable",
    )
    r.add_argument("--realtime", action="store_true", help="at the capture's own pace")
    r.add_argument("--speed", type=float, default=1.0, help="pace multiplier with --realtime")
    r.add_argument(
        "--ldm",
        choices=["on", "off"],
        help="local-data mode of the devices the replay discovers (default: off, "
        "set them in the web page or API)",
    )
    p.set_defaults(func=cmd_serve)


def _port_free(host: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use (choose another with --port)"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    """Start the service (and the replays) and run until interrupted."""
    import uvicorn

    from dronewatch.api.app import create_app
    from dronewatch.api.service import Service
    from dronewatch.api.settings import load_settings

    settings = load_settings(
        _flags(args, "host", "port", "open_reads", "cors_origins", "rules", "geoip_dir", "consume"),
        args.config,
    )
    analyzers = analyzer_options(args.analyzer_option)  # for --replay; the capture child checks too
    engine_options(args)  # a mistake stops it here, before the service starts
    for path in args.replay:
        if path != "-" and not Path(path).is_file():
            raise DronewatchError(f"--replay {path}: no such file")
    if args.speed <= 0:
        raise DronewatchError("--speed must be above 0")
    problem = _port_free(settings.host, settings.port)
    if problem:
        raise DronewatchError(problem)
    if settings.consume:
        _probe_nats(settings.consume)  # before anything is created: a clean stop
    backend = None
    if args.interface:
        from dronewatch.capture.live import check_interface, pick_backend

        for name in args.interface:
            check_interface(name)  # a wrong name stops the service before it starts
        backend = pick_backend(args.backend)
    service = Service.open(settings)
    if service.store.count_keys() == 0:
        _, secret = service.store.create_key("admin", "admin")
        print(
            "dronewatch: created the first API key (role admin). It is shown only this once:\n"
            f"  {secret}\n"
            "  Use it as 'Authorization: Bearer <key>', or paste it into the web page. Make "
            "reader keys for dashboards with: dronewatch keys create --role reader --name NAME",
            file=sys.stderr,
        )
    app = create_app(settings, service)
    if settings.consume:
        _consume_hooks(app, service, settings.consume, settings.consume_ack_wait_s)
    capture = None
    if backend is not None:
        capture = _CaptureChild(service, settings, args, backend)
    if args.replay:
        app.state.startup_hooks.append(_replay_hook(service, args, analyzers))
    url = f"http://{settings.host if ':' not in settings.host else f'[{settings.host}]'}"
    print(
        f"dronewatch: serving on {url}:{settings.port}/ (API docs at /docs); "
        f"database {_safe(settings.database_url)}",
        file=sys.stderr,
    )
    config = uvicorn.Config(
        app, host=settings.host, port=settings.port, log_level="warning", access_log=False
    )
    server = _server(config, capture)
    # What start-up loaded (rule packs, GeoIP, the app) lives as long as the service: keep it
    # out of the collector's full passes, which otherwise stalled every request for ~100 ms
    # each time ingest's garbage set one off (bench/POLL.md).
    gc.collect()
    gc.freeze()
    try:
        server.run()
    finally:
        if capture is not None:
            capture.close()
        service.close()
    return 0


def _server(config: Any, capture: _CaptureChild | None) -> Any:
    """The uvicorn server; with a capture child, started once the port listens and stopped
    before it closes, so the child's first and last batches reach the service. (After a signal,
    uvicorn raises it again once it has shut down, so nothing after `run` runs then.)"""
    import asyncio

    import uvicorn

    if capture is None:
        return uvicorn.Server(config)
    child: _CaptureChild = capture

    class CaptureServer(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.should_exit:
                child.supervisor.start()

        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            await asyncio.to_thread(child.close)
            await super().shutdown(sockets)

    return CaptureServer(config)


class _CaptureChild:
    """`serve -i`: `dronewatch agent` in a supervised child process, shipping to this service
    over HTTP with an agent key made for it now (in its environment, never on its command line)
    and revoked when the service stops."""

    def __init__(
        self, service: Service, settings: Settings, args: argparse.Namespace, backend: str
    ) -> None:
        from dronewatch.agent.metrics import SupervisorCollector
        from dronewatch.agent.supervisor import CaptureSupervisor

        self.store = service.store
        self.key_name, secret = _capture_key(service, settings.port)
        interfaces = ", ".join(args.interface)

        def capturing(pid: int) -> None:
            print(
                f"dronewatch: capturing on {interfaces} with {backend} (capture process {pid})",
                file=sys.stderr,
            )

        self.supervisor = CaptureSupervisor(
            capture_argv(args, settings, backend),
            {**os.environ, KEY_ENV: secret},
            label=f"capture[{','.join(args.interface)}]",
            on_capturing=capturing,
        )
        service.metrics.registry.register(SupervisorCollector(self.supervisor))
        self._closed = False

    def close(self) -> None:
        """Stop the child and revoke its key (once; later calls do nothing)."""
        if self._closed:
            return
        self._closed = True
        self.supervisor.stop()
        try:
            self.store.revoke_key(self.key_name)
        except DronewatchError as exc:  # revoked by an admin meanwhile
            logger.info("capture key %s: %s", self.key_name, exc)
        except Exception as exc:  # the service is stopping: say so, never break the shutdown
            logger.warning(
                "capture key %s could not be revoked (the next start revokes it): %s",
                self.key_name,
                exc,
            )


def _capture_key(service: Service, port: int) -> tuple[str, str]:
    """A new agent key for this start's capture child: (name, secret). Live capture keys an
    earlier start on this host and port left behind (a server that was killed) are revoked."""
    prefix = f"{CAPTURE_KEY_PREFIX}{socket.gethostname()[:60]}:{port}/"
    store = service.store
    for key in store.list_keys():
        if key.name.startswith(prefix) and key.revoked_at is None:
            store.revoke_key(key.name)
    info, secret = store.create_key(f"{prefix}{int(time.time())}-{secrets.token_hex(3)}", "agent")
    return info.name, secret


def service_url(host: str, port: int) -> str:
    """The URL a process on this machine reaches the service at (a wildcard address is
    reached on loopback)."""
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def capture_argv(args: argparse.Namespace, settings: Settings, backend: str) -> list[str]:
    """The command line of the capture child: `dronewatch agent` with serve's capture options
    and the service's rules, GeoIP data and local subnets. It holds no secret."""
    argv = [
        sys.executable,
        "-m",
        "dronewatch.cli.app",
        f"--log-level={getattr(args, 'log_level', None) or 'warning'}",
        "agent",
        *(f"--interface={name}" for name in args.interface),
        f"--api={service_url(settings.host, settings.port)}",
        f"--name={CAPTURE_AGENT}",
        f"--spool={settings.data_dir / 'spool'}",
        f"--backend={backend}",
        "--log-format=json",
    ]
    if args.filter:
        argv.append(f"--filter={args.filter}")
    argv += [f"--rules={path}" for path in settings.rules]
    if settings.geoip_dir is not None:
        argv.append(f"--geoip-dir={settings.geoip_dir}")
    argv += [f"--local-subnet={net}" for net in settings.local_subnets]
    argv += [f"--analyzer-option={o}" for o in getattr(args, "analyzer_option", None) or []]
    argv += engine_argv(args)
    return argv


def _probe_nats(url: str) -> None:
    """Reach the NATS server and set up the stream, or raise BusError with a clear message."""
    import asyncio

    from dronewatch.transport.jetstream import connect, ensure_stream

    async def probe() -> None:
        nc = await connect(url, name="dronewatch-serve-check")
        try:
            await ensure_stream(nc.jetstream())
        finally:
            await nc.close()

    asyncio.run(probe())


def _consume_hooks(app: Any, service: Any, url: str, ack_wait_s: float) -> None:
    """Consume batches from NATS while the service runs."""
    from dronewatch.transport.consumer import NatsConsumer

    consumer = NatsConsumer(
        url, service, name=f"dronewatch-serve-{os.getpid()}", ack_wait_s=ack_wait_s
    )

    async def start(app: Any) -> None:
        await consumer.start()

    async def stop(app: Any) -> None:
        await consumer.stop()

    app.state.startup_hooks.append(start)
    app.state.shutdown_hooks.append(stop)
    app.state.consumer = consumer


def _safe(url: str) -> str:
    from dronewatch.api.db import redact

    return redact(url)


def _replay_hook(service: Any, args: argparse.Namespace, analyzers: AnalyzerOptions) -> Any:
    import asyncio

    from dronewatch.capture.files import open_source
    from dronewatch.core.pipeline import AnalysisConfig
    from dronewatch.judge.evidence import EvidenceOptions
    from dronewatch.transport.replay import replay

    ldm = None if args.ldm is None else args.ldm == "on"

    def work() -> None:
        config = AnalysisConfig(
            classifier=service.classifier,
            resolver=service.resolver,
            evidence=EvidenceOptions(),
            analyzers=analyzers,
            engine=engine_options(args),
            checksums=args.checksums,
        )
        for path in args.replay:

            def send(batch: str, records: list[dict[str, Any]]) -> None:
                service.ingest(batch, "replay", records, ldm)

            try:
                result = replay(
                    open_source(path), send, config, realtime=args.realtime, speed=args.speed
                )
            except DronewatchError as exc:
                print(f"dronewatch: replay {inline(path)}: {inline(str(exc))}", file=sys.stderr)
                continue
            cap = result.capture
            for err in cap.errors:
                print(f"dronewatch: replay {inline(path)}: {inline(err)}", file=sys.stderr)
            print(
                f"dronewatch: replayed {inline(path)}: {cap.packets:,} packets, "
                f"{cap.flows:,} flows",
                file=sys.stderr,
            )

    async def start(app: Any) -> None:
        thread = threading.Thread(target=work, name="replay", daemon=True)
        thread.start()
        await asyncio.sleep(0)

    return start


def _add_replay(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "replay",
        help="feed captures through the pipeline into a running service",
        description=(
            "Analyze captures and post the records to a running dronewatch service "
            "(POST /api/v1/ingest, in batches; a re-sent batch is ignored by the service). "
            "The service applies its own device policy and raises the alerts."
        ),
        epilog=(
            "Batches go through a durable spool (--spool) and are delivered with retries, as "
            "an agent's are; a batch the service refuses outright is kept in the spool's "
            "quarantine. exit codes: 0 every batch delivered, 2 bad usage or unreadable capture, "
            "4 batches not delivered within --deliver-timeout or refused by the service (they "
            "stay in the spool: the next replay with the same --spool delivers the waiting ones "
            "first)"
        ),
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="capture file, or - for stdin")
    dest = p.add_mutually_exclusive_group(required=True)
    dest.add_argument("--api", metavar="URL", help="service URL, e.g. http://127.0.0.1:8470")
    dest.add_argument(
        "--publish",
        metavar="NATS_URL",
        help="publish the batches to NATS JetStream (nats://HOST:PORT) for serve --consume",
    )
    p.add_argument("--key", metavar="KEY", help=f"agent or admin API key (default ${KEY_ENV})")
    p.add_argument("--agent", default="replay", help="name of this agent in the service")
    p.add_argument("--realtime", action="store_true", help="at the capture's own pace")
    p.add_argument("--speed", type=float, default=1.0, help="pace multiplier with --realtime")
    p.add_argument(
        "--batch-size", type=int, default=500, metavar="N", help="records per batch (500)"
    )
    p.add_argument(
        "--spool",
        type=Path,
        metavar="DIR",
        help="where batches wait until the service takes them (default: one directory per "
        "destination and agent name under the data directory's replay-spool)",
    )
    p.add_argument(
        "--deliver-timeout",
        type=float,
        default=900.0,
        metavar="S",
        help="after the last capture, how long to keep trying to deliver what waits (900 s)",
    )
    p.add_argument(
        "--ldm",
        choices=["on", "off"],
        help="LDM of the devices the replay discovers (needs an admin key)",
    )
    add_device(p)
    add_rules_and_geoip(p, rules_default=[])
    add_analyzer_option(p)
    add_engine_options(p)
    p.set_defaults(func=cmd_replay)


def cmd_replay(args: argparse.Namespace) -> int:
    """Post every record of each capture to the service."""
    from dronewatch.agent.shipper import Shipper
    from dronewatch.agent.spool import Spool
    from dronewatch.capture.files import open_source
    from dronewatch.core.pipeline import AnalysisConfig
    from dronewatch.exceptions import CaptureError
    from dronewatch.geoip.local import LocalNets
    from dronewatch.geoip.maxmind import MaxMindResolver
    from dronewatch.judge.classify import Classifier
    from dronewatch.judge.evidence import EvidenceOptions
    from dronewatch.judge.policy import Policy, with_devices
    from dronewatch.output.progress import Progress
    from dronewatch.transport.replay import HttpSender, replay

    key = args.key or os.environ.get(KEY_ENV)
    if args.api and not key:
        raise DronewatchError(f"an API key is needed: --key KEY or ${KEY_ENV}")
    if args.publish and args.ldm is not None:
        raise DronewatchError("--ldm sets policy through the API (admin key): not with --publish")
    if args.speed <= 0:
        raise DronewatchError("--speed must be above 0")
    if args.batch_size < 1:
        raise DronewatchError("--batch-size must be at least 1")
    analyzers = analyzer_options(args.analyzer_option)
    policy = with_devices(Policy(), args.device)
    resolver = MaxMindResolver.open(args.geoip_dir, local=LocalNets(policy.local_subnets))
    config = AnalysisConfig(
        policy=policy,
        classifier=Classifier.load(args.rules),
        resolver=resolver,
        evidence=EvidenceOptions(),
        analyzers=analyzers,
        engine=engine_options(args),
        checksums=args.checksums,
    )
    sender: HttpSender | NatsPublisher
    if args.publish:
        from dronewatch.transport.publisher import NatsPublisher

        sender = NatsPublisher(args.publish, agent=args.agent)
    else:
        sender = HttpSender(
            args.api,
            key or "",
            agent=args.agent,
            discovered_ldm=None if args.ldm is None else args.ldm == "on",
        )
    if args.deliver_timeout < 0:
        raise DronewatchError("--deliver-timeout must be 0 or more")
    dest = args.api or args.publish
    spool_dir = args.spool or default_data_dir() / "replay-spool" / _spool_name(dest, args.agent)
    spool = Spool(spool_dir)
    waiting, _ = spool.pending()
    refused_before = len(spool.quarantined())
    if waiting:
        print(
            f"dronewatch: {waiting:,} batches left in {spool_dir} by an earlier replay go first",
            file=sys.stderr,
        )
    shipper = Shipper(spool, sender)
    shipper.start()
    code = 0
    progress = Progress(sys.stderr)
    batches = 0

    def send(batch: str, records: list[dict[str, Any]]) -> None:
        nonlocal batches
        spool.put(batch, records)
        batches += 1

    try:
        for path in args.files:
            try:
                source = open_source(path)
                batches = 0
                result = replay(
                    source,
                    send,
                    config,
                    batch_size=args.batch_size,
                    realtime=args.realtime,
                    speed=args.speed,
                    progress=progress if progress.wants(source) else None,
                )
            except CaptureError as exc:
                print(f"dronewatch: {inline(str(exc))}", file=sys.stderr)
                code = 2
                continue
            finally:
                progress.close()
            cap = result.capture
            for err in cap.errors:
                print(f"dronewatch: {inline(err)}", file=sys.stderr)
            print(
                f"{inline(path)}: {cap.packets:,} packets, {cap.flows:,} flows in "
                f"{batches:,} batches"
            )
        shipper.drain(args.deliver_timeout)
    finally:
        shipper.stop()
        sender.close()
    left, size = spool.pending()
    refused = spool.quarantined()[refused_before:]
    spool.close()
    if left:
        print(
            f"dronewatch: {left:,} batches ({size:,} bytes) not delivered to {dest} within "
            f"{args.deliver_timeout:g} s (last error: {shipper.last_error or 'none'}); they wait "
            f"in {spool_dir}: the next replay with --spool {spool_dir} delivers them first",
            file=sys.stderr,
        )
    if refused:
        print(
            f"dronewatch: {len(refused):,} batches refused by {dest}, kept in the quarantine of "
            f"{spool_dir}; the first: {inline(str(refused[0][1]))}",
            file=sys.stderr,
        )
    if left or refused:
        return code or EXIT_UNDELIVERED
    print(f"every batch delivered to {dest}")
    return code


def _spool_name(dest: str, agent: str) -> str:
    """A directory name of its own for each destination and agent name (no URL characters)."""
    return hashlib.sha256(f"{dest}|{agent}".encode()).hexdigest()[:16]


def _add_keys(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "keys",
        help="create, list and revoke API keys of the service",
        description="Manage the service's API keys directly in its database.",
    )
    ksub = p.add_subparsers(dest="keys_command", metavar="SUBCOMMAND", required=True)
    c = ksub.add_parser(
        "create",
        help="create a key and print it (shown only once)",
        description="Create an API key; the secret is printed once, stored "
        "hashed. Roles: reader (dashboards), agent (ingest), admin (everything).",
    )
    c.add_argument("--role", required=True, choices=["reader", "agent", "admin"])
    c.add_argument("--name", required=True, help="a unique name, e.g. soc-dashboard")
    _settings_args(c)
    c.set_defaults(func=cmd_keys_create)
    ls = ksub.add_parser(
        "list",
        help="list keys (never their secrets)",
        description="List the API keys, live and revoked.",
    )
    _settings_args(ls)
    ls.set_defaults(func=cmd_keys_list)
    rv = ksub.add_parser(
        "revoke",
        help="revoke a key by name",
        description="Revoke an API key; requests with it are refused from now.",
    )
    rv.add_argument("name")
    _settings_args(rv)
    rv.set_defaults(func=cmd_keys_revoke)


def _store(args: argparse.Namespace) -> Any:
    from dronewatch.api.db import make_engine
    from dronewatch.api.migrations import migrate
    from dronewatch.api.settings import load_settings
    from dronewatch.api.store import Store

    settings = load_settings(_flags(args), args.config)
    engine = make_engine(settings.database_url)
    migrate(engine)
    return Store(engine)


def cmd_keys_create(args: argparse.Namespace) -> int:
    info, secret = _store(args).create_key(args.name, args.role)
    print(secret)
    print(
        f"dronewatch: created {info.role} key {info.name!r}; it is shown only this once",
        file=sys.stderr,
    )
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    keys = _store(args).list_keys()
    if not keys:
        print("No API keys yet: the first 'dronewatch serve' creates an admin key.")
        return 0
    print(f"{'NAME':24} {'ROLE':7} {'PREFIX':11} STATE")
    for k in keys:
        state = "revoked" if k.revoked_at else "live"
        print(f"{k.name:24} {k.role:7} {k.prefix:11} {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    _store(args).revoke_key(args.name)
    print(f"dronewatch: revoked key {args.name!r}", file=sys.stderr)
    return 0
