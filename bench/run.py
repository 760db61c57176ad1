#!/usr/bin/env python3
"""Time dronewatch and its peers on the same capture, in one run, and print packets/s and peak RSS.

Every tool reads the same file the same number of times; the table gives the median packets per
second, the ratio of dronewatch's speed to each peer's, and the peak resident memory of the
process. A second table gives dronewatch's speed on each capture under pcaps/.

    .venv/bin/python bench/run.py --install      # as root: Debian peers + NFStream, then measure
    .venv/bin/python bench/run.py                # measure with whatever peers are installed
    .venv/bin/python bench/run.py --repeat 5 --capture other.pcap

Peers: `tcpdump -r F -w /dev/null` (the read floor), tshark field extraction, ndpiReader (Debian
libndpi-bin), NFStream (PyPI) and Suricata when it is on PATH. A peer that is missing is listed as
such, not skipped silently.

With --shapes, the same tools (and `analyze --per-packet`) on each traffic-shape capture of
bench/shapes.py instead, taking turns round by round; per shape: seconds, packets/s, flows/s,
the ratio to each peer, peak RSS, what each tool read, dronewatch's stages and the share of
packets its C walk hands to Python. Writes bench/SHAPES.md.

    .venv/bin/python bench/run.py --shapes all --repeat 3
    .venv/bin/python bench/run.py --shapes syn_scan,short_flows --repeat 1 --skip tshark
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
BIN = Path(sys.executable).parent
DEFAULT_CAPTURE = ROOT / "bench" / "data" / "bench.pcap"
RESULTS = ROOT / "bench" / "RESULTS.md"
DEBIAN_PEERS = ("tcpdump", "tshark", "libndpi-bin", "time")
NFSTREAM_SCRIPT = (
    "import sys; from nfstream import NFStreamer; "
    "print(sum(1 for _ in NFStreamer(source=sys.argv[1], n_dissections=20)))"
)


@dataclass(slots=True)
class Measurement:
    tool: str
    command: str
    seconds: list[float]
    peak_rss_kb: int
    error: str | None = None
    cpu: list[float] = field(default_factory=list)
    """CPU seconds (user and system) of each run, where measured: less moved than wall seconds
    by other processes on a shared machine."""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def _run_once(
    argv: Sequence[str],
    cwd: Path,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    cpu: list[float] | None = None,
) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS (KiB), exit status and stderr tail of one run (its standard output
    to `stdout`, by default nowhere); its CPU seconds (user and system, the command's and its
    children's) are appended to `cpu` when given.

    The peak RSS comes from GNU time, which starts the command itself: the kernel's count for a
    process forked from this (large) Python process would include pages of ours it never used.
    """
    timer = shutil.which("time") or "/usr/bin/time"
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        cmd = [timer, "-f", "%M", "-o", rss.name, *argv] if Path(timer).exists() else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=stdout, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        if cpu is not None:
            cpu.append(usage.ru_utime + usage.ru_stime)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        tail = err.read()[-400:].decode("utf-8", "replace")
        lines = [line for line in rss.read().splitlines() if line.strip().isdigit()]
        peak = int(lines[-1]) if lines else usage.ru_maxrss
    return elapsed, peak, proc.returncode, tail


def measure(tool: str, argv: list[str], repeat: int, ok_codes: Sequence[int] = (0,)) -> Measurement:
    """Run one command `repeat` times (after one warm-up read of the file cache)."""
    seconds: list[float] = []
    peak = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeat):
            elapsed, rss, code, tail = _run_once(argv, Path(tmp))
            if code not in ok_codes:
                return Measurement(tool, " ".join(argv), [], 0, f"exit {code}: {tail.strip()}")
            seconds.append(elapsed)
            peak = max(peak, rss)
    return Measurement(tool, " ".join(argv), seconds, peak)


