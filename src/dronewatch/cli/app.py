"""The `dronewatch` command line."""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dronewatch import __version__
from dronewatch.cli.analyzer_options import add_analyzer_option, analyzer_options
from dronewatch.cli.args import (
    LOCAL_SUBNET_HELP,
    add_device,
    add_engine_options,
    add_rules_and_geoip,
    engine_options,
)
from dronewatch.cli.report import register as report_register
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig
from dronewatch.exceptions import CaptureError, DronewatchError, PolicyError
from dronewatch.judge.alert import VIOLATION_NOTES
from dronewatch.output.jsonl import FILE_BUFFER_BYTES, AlertExportWriter
from dronewatch.output.progress import Progress
from dronewatch.output.summary import MAX_ALERTS, MAX_DEVICES, SummaryCollector
from dronewatch.output.terminal import SafeFormatter, inline

logger = logging.getLogger("dronewatch")

EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 3

EXIT_PRIORITY = (EXIT_USAGE, EXIT_VIOLATION, EXIT_DAMAGED, EXIT_OK)
"""When several outcomes apply, the earlier one in this tuple is the exit code."""

EXIT_CODES_HELP = """exit codes (when several apply, the first listed of 2, 1, 3 wins):
  0  every capture was read completely
  1  a local-data-mode violation was found
  2  bad usage, or a capture could not be read at all (missing, empty, not a capture)
  3  a capture is damaged (truncated or corrupt): the records before the damage were kept
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dronewatch",
        description=(
            "Check on the wire that drone ground-station apps keep their local-data-mode promise: "
            "read captures, rebuild flows, read what can be read without decryption."
        ),
    )
    parser.add_argument("--version", action="version", version=f"dronewatch {__version__}")
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="diagnostics on stderr (default: warning)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_analyze(sub)
    _add_diff(sub)
    report_register(sub, _add_policy_args, analysis_config)
    for register in _plugin_commands():
        register(sub)
    return parser


def _plugin_commands() -> list[
    Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]
]:
    from dronewatch.cli.agent import register as agent_register
    from dronewatch.cli.analyzer_options import register as analyzers_register
    from dronewatch.cli.geoip import register as geoip_register
    from dronewatch.cli.rules import register as rules_register
    from dronewatch.cli.serve import register as api_register

    return [api_register, agent_register, geoip_register, rules_register, analyzers_register]


def _add_policy_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("policy, rules and GeoIP")
    g.add_argument(
        "--ldm",
        choices=["on", "off"],
        help="local-data mode of every device for the whole capture (overrides the policy file)",
    )
    g.add_argument(
        "--ldm-window",
        action="append",
        default=[],
        metavar="START,END",
        help="LDM on only between these times (ISO 8601 or epoch seconds; END may be empty); "
        "repeatable",
    )
    g.add_argument("--policy", type=Path, metavar="FILE", help="device policy file (YAML)")
    add_device(g)
    g.add_argument(
        "--scope",
        choices=["dedicated", "shared"],
        help="dedicated: any byte off the device is a violation (default); shared: only the "
        "drone app's, its vendor's and its SDKs' traffic is",
    )
    g.add_argument(
        "--allow-category",
        action="append",
        default=[],
        metavar="CATEGORY",
        help="category allowed while LDM is on (e.g. maps); repeatable",
    )
    g.add_argument(
        "--local-subnet",
        action="append",
        default=[],
        metavar="CIDR",
        help=LOCAL_SUBNET_HELP,
    )
    add_rules_and_geoip(g, rules_default=[])


def analysis_config(args: argparse.Namespace) -> AnalysisConfig:
    """The policy, classifier, resolver and analyzer options the command-line options ask for."""
    from dataclasses import replace

    from dronewatch.geoip.local import LocalNets
    from dronewatch.geoip.maxmind import MaxMindResolver
    from dronewatch.judge.classify import Classifier
    from dronewatch.judge.policy import Policy, parse_windows, with_devices
    from dronewatch.judge.rulepack import CATEGORIES

    analyzers = analyzer_options(args.analyzer_option)
    policy = Policy()
    if args.policy:
        from dronewatch.judge.policy_file import load_policy  # pydantic and PyYAML: only here

        policy = load_policy(args.policy)
    policy = with_devices(policy, args.device)
    windows = parse_windows(args.ldm_window)
    if args.ldm is not None:
        policy = policy.with_ldm(args.ldm == "on")
    if windows:
        policy = Policy(
            defaults=replace(policy.defaults, ldm=True, windows=windows),
            devices=[replace(d, ldm=True, windows=windows) for d in policy.devices],
        )
    for cat in args.allow_category:
        if cat not in CATEGORIES:
            raise PolicyError(f"--allow-category {cat!r}: one of {', '.join(CATEGORIES)}")
    changes: dict[str, object] = {}
    if args.scope:
        changes["scope"] = args.scope
    if args.allow_category:
        changes["allowed_categories"] = frozenset(args.allow_category)
    if args.local_subnet:
        changes["local_subnets"] = tuple(args.local_subnet)
    if changes:
        policy = Policy(
            defaults=replace(policy.defaults, **changes),  # type: ignore[arg-type]
            devices=[replace(d, **changes) for d in policy.devices],  # type: ignore[arg-type]
        )
    try:
        local = LocalNets(list(policy.local_subnets))
    except ValueError as exc:
        raise PolicyError(f"local subnet: {exc}") from None
    resolver = MaxMindResolver.open(args.geoip_dir, local=local)
    classifier = Classifier.load(args.rules)
    return AnalysisConfig(
        policy=policy,
        classifier=classifier,
        resolver=resolver,
        analyzers=analyzers,
        engine=engine_options(args),
        checksums=args.checksums,
    )


def _add_analyze(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze",
        help="analyze capture files and print flows per device",
        description=(
            "Read pcap/pcapng captures (gzip-compressed too; '-' reads a pcap stream on stdin), "
            "rebuild bidirectional flows, decode DNS, TLS, QUIC, HTTP, MQTT, RTMP, RTSP, DHCP and "
            "drone links, print a summary per device and flow, and write typed JSONL records."
        ),
        epilog=EXIT_CODES_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="capture file, or - for stdin")
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="write flows.jsonl, dns.jsonl, tls.jsonl, ... (one file per record type) into DIR",
    )
    p.add_argument(
        "--top", type=int, default=15, metavar="N", help="largest flows listed per device (15)"
    )
    p.add_argument(
        "--devices",
        type=int,
        default=MAX_DEVICES,
        metavar="N",
        help=(
            f"devices the summary lists, those that sent most first, and verdicts, violations "
            f"first ({MAX_DEVICES}; the rest are counted)"
        ),
    )
    p.add_argument(
        "--alerts",
        type=int,
        default=MAX_ALERTS,
        metavar="N",
        help=f"alerts the summary lists, the most severe first ({MAX_ALERTS}; the rest counted)",
    )
    p.add_argument("--quiet", action="store_true", help="print no summary table")
    p.add_argument(
        "--evidence",
        action="store_true",
        help="with --out: keep the first frames of each flow that left a device (evidence.jsonl)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help=(
            "use N processes: several files are analyzed at once, one process each; one file is "
            "shared, each process making the flows its share of flow keys gives it (same "
            "records as one process)"
        ),
    )
    p.add_argument(
        "--per-packet",
        action="store_true",
        help=(
            "decode every packet one by one instead of counting the packets of settled flows in "
            "bulk (slower, same records; for checking)"
        ),
    )
    prog = p.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress", action="store_true", help="always show progress (default: large files)"
    )
    prog.add_argument("--no-progress", action="store_true", help="never show progress")
    add_analyzer_option(p)
    add_engine_options(p)
    _add_policy_args(p)
    p.set_defaults(func=cmd_analyze)


def _analyze_config(args: argparse.Namespace) -> AnalysisConfig:
    config = analysis_config(args)
    config.bulk = not args.per_packet
    if args.evidence:
        from dronewatch.judge.evidence import EvidenceOptions

        config.evidence = EvidenceOptions()
    return config


_PARENT_CONFIG: AnalysisConfig | None = None
"""The configuration `analyze --workers` built before starting its workers: a forked worker
inherits it, rule packs and GeoIP loaded (a spawned one builds its own)."""


def _analyze_one(path: str, args: argparse.Namespace, records_too: bool) -> _WorkerOutput:
    """One file in a worker process: its JSONL lines (with `--out`), its records (only when
    `records_too`: the parent prints a summary of them), and its result or the error that
    stopped it."""
    from dronewatch.capture.files import open_source
    from dronewatch.core.pipeline import run_source
    from dronewatch.output.jsonl import RecordLines

    records: list[Record] = []
    lines = RecordLines() if args.out else None

    def emit(record: Record) -> None:
        if records_too:
            records.append(record)
        if lines is not None:
            lines.write(record)

    config = _PARENT_CONFIG if _PARENT_CONFIG is not None else _analyze_config(args)
    try:
        result, error = run_source(open_source(path), emit, config), None
    except CaptureError as exc:
        result, error = None, str(exc)
    return records, lines.lines() if lines is not None else {}, result, error


_WorkerOutput = tuple[list[Record], dict[str, tuple[bytes, int]], Any, str | None]


def cmd_analyze(args: argparse.Namespace) -> int:
    """Run the analysis pipeline over every file given."""
    from dronewatch.capture.files import open_source
    from dronewatch.core.pipeline import RunResult, run_source

    config = _analyze_config(args)
    if args.workers < 1:
        raise PolicyError("--workers must be at least 1")
    for flag in ("top", "devices", "alerts"):
        if getattr(args, flag) < 1:
            raise PolicyError(f"--{flag} {getattr(args, flag)}: must be at least 1")
    # Files are read to their end: large output buffers. From stdin (a live pipe, perhaps) the
    # default, so records reach the files a few KB at a time.
    buffer_bytes = None if "-" in args.files else FILE_BUFFER_BYTES
    writer = AlertExportWriter(args.out, buffer_bytes) if args.out else None
    summary = SummaryCollector(top_flows=args.top, max_devices=args.devices, max_alerts=args.alerts)

    keep = None if args.quiet else summary.add  # --quiet prints no summary: nothing to keep
    write = writer.write if writer is not None else None

    def emit(record: Record) -> None:
        if keep is not None:
            keep(record)
        if write is not None:
            write(record)

    code = EXIT_OK

    def outcome(result: RunResult | None, error: str | None) -> None:
        nonlocal code
        if result is None:
            print(f"dronewatch: {inline(str(error))}", file=sys.stderr)
            code = worst(code, EXIT_USAGE)
            return
        cap = result.capture
        for err in cap.errors:
            print(f"dronewatch: {inline(err)}", file=sys.stderr)
        if not cap.complete:
            code = worst(code, EXIT_USAGE if cap.packets == 0 else EXIT_DAMAGED)
        if any(a.note in VIOLATION_NOTES for a in result.alerts):
            code = worst(code, EXIT_VIOLATION)

    parallel = args.workers > 1 and len(args.files) > 1 and "-" not in args.files
    split = args.workers > 1 and args.files != ["-"] and len(args.files) == 1
    if args.workers > 1 and not (parallel or split):
        print("dronewatch: --workers: stdin is read by one process", file=sys.stderr)
    progress = Progress(sys.stderr)
    try:
        if parallel:
            _analyze_parallel(args, config, summary, writer, outcome)
        elif split:
            _analyze_split(args, config, summary, writer, emit, outcome, progress)
        else:
            for path in args.files:
                source = open_source(path)
                show = not args.no_progress and (args.progress or progress.wants(source))
                try:
                    result = run_source(source, emit, config, progress=progress if show else None)
                    progress.done(result.capture.packets)
                except CaptureError as exc:
                    outcome(None, str(exc))
                    continue
                finally:
                    progress.close()
                outcome(result, None)
    except KeyboardInterrupt:
        print("dronewatch: interrupted; records so far were written", file=sys.stderr)
        code = 130
    finally:
        if writer is not None:
            writer.close()
    if not args.quiet:
        summary.render(sys.stdout)
        if writer is not None:
            print(f"Records written to {inline(str(args.out))}/")
    return code


def _analyze_parallel(
    args: argparse.Namespace,
    config: AnalysisConfig,
    summary: SummaryCollector,
    writer: AlertExportWriter | None,
    outcome: Callable[[Any, str | None], None],
) -> None:
    """Analyze the files in `args.workers` processes; records and outcomes in file order, so
    the output is the one a single process gives."""
    from concurrent.futures import ProcessPoolExecutor

    global _PARENT_CONFIG
    _PARENT_CONFIG = config
    # The workers write their records as JSONL lines; the records themselves cross only for the
    # summary, when it is printed (sending them costs about as much as making them).
    records_too = not args.quiet
    with ProcessPoolExecutor(max_workers=min(args.workers, len(args.files))) as pool:
        futures = [pool.submit(_analyze_one, path, args, records_too) for path in args.files]
        try:
            for path, future in zip(args.files, futures, strict=True):
                records, lines, result, error = future.result()
                for record in records:
                    summary.add(record)
                if writer is not None:
                    for stem, (data, count) in lines.items():
                        writer.write_lines(stem, data, count)
                outcome(result, error)
                if args.progress:
                    print(f"dronewatch: {inline(path)}: done", file=sys.stderr)
        except BaseException:
            pool.shutdown(cancel_futures=True)
            raise


def _analyze_split(
    args: argparse.Namespace,
    config: AnalysisConfig,
    summary: SummaryCollector,
    writer: AlertExportWriter | None,
    emit: Callable[[Record], None],
    outcome: Callable[[Any, str | None], None],
    progress: Progress,
) -> None:
    """One file in `args.workers` processes (`dronewatch.core.split`)."""
    from dronewatch.capture.files import open_source
    from dronewatch.core.split import run_split

    path = args.files[0]
    try:
        show = not args.no_progress and (args.progress or progress.wants(open_source(path)))
        result = run_split(
            path,
            args.workers,
            emit,
            config,
            lines=writer.write_lines if writer is not None else None,
            records=None if args.quiet else summary.add,
            summary=None if args.quiet else summary,
            progress=progress if show else None,
        )
        progress.done(result.capture.packets)
    except CaptureError as exc:
        outcome(None, str(exc))
        return
    finally:
        progress.close()
    outcome(result, None)


def worst(a: int, b: int) -> int:
    """The exit code that wins when two outcomes apply (see EXIT_PRIORITY)."""
    rank = {c: i for i, c in enumerate(EXIT_PRIORITY)}
    return a if rank.get(a, -1) <= rank.get(b, -1) else b


def _add_diff(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "diff",
        help="compare what left the devices in two captures (e.g. LDM off vs on)",
        description=(
            "Analyze two captures and list, destination by destination and category by "
            "category, the traffic sent off the local network in one and not the other: the "
            "LDM-off vs LDM-on check. Destinations are names (SNI, HTTP host, DNS) or addresses."
        ),
        epilog="exit codes: 0 compared, 2 bad usage or unreadable capture",
    )
    p.add_argument("a", metavar="A", help="first capture (e.g. LDM off)")
    p.add_argument("b", metavar="B", help="second capture (e.g. LDM on)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_analyzer_option(p)
    add_engine_options(p)
    _add_policy_args(p)
    p.set_defaults(func=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    """Analyze A and B and print what differs in their off-device traffic."""
    import json

    from dronewatch.capture.files import open_source
    from dronewatch.core.pipeline import run_source
    from dronewatch.output.diff import EgressCollector, diff

    config = analysis_config(args)
    sides = []
    for path in (args.a, args.b):
        collector = EgressCollector()
        try:
            result = run_source(open_source(path), collector.add, config)
        except CaptureError as exc:
            print(f"dronewatch: {inline(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        if result.capture.packets == 0:
            for err in result.capture.errors:
                print(f"dronewatch: {inline(err)}", file=sys.stderr)
            return EXIT_USAGE
        sides.append(collector)
    rows = diff(sides[0], sides[1])
    if args.json:
        print(
            json.dumps(
                {
                    "a": args.a,
                    "b": args.b,
                    "destinations": [r.to_dict() for r in rows],
                    "dns_lookups_a": sorted(sides[0].dns_lookups),
                    "dns_lookups_b": sorted(sides[1].dns_lookups),
                },
                indent=2,
            )
        )
        return EXIT_OK
    label = {"only_a": "only in A", "only_b": "only in B", "both": "both"}
    print(f"A = {inline(args.a)}\nB = {inline(args.b)}")
    if not rows:
        print("Neither capture sent anything off the local network.")
        return EXIT_OK
    table = [("", "DESTINATION", "CATEGORY", "VENDOR", "BYTES OUT A", "BYTES OUT B", "WHERE")]
    for r in rows:
        where = "/".join(x for x in (r.country, r.asn and f"AS{r.asn}") if x) or "-"
        # Destinations are wire names (SNI, HTTP Host, DNS): one printable line each.
        table.append(
            (
                label[r.status],
                inline(r.name),
                inline(r.category),
                inline(r.vendor or "-"),
                f"{r.bytes_out_a:,}",
                f"{r.bytes_out_b:,}",
                inline(where),
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print(
            "  ".join(
                c.rjust(widths[i]) if i in (4, 5) else c.ljust(widths[i]) for i, c in enumerate(row)
            ).rstrip()
        )
    only_a = sum(1 for r in rows if r.status == "only_a")
    only_b = sum(1 for r in rows if r.status == "only_b")
    print(
        f"{only_a} destinations only in A, {only_b} only in B, "
        f"{len(rows) - only_a - only_b} in both"
    )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `dronewatch` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Log messages may quote wire data: each one is one printable line.
    handler = logging.StreamHandler()
    handler.setFormatter(SafeFormatter("dronewatch: %(levelname)s: %(message)s"))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()), handlers=[handler])
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except DronewatchError as exc:
        print(f"dronewatch: {inline(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK


def cli() -> int:
    """The `dronewatch` command as installed: `main`, then every object the run left frozen
    (`gc.freeze`), so that the interpreter's last collection at exit does not walk the flows,
    records and rule packs one by one (0.14 s after a capture of 250,000 flows, 0.04 s after a
    small one): they go with the process. Files are closed by the commands themselves, not at
    exit. Tests call `main`, whose process goes on."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(cli())
