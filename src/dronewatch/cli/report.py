"""`dronewatch report FILE... -o report.html`: run the pipeline over captures as `analyze` does
and write one self-contained HTML file for a lab tester to hand over."""

from __future__ import annotations

import argparse
import hashlib
import shlex
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from dronewatch.cli.analyzer_options import add_analyzer_option
from dronewatch.cli.args import add_engine_options
from dronewatch.exceptions import CaptureError, DronewatchError

if TYPE_CHECKING:
    from dronewatch.core.pipeline import AnalysisConfig
    from dronewatch.output.report import ReportCollector
    from dronewatch.output.report_html import Provenance

PolicyArgs = Callable[[argparse.ArgumentParser], None]
"""Adds the policy, rule and GeoIP options of `analyze` to a parser."""
MakeConfig = Callable[[argparse.Namespace], "AnalysisConfig"]
"""Builds the analysis configuration from those options, as `analyze` does."""

# The exit codes of `analyze` (see its --help), so a script can use either command.
EXIT_OK = 0
EXIT_VIOLATION = 1
EXIT_USAGE = 2
EXIT_DAMAGED = 3

EPILOG = """With --diff A B, A is judged with local-data mode off and B with the policy options
(local-data mode on for every device when none of --ldm, --ldm-window and --policy is given),
and the report shows what appears in one capture and not the other.

exit codes (as analyze): 0 read completely, 1 a local-data-mode violation was found, 2 bad usage
or an unreadable capture, 3 a damaged capture (the records before the damage are reported)
"""


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    add_policy_args: PolicyArgs,
    make_config: MakeConfig,
) -> None:
    """Add `report` with the same policy options as `analyze` (given by the caller, which owns
    them, so that this module does not import the command line's main module)."""
    p = sub.add_parser(
        "report",
        help="analyze captures and write one self-contained HTML report to hand over",
        description=(
            "Analyze captures as analyze does and write one HTML file that opens offline and "
            "makes no request: the verdict per device, capture metadata and coverage, where the "
            "data went (country, ASN, category, map), a timeline of bytes leaving, DNS lookups, "
            "egress attempts, the evidence (SNI, HTTP host, bytes, first and last seen), and the "
            "rule-pack and GeoIP versions used, so the result can be reproduced."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="capture file, or - for stdin")
    p.add_argument(
        "-o", "--output", type=Path, required=True, metavar="REPORT.html", help="file to write"
    )
    p.add_argument(
        "--diff",
        nargs=2,
        metavar=("A", "B"),
        help="an LDM-off capture A and an LDM-on capture B, compared (instead of FILE...)",
    )
    prog = p.add_mutually_exclusive_group()
    prog.add_argument(
        "--progress", action="store_true", help="always show progress (default: large files)"
    )
    prog.add_argument("--no-progress", action="store_true", help="never show progress")
    known = {a.dest for a in p._actions}
    add_analyzer_option(p)
    add_engine_options(p)
    add_policy_args(p)
    policy_actions = [a for a in p._actions if a.dest not in known and a.option_strings]
    p.set_defaults(func=lambda args: cmd_report(args, make_config, policy_actions))


def _given_options(args: argparse.Namespace, actions: list[argparse.Action]) -> list[str]:
    """The policy options given on the command line, as they would be typed again."""
    out: list[str] = []
    for action in actions:
        value = getattr(args, action.dest, None)
        if value is None or value == action.default or value is False:
            continue
        flag = action.option_strings[-1]
        values = value if isinstance(value, list) else [value]
        for v in values:
            out.extend([flag] if v is True else [flag, str(v)])
    return out


def _sha256(path: str) -> tuple[str | None, int | None]:
    if path == "-":
        return None, None
    digest = hashlib.sha256()
    size = 0
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
                size += len(chunk)
    except OSError:
        return None, None
    return digest.hexdigest(), size


def _ldm_text(args: argparse.Namespace) -> str:
    if args.ldm_window:
        return "judged with LDM on in " + ", ".join(args.ldm_window)
    if args.ldm is not None:
        return f"judged with --ldm {args.ldm}"
    if args.policy is not None:
        return f"judged with the policy in {args.policy}"
    return "judged with LDM off (no --ldm, --ldm-window or --policy)"


def cmd_report(
    args: argparse.Namespace, make_config: MakeConfig, policy_actions: list[argparse.Action]
) -> int:
    """Analyze the captures and write the report."""
    from dronewatch.capture.files import open_source
    from dronewatch.core.pipeline import run_source
    from dronewatch.judge.alert import VIOLATION_NOTES
    from dronewatch.output.diff import diff
    from dronewatch.output.progress import Progress
    from dronewatch.output.report import CaptureInfo, ReportCollector
    from dronewatch.output.report_html import DiffPart, render
    from dronewatch.output.terminal import inline

    if bool(args.diff) == bool(args.files):
        raise DronewatchError("report: give capture files, or --diff A B (not both)")
    config = make_config(args)
    runs: list[tuple[str, AnalysisConfig, str]] = []
    if args.diff:
        a, b = args.diff
        off = replace(config, policy=config.policy.with_ldm(False))
        explicit = args.ldm is not None or args.ldm_window or args.policy is not None
        on = config if explicit else replace(config, policy=config.policy.with_ldm(True))
        b_text = _ldm_text(args) if explicit else "judged with LDM on (B of --diff)"
        runs = [(a, off, "judged with LDM off (A of --diff)"), (b, on, b_text)]
    else:
        runs = [(path, config, _ldm_text(args)) for path in args.files]

    collector = ReportCollector()
    progress = Progress(sys.stderr)
    code = EXIT_OK
    for path, cfg, ldm_text in runs:
        sha, size = _sha256(path)
        collector.begin(CaptureInfo(path, sha, size, ldm_text))
        try:
            source = open_source(path)
            show = not args.no_progress and (args.progress or progress.wants(source))
            result = run_source(source, collector.add, cfg, progress=progress if show else None)
        except CaptureError as exc:
            print(f"dronewatch: {inline(str(exc))}", file=sys.stderr)
            code = _worst(code, EXIT_USAGE)
            continue
        finally:
            progress.close()
        cap = result.capture
        for err in cap.errors:
            print(f"dronewatch: {inline(err)}", file=sys.stderr)
        if not cap.complete:
            code = _worst(code, EXIT_USAGE if cap.packets == 0 else EXIT_DAMAGED)
        if any(a.note in VIOLATION_NOTES for a in result.alerts):
            code = _worst(code, EXIT_VIOLATION)

    part = None
    if args.diff and len(collector.sides) == 2:
        names = [{n for (i, n) in collector.vendor_names if i == side} for side in (0, 1)]
        part = DiffPart(
            a=args.diff[0],
            b=args.diff[1],
            rows=diff(collector.sides[0], collector.sides[1]),
            names_only_a=sorted(names[0] - names[1]),
            names_only_b=sorted(names[1] - names[0]),
        )
    command = shlex.join(
        ["dronewatch", "report", *(["--diff", *args.diff] if args.diff else args.files)]
        + ["-o", str(args.output), *_given_options(args, policy_actions)]
    )
    text = render(
        collector,
        _provenance(config, command, args, policy_actions),
        diff=part,
        ldm_windows=_windows_of(collector, [cfg for _, cfg, _ in runs]),
    )
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DronewatchError(f"cannot write {args.output}: {exc}") from None
    for i, v in collector.verdicts:
        where = f" [{Path(runs[i][0]).name}]" if len(runs) > 1 else ""
        print(inline(f"{v.device_ip}{where}: {v.verdict.upper()}: {v.msg}"))
    print(f"Report written to {inline(str(args.output))}")
    return code


def _worst(a: int, b: int) -> int:
    """The exit code that wins when two outcomes apply: usage, then violation, then damage."""
    order = (EXIT_USAGE, EXIT_VIOLATION, EXIT_DAMAGED, EXIT_OK)
    return a if order.index(a) <= order.index(b) else b


def _windows_of(
    collector: ReportCollector, configs: list[AnalysisConfig]
) -> Callable[[int, str, str | None], tuple[tuple[float, float | None], ...]]:
    """When LDM was on for a host in a capture, by the policy that capture was judged with."""

    def windows(i: int, host: str, mac: str | None) -> tuple[tuple[float, float | None], ...]:
        dev = configs[i].policy.for_device(host, mac)
        if not dev.ldm:
            return ()
        return dev.windows or ((float("-inf"), None),)

    return windows


def _provenance(
    config: AnalysisConfig,
    command: str,
    args: argparse.Namespace,
    policy_actions: list[argparse.Action],
) -> Provenance:
    from dronewatch import __version__
    from dronewatch.geoip.maxmind import MaxMindResolver, bundled_data_dir, bundled_sources
    from dronewatch.judge.alert import utc_time
    from dronewatch.output.report_html import Provenance

    options = []
    given = _given_options(args, policy_actions)
    options.append(("Policy options", " ".join(shlex.quote(x) for x in given) or "none"))
    if args.policy is not None:
        sha, _ = _sha256(str(args.policy))
        options.append(("Policy file sha256", sha or "-"))
    options.append(("Flow counting", "bulk" if config.bulk else "per packet"))
    packs = []
    if config.classifier is not None:
        for pack in config.classifier.ruleset.packs:
            sha, _ = _sha256(str(pack.path))
            packs.append((pack.name, str(pack.version), str(pack.path), pack.rules, sha))
    dbs = []
    note = None
    resolver = config.resolver
    if isinstance(resolver, MaxMindResolver):
        bundled = bundled_data_dir().resolve()
        for db in resolver.databases:
            sha, _ = _sha256(db.path)
            built = utc_time(db.build_epoch).strftime("%Y-%m-%d")
            dbs.append((db.database_type, built, db.path, sha))
        if any(Path(db.path).resolve().parent == bundled for db in resolver.databases):
            try:
                sources = bundled_sources()
            except DronewatchError:
                sources = {}
            dates = sorted({d.get("data_date", "") for d in sources.get("databases", [])} - {""})
            note = f"Bundled GeoIP data of {', '.join(dates) or 'unknown date'}. " + str(
                sources.get("notice", "")
            )
    return Provenance(
        version=__version__,
        command=command,
        options=options,
        packs=packs,
        geoip=dbs,
        geoip_note=note,
    )