def peers(capture: Path) -> list[tuple[str, list[str] | None, str]]:
    """(tool, command or None when missing, note) for every peer."""
    f = str(capture)
    out: list[tuple[str, list[str] | None, str]] = []

    def have(name: str) -> str | None:
        return shutil.which(name)

    out.append(
        (
            "tcpdump (read floor)",
            ["tcpdump", "-n", "-r", f, "-w", "/dev/null"] if have("tcpdump") else None,
            "apt install tcpdump",
        )
    )
    out.append(
        (
            "ndpiReader",
            ["ndpiReader", "-i", f, "-q"] if have("ndpiReader") else None,
            "apt install libndpi-bin",
        )
    )
    out.append(
        (
            "suricata",
            ["suricata", "-r", f, "-k", "none", "-l", "."] if have("suricata") else None,
            "not in Debian's default sources",
        )
    )
    has_nfstream = (
        subprocess.run([sys.executable, "-c", "import nfstream"], capture_output=True).returncode
        == 0
    )
    out.append(
        (
            "NFStream",
            [sys.executable, "-c", NFSTREAM_SCRIPT, f] if has_nfstream else None,
            "pip install nfstream",
        )
    )
    tshark = [
        "tshark",
        "-n",
        "-r",
        f,
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
        "-e",
        "tls.handshake.extensions_server_name",
        "-e",
        "dns.qry.name",
    ]
    out.append(("tshark fields", tshark if have("tshark") else None, "apt install tshark"))
    return out


STAGE_NAMES = {
    "read": "read pcap records in batches",
    "flows": "+ headers and flow table (C walk), no analyzer",
    "analyzers": "+ analyzers (packets handed to Python; drone links' frames counted in C)",
}


def handed_table(capture: Path) -> list[tuple[str, ...]]:
    """Packets handed to Python, by the service of their flow, with their share of all."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "stages.py"), "handed", str(capture)],
        capture_output=True,
        text=True,
        check=True,
    )
    counts = json.loads(out.stdout)
    total = counts.pop("packets")
    counts.pop("flows", None)
    rows: list[tuple[str, ...]] = [("flows of", "packets handed to Python", "of all packets")]
    for service, n in counts.items():
        rows.append((service, f"{n:,}", f"{100 * n / total:.1f}%"))
    handed = sum(counts.values())
    rows.append(("all", f"{handed:,}", f"{100 * handed / total:.1f}%"))
    return rows


def stage_seconds(capture: Path, stage: str, repeat: int) -> float:
    """Median seconds of one stage of the analysis (bench/stages.py), each run a fresh process."""
    print(f"bench: stage {stage} ...", file=sys.stderr)
    times = []
    for _ in range(repeat):
        out = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "stages.py"), stage, str(capture)],
            capture_output=True,
            text=True,
            check=True,
        )
        times.append(float(out.stdout.strip()))
    return statistics.median(times)


def stage_table(capture: Path, packets: int, repeat: int, total: float) -> list[tuple[str, ...]]:
    """Seconds per stage of the analysis (bench/stages.py), and what each adds."""
    rows: list[tuple[str, ...]] = [("stage", "seconds", "adds", "packets/s up to here")]
    before = 0.0
    for stage, name in STAGE_NAMES.items():
        took = stage_seconds(capture, stage, repeat)
        rows.append((name, f"{took:.2f}", f"{took - before:.2f}", f"{packets / took:,.0f}"))
        before = took
    rows.append(
        (
            "+ classification, GeoIP, policy, output, start-up",
            f"{total:.2f}",
            f"{total - before:.2f}",
            f"{packets / total:,.0f}",
        )
    )
    return rows


def split_capture(capture: Path) -> list[Path]:
    """The capture cut in two files of half the packets each (kept next to it for reruns), to
    time `analyze --workers` on several files."""
    from dronewatch.capture.files import open_source
    from dronewatch.capture.pcapwrite import file_header, record

    halves = [capture.with_name(f"{capture.stem}.half{k}.pcap") for k in (1, 2)]
    if all(h.exists() and h.stat().st_mtime >= capture.stat().st_mtime for h in halves):
        return halves
    total = count_packets(capture)
    outs = [h.open("wb") for h in halves]
    try:
        for i, raw in enumerate(open_source(str(capture)).packets()):
            out = outs[0] if i < total // 2 else outs[1]
            if out.tell() == 0:
                out.write(file_header(raw.linktype))
            out.write(record(raw.ts, raw.data, raw.wirelen))
    finally:
        for out in outs:
            out.close()
    return halves


def count_packets(capture: Path) -> int:
    """Packets in the capture, counted by dronewatch's own reader."""
    from dronewatch.capture.files import open_source

    source = open_source(str(capture))
    return sum(1 for _ in source.packets())


