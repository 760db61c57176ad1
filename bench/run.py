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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
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

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


def _run_once(argv: Sequence[str], cwd: Path) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS (KiB), exit status and stderr tail of one run.

    The peak RSS comes from GNU time, which starts the command itself: the kernel's count for a
    process forked from this (large) Python process would include pages of ours it never used.
    """
    timer = shutil.which("time") or "/usr/bin/time"
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss:
        cmd = [timer, "-f", "%M", "-o", rss.name, *argv] if Path(timer).exists() else list(argv)
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
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
    rows: list[tuple[str, ...]] = [("flows of", "packets handed to Python", "of all packets")]
    for service, n in counts.items():
        rows.append((service, f"{n:,}", f"{100 * n / total:.1f}%"))
    handed = sum(counts.values())
    rows.append(("all", f"{handed:,}", f"{100 * handed / total:.1f}%"))
    return rows


def stage_table(capture: Path, packets: int, repeat: int, total: float) -> list[tuple[str, ...]]:
    """Seconds per stage of the analysis (bench/stages.py), and what each adds."""
    rows: list[tuple[str, ...]] = [("stage", "seconds", "adds", "packets/s up to here")]
    before = 0.0
    for stage, name in STAGE_NAMES.items():
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
        took = statistics.median(times)
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
    under PYTHONDONTWRITEBYTECODE would compile every module again on every run."""
    import compileall

    import dronewatch

    compileall.compile_dir(Path(dronewatch.__file__).parent, quiet=1)


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


def main() -> int:
    parser = argparse.ArgumentParser(
        description="Time dronewatch and its peers on the same capture, in one run."
    )
    parser.add_argument(
        "--capture",
        type=Path,
        default=DEFAULT_CAPTURE,
        help="capture to time (default: bench/data/bench.pcap, built if missing)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool (3)")
    parser.add_argument("--install", action="store_true", help="install the peers first")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/RESULTS.md")
    args = parser.parse_args()
    if args.install:
        install()
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
    results = [dw, no_c, per_packet]
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
        f"{args.capture.stat().st_size / 1e6:.0f} MB; median of {args.repeat} runs each.\n\n"
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