def install() -> None:
    """Install the peers this machine can get: Debian packages (as root) and NFStream."""
    if os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *DEBIAN_PEERS],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    else:
        print("bench: not root: Debian peers not installed", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "nfstream"], check=False)


def compile_package() -> None:
    """Write the bytecode of dronewatch's modules, as `pip install` does for a real install, so a
    run times the analysis and not the compiling: an editable install (the development set-up)
    under PYTHONDONTWRITEBYTECODE would compile every module again on every run. Then make the
    rule-pack cache a user's first run makes."""
    import compileall

    import dronewatch

    compileall.compile_dir(Path(dronewatch.__file__).parent, quiet=1)
    # The rule packs validated once and cached (`rulepack.load_packs`), as after a user's first
    # run: every timed run reads them back, none times their validation.
    subprocess.run(
        [sys.executable, "-c", "from dronewatch.judge.rulepack import load_packs; load_packs()"],
        check=True,
    )


def source_of(package: Path) -> str:
    """Which dronewatch was timed, with no machine path: this checkout's `src/dronewatch` or an
    installed package."""
    try:
        return f"this checkout's `{package.resolve().relative_to(ROOT)}`"
    except ValueError:
        return "an installed package (not this checkout)"


def measured_on() -> str:
    """'Measured <UTC time> on <machine>': the first words of every results file."""
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return f"Measured {when} on {machine()}"


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows
    ]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


# --- Traffic shapes (--shapes) ------------------------------------------------------------------

SHAPES_DIR = ROOT / "bench" / "data" / "shapes"
SHAPES_RESULTS = ROOT / "bench" / "SHAPES.md"
DRONEWATCH = "dronewatch analyze"
WORKERS_2 = "dronewatch --workers 2"
"""`analyze --workers 2` on the same one file (`dronewatch.core.split`)."""
SUMMARY_PEERS = ("tcpdump (read floor)", "ndpiReader", "NFStream", "tshark fields")


@dataclass(slots=True)
class ShapeRun:
    """Everything measured on one shape's capture."""

    name: str
    summary: str
    capture: Path
    packets: int
    flows: int
    handed: dict[str, int]
    stages: dict[str, float]
    results: list[Measurement]
    saw: dict[str, str]
    missing: list[str]

    def get(self, tool: str) -> Measurement | None:
        return next((m for m in self.results if m.tool == tool and not m.error), None)


def ndpi_saw(capture: Path) -> str:
    """What ndpiReader read of a capture, from the summary of one untimed run without -q."""
    if not shutil.which("ndpiReader"):
        return ""
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            ["ndpiReader", "-i", str(capture)], cwd=tmp, capture_output=True, text=True
        )
    found = {}
    for line in (done.stdout + done.stderr).splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("IP packets", "Unique flows") and value.split():
            found[key] = int(value.split()[0])
        if "Unsupported datalink" in line:
            return line.strip().rstrip(".") + ": nothing read"
    if len(found) < 2:
        return "no summary"
    return f"{found['IP packets']:,} IP packets, {found['Unique flows']:,} flows"


def time_round_robin(
    tools: list[tuple[str, list[str]]], repeat: int, label: str
) -> tuple[list[Measurement], dict[str, str]]:
    """Run every tool once per round, `repeat` rounds, so that a change in the machine's load
    falls on all of them alike; a tool that fails is not run again. Returns the measurements and
    the first line each tool printed (NFStream prints its flow count)."""
    results = [Measurement(tool, " ".join(argv), [], 0) for tool, argv in tools]
    saw: dict[str, str] = {}
    for rnd in range(repeat):
        for (tool, argv), m in zip(tools, results, strict=True):
            if m.error:
                continue
            print(f"bench: {label} {rnd + 1}/{repeat}: {tool} ...", file=sys.stderr)
            with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryFile() as out:
                cpu: list[float] = []
                elapsed, rss, code, tail = _run_once(argv, Path(tmp), stdout=out, cpu=cpu)
                out.seek(0)
                first = out.readline(200).decode("utf-8", "replace").strip()
            ok = (0, 1) if tool.startswith("dronewatch") else (0,)
            if code not in ok:
                m.error = f"exit {code}: {tail.strip()}"
                continue
            m.seconds.append(elapsed)
            m.cpu.extend(cpu)
            m.peak_rss_kb = max(m.peak_rss_kb, rss)
            if tool == "NFStream" and first.isdigit():
                saw[tool] = f"{int(first):,} flows"
    return results, saw


def measure_shape(name: str, directory: Path, repeat: int, skip: Sequence[str]) -> ShapeRun:
    """Time dronewatch and every peer on one shape's capture (built first if missing), then
    dronewatch's stages and the packets its C walk hands to Python."""
    from make_capture import build_shapes
    from shapes import SHAPES, path_of

    capture = path_of(name, directory)
    if not capture.exists():
        build_shapes([name], directory, None, 1)
    packets = count_packets(capture)  # also brings the file into the page cache
    dw = [str(BIN / "dronewatch"), "analyze", "--quiet", "--no-progress"]
    tools: list[tuple[str, list[str]]] = [
        (DRONEWATCH, [*dw, str(capture)]),
        (WORKERS_2, [*dw, "--workers", "2", str(capture)]),
        ("dronewatch --per-packet", [*dw, "--per-packet", str(capture)]),
    ]
    missing: list[str] = []
    for tool, argv, note in peers(capture):
        if argv is None:
            missing.append(f"{tool} ({note})")
        else:
            tools.append((tool, argv))
    tools = [t for t in tools if not any(t[0].lower().startswith(w.lower()) for w in skip)]
    results, saw = time_round_robin(tools, repeat, name)
    if any(tool == "ndpiReader" for tool, _ in tools):
        saw["ndpiReader"] = ndpi_saw(capture)
    print(f"bench: {name}: packets handed to Python ...", file=sys.stderr)
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "stages.py"), "handed", str(capture)],
        capture_output=True,
        text=True,
        check=True,
    )
    handed = json.loads(out.stdout)
    stages = {stage: stage_seconds(capture, stage, 1) for stage in STAGE_NAMES}
    return ShapeRun(
        name,
        SHAPES[name].summary,
        capture,
        packets,
        handed.pop("flows"),
        handed,
        stages,
        results,
        saw,
        missing,
    )


def _ratio(peer: Measurement | None, dw: Measurement | None) -> str:
    """How many times as fast as the peer dronewatch is (the peer's seconds over dronewatch's)."""
    if peer is None or dw is None:
        return "n/a"
    ratio = peer.median / dw.median
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.3f}x"


def _speedup(one: Measurement, two: Measurement | None) -> str:
    """How many times as fast `analyze --workers 2` on the one file is as one process."""
    if two is None or two.error or not two.seconds:
        return "n/a"
    return f"{one.median / two.median:.2f}x"


def handed_share(run: ShapeRun) -> tuple[int, str]:
    """Packets handed to Python (all services) and the share of all packets, with the services."""
    counts = {k: v for k, v in run.handed.items() if k != "packets"}
    total = sum(counts.values())
    top = ", ".join(f"{k} {v:,}" for k, v in list(counts.items())[:6])
    return total, top


def shape_section(run: ShapeRun) -> str:
    """One shape's tables: every tool's time, and where dronewatch's time went."""
    dw = run.get(DRONEWATCH)
    rows: list[tuple[str, ...]] = [
        (
            "tool",
            "median s",
            "min-max s",
            "CPU s",
            "packets/s",
            "flows/s",
            "dronewatch is",
            "peak RSS MB",
            "what it read",
        )
    ]
    for m in run.results:
        if m.error:
            rows.append((m.tool, "failed", m.error[:70].replace("|", "/"), *[""] * 7))
            continue
        ratio = "1.00x" if m.tool == DRONEWATCH else f"{_ratio(m, dw)} as fast"
        read = run.saw.get(m.tool, "")
        if m.tool == DRONEWATCH:
            read = f"{run.flows:,} flows"
        rows.append(
            (
                m.tool,
                f"{m.median:.2f}",
                f"{min(m.seconds):.2f}-{max(m.seconds):.2f}",
                f"{statistics.median(m.cpu):.2f}" if m.cpu else "",
                f"{run.packets / m.median:,.0f}",
                f"{run.flows / m.median:,.0f}",
                ratio,
                f"{m.peak_rss_kb / 1024:.0f}",
                read,
            )
        )
    handed, top = handed_share(run)
    st = run.stages
    stage_line = (
        f"reading the records {st['read']:.2f} s; up to the C walk and the engine "
        f"{st['flows']:.2f} s; up to the analyzers {st['analyzers']:.2f} s"
    )
    if dw is not None:
        stage_line += (
            f"; the whole run, with classification, GeoIP, policy, output and start-up, "
            f"{dw.median:.2f} s"
        )
    text = (
        f"### {run.name}\n\n{run.summary}. `{run.capture.name}`: {run.packets:,} packets, "
        f"{run.capture.stat().st_size / 1e6:.0f} MB, {run.flows:,} flows as dronewatch counts "
        f"them.\n\n{table(rows)}\n\n"
        f"Where dronewatch's time goes (bench/stages.py, each stage including those before it, "
        f"one run each inside the process, so differences under ~0.3 s are noise): "
        f"{stage_line}.\n\n"
        f"Packets the C walk hands to Python: {handed:,} of {run.packets:,} "
        f"({100 * handed / run.packets:.1f}%); by the service of their flow: {top}.\n"
    )
    if run.missing:
        text += f"\nNot installed: {', '.join(run.missing)}.\n"
    return text


def summary_table(runs: list[ShapeRun]) -> str:
    head = ["shape", "packets", "flows", "dronewatch s", "CPU s", "packets/s", "flows/s"]
    head += [f"vs {p.split()[0]}" for p in SUMMARY_PEERS]
    head += ["--workers 2", "to Python", "peak RSS MB"]
    rows: list[tuple[str, ...]] = [tuple(head)]
    for run in runs:
        dw = run.get(DRONEWATCH)
        handed, _ = handed_share(run)
        if dw is None:
            rows.append((run.name, f"{run.packets:,}", f"{run.flows:,}", "failed", *[""] * 10))
            continue
        rows.append(
            (
                run.name,
                f"{run.packets:,}",
                f"{run.flows:,}",
                f"{dw.median:.2f}",
                f"{statistics.median(dw.cpu):.2f}" if dw.cpu else "",
                f"{run.packets / dw.median:,.0f}",
                f"{run.flows / dw.median:,.0f}",
                *(_ratio(run.get(p), dw) for p in SUMMARY_PEERS),
                _speedup(dw, run.get(WORKERS_2)),
                f"{100 * handed / run.packets:.1f}%",
                f"{dw.peak_rss_kb / 1024:.0f}",
            )
        )
    return table(rows)


def run_shapes(
    names: list[str], directory: Path, repeat: int, skip: Sequence[str], note: str = ""
) -> str:
    """Measure every named shape; returns the report (markdown)."""
    import dronewatch

    compile_package()
    runs = []
    for name in names:
        runs.append(measure_shape(name, directory, repeat, skip))
        print(shape_section(runs[-1]), file=sys.stderr)
    argv = " ".join(["bench/run.py", *sys.argv[1:]])
    return (
        f"{measured_on()}: `{argv}`, median of {repeat} runs each, the tools taking turns "
        f"(one run of each, then the next round), the rule-pack cache made first (as a user's "
        f"first run makes it). dronewatch from "
        f"{source_of(Path(dronewatch.__file__).parent)}{'; ' + note if note else ''}.\n\n"
        f"Captures from `bench/make_capture.py --shapes` (bench/shapes.py, seed 1). `vs X` is how "
        f"many times as fast as X dronewatch is (X's seconds over dronewatch's; above 1: "
        f"dronewatch is faster). flows/s is the flows dronewatch counts over each tool's "
        f"seconds. `to Python` is the share of packets the C walk hands to the per-packet decoder "
        f"and the engine (bench/stages.py handed). Peak RSS is dronewatch analyze's. CPU s: the "
        f"median CPU seconds (user and system), which other processes on a shared machine move "
        f"less than wall seconds.\n\n"
        f"{summary_table(runs)}\n\n" + "\n".join(shape_section(r) for r in runs)
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--capture",
        type=Path,
        default=DEFAULT_CAPTURE,
        help="capture to time (default: bench/data/bench.pcap, built if missing)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (3)")
    parser.add_argument("--install", action="store_true", help="install the peers first")
    parser.add_argument("--no-write", action="store_true", help="do not update the results file")
    parser.add_argument(
        "--shapes",
        metavar="NAMES",
        help="time every tool on each traffic-shape capture instead (bench/shapes.py; built "
        "under bench/data/shapes/ if missing): 'all' or names separated by commas; writes "
        "bench/SHAPES.md",
    )
    parser.add_argument(
        "--skip",
        metavar="TOOLS",
        default="",
        help="with --shapes: tools to leave out, by the start of their name, separated by commas "
        "(e.g. 'tshark,dronewatch --per-packet')",
    )
    parser.add_argument(
        "--shape-dir",
        type=Path,
        default=SHAPES_DIR,
        help=f"with --shapes: where the shape captures are (default {SHAPES_DIR})",
    )
    parser.add_argument(
        "--append",
        action="store_true",
        help="with --shapes: add this run to bench/SHAPES.md after the runs already there",
    )
    parser.add_argument(
        "--note", default="", help="with --shapes: a note for the report (e.g. the commit measured)"
    )
    args = parser.parse_args()
    if args.install:
        install()
    if args.shapes:
        from make_capture import shape_names

        skip = [w.strip() for w in args.skip.split(",") if w.strip()]
        names = shape_names(args.shapes)
        report = run_shapes(names, args.shape_dir, args.repeat, skip, args.note)
        print(report)
        if args.append and SHAPES_RESULTS.exists():
            earlier = SHAPES_RESULTS.read_text("utf-8").rstrip()
            report = f"{earlier}\n\n## Another run\n\n{report}"
        elif not report.startswith("# "):
            report = "# Speed on each traffic shape\n\n" + report
        if not args.no_write:
            SHAPES_RESULTS.write_text(report, "utf-8")
            print(f"bench: wrote {SHAPES_RESULTS.relative_to(ROOT)}", file=sys.stderr)
        return 0
    if not args.capture.exists():
        if args.capture != DEFAULT_CAPTURE:
            parser.error(f"{args.capture}: no such file")
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_capture.py")], check=True)
    packets = count_packets(args.capture)
    compile_package()
    dw = measure(
        "dronewatch analyze",
        [str(BIN / "dronewatch"), "analyze", "--quiet", "--no-progress", str(args.capture)],
        args.repeat,
        ok_codes=(0, 1),
    )
    per_packet = measure(
        "dronewatch --per-packet",
        [
            str(BIN / "dronewatch"),
            "analyze",
            "--quiet",
            "--no-progress",
            "--per-packet",
            str(args.capture),
        ],
        args.repeat,
        ok_codes=(0, 1),
    )
    no_c = measure(
        "dronewatch, no C (DRONEWATCH_NO_C=1)",
        [
            "env",
            "DRONEWATCH_NO_C=1",
            str(BIN / "dronewatch"),
            "analyze",
            "--quiet",
            "--no-progress",
            str(args.capture),
        ],
        args.repeat,
        ok_codes=(0, 1),
    )
    one_file = measure(
        "dronewatch, one file, --workers 2",
        [
            str(BIN / "dronewatch"),
            "analyze",
            "--quiet",
            "--no-progress",
            "--workers",
            "2",
            str(args.capture),
        ],
        args.repeat,
        ok_codes=(0, 1),
    )
    results = [dw, no_c, per_packet, one_file]
    halves = split_capture(args.capture)
    for workers in (1, 2):
        results.append(
            measure(
                f"dronewatch, 2 halves, --workers {workers}",
                [
                    str(BIN / "dronewatch"),
                    "analyze",
                    "--quiet",
                    "--no-progress",
                    "--workers",
                    str(workers),
                    *map(str, halves),
                ],
                args.repeat,
                ok_codes=(0, 1),
            )
        )
    missing: list[str] = []
    for tool, argv, note in peers(args.capture):
        if argv is None:
            missing.append(f"{tool} ({note})")
            continue
        print(f"bench: {tool} ...", file=sys.stderr)
        results.append(measure(tool, argv, args.repeat))
    rows: list[tuple[str, ...]] = [
        ("tool", "median s", "packets/s", "dronewatch is", "peak RSS MB")
    ]
    for m in results:
        if m.error:
            rows.append((m.tool, "failed", m.error[:60], "", ""))
            continue
        pps = packets / m.median
        ratio = "1.00x" if m is dw else f"{m.median / dw.median:.2f}x as fast"
        rows.append(
            (m.tool, f"{m.median:.2f}", f"{pps:,.0f}", ratio, f"{m.peak_rss_kb / 1024:.0f}")
        )
    stage_rows = stage_table(args.capture, packets, args.repeat, dw.median)
    handed_rows = handed_table(args.capture)
    per_capture: list[tuple[str, ...]] = [("capture", "packets", "seconds", "packets/s")]
    captures = sorted(p for p in (ROOT / "pcaps").rglob("*") if p.is_file() and ".pcap" in p.name)
    for cap in captures:
        n = count_packets(cap)
        m = measure(
            "dronewatch",
            [str(BIN / "dronewatch"), "analyze", "--quiet", "--no-progress", str(cap)],
            1,
            ok_codes=(0, 1, 3),
        )
        if m.error:
            per_capture.append((str(cap.relative_to(ROOT)), f"{n:,}", "failed", m.error[:40]))
            continue
        per_capture.append(
            (str(cap.relative_to(ROOT)), f"{n:,}", f"{m.median:.2f}", f"{n / m.median:,.0f}")
        )
    report = (
        f"{measured_on()}.\n\n"
        f"Capture: `{args.capture.name}`, {packets:,} packets, "
        f"{args.capture.stat().st_size / 1e6:.0f} MB; median of {args.repeat} runs each, the "
        f"rule-pack cache made first (as a user's first run makes it).\n\n"
        f"{table(rows)}\n\n"
        + (f"Not installed: {', '.join(missing)}.\n\n" if missing else "")
        + "Where dronewatch's time goes (each stage includes the ones above it; median seconds "
        + "inside the process, so without start-up):\n\n"
        + f"{table(stage_rows)}\n\n"
        + "Packets the C walk hands to Python (decoded one by one, through the engine and the "
        + "analyzers), by the service of their flow (bench/stages.py handed):\n\n"
        + f"{table(handed_rows)}\n\n"
        + "dronewatch on each capture under `pcaps/` (one run, process start-up included):\n\n"
        + f"{table(per_capture)}\n"
    )
    print(report)
    if not args.no_write:
        RESULTS.write_text("# Benchmark results\n\n" + report, encoding="utf-8")
        print(f"bench: wrote {RESULTS.relative_to(ROOT)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
