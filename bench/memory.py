#!/usr/bin/env python3
"""Memory of dronewatch's analysis: bytes per live flow, and peak RSS as a capture grows.

    .venv/bin/python bench/memory.py            # prints both tables, writes bench/MEMORY.md
    .venv/bin/python bench/memory.py --no-write

Bytes per live flow: a capture of N TCP connections from one phone to 200 servers, each opened
(SYN) and then acknowledged 30 s later, so all N are open at once when the capture ends. The
memory Python has allocated (tracemalloc) is read at the end of the capture, before the flows are
ended; the cost of one flow is the difference between two sizes of N divided by the difference
in flows, so the fixed costs (read buffer, rule packs, GeoIP) drop out.

Peak RSS as the capture grows: `dronewatch analyze --quiet` on the first quarter, half and the
whole of the benchmark capture (bench/data/bench.pcap, built by bench/make_capture.py), measured
by GNU time. Flows end as the capture goes on, so the peak should not grow with its length.
"""

from __future__ import annotations

import argparse
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from run import BIN, DEFAULT_CAPTURE, _run_once, measured_on, table  # noqa: E402

RESULTS = ROOT / "bench" / "MEMORY.md"
SIZES = (20_000, 100_000)
SERVERS = 200


def open_flows_capture(n: int, path: Path) -> None:
    """N TCP connections from 10.77.0.x to 198.51.100.1-200:443, all open at the end."""
    phone_mac, router_mac = b"\xae\x3f\x52\x8c\x77\x02", b"\x02\x00\x00\x00\x00\x01"
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for rnd, flags in enumerate((dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK)):
            for i in range(n):
                tcp = dpkt.tcp.TCP(sport=20000 + i % 40000, dport=443, flags=flags, seq=1)
                ip = dpkt.ip.IP(
                    src=bytes([10, 77, 0, 2 + i // 40000]),
                    dst=bytes([198, 51, 100, 1 + i % SERVERS]),
                    p=dpkt.ip.IP_PROTO_TCP,
                    data=tcp,
                )
                ip.len = len(bytes(ip))
                frame = dpkt.ethernet.Ethernet(src=phone_mac, dst=router_mac, data=ip)
                writer.writepkt(bytes(frame), ts=1_700_000_000 + rnd * 30 + i * 20.0 / n)


def traced_at_end(path: Path) -> tuple[int, int]:
    """(bytes allocated, flows open) at the end of the capture, before its flows end."""
    import dronewatch.core.pipeline as pipeline
    from dronewatch.capture.files import FileSource
    from dronewatch.cli.app import analysis_config, build_parser

    seen: dict[str, int] = {}
    finish = pipeline.Pipeline.finish

    def measured_finish(self: pipeline.Pipeline, *args: object, **kwargs: object) -> object:
        gc.collect()
        seen["bytes"] = tracemalloc.get_traced_memory()[0]
        seen["flows"] = len(self.engine.flows)
        return finish(self, *args, **kwargs)  # type: ignore[arg-type]

    pipeline.Pipeline.finish = measured_finish  # type: ignore[method-assign]
    try:
        # Everything `analyze --ldm on` runs: rules, GeoIP, policy and alerts.
        config = analysis_config(build_parser().parse_args(["analyze", "--ldm", "on", str(path)]))
        tracemalloc.start()
        pipeline.run_source(FileSource(str(path)), lambda record: None, config)
        tracemalloc.stop()
    finally:
        pipeline.Pipeline.finish = finish  # type: ignore[method-assign]
    return seen["bytes"], seen["flows"]


def per_flow_table(tmp: Path) -> tuple[list[tuple[str, ...]], float]:
    rows: list[tuple[str, ...]] = [("open flows", "allocated MB at the end", "peak RSS MB")]
    points = []
    for n in SIZES:
        path = tmp / f"open-{n}.pcap"
        open_flows_capture(n, path)
        allocated, flows = traced_at_end(path)
        _, rss_kb, code, tail = _run_once(
            [str(BIN / "dronewatch"), "analyze", "--quiet", "--no-progress", str(path)], tmp
        )
        if code not in (0, 1):
            raise SystemExit(f"bench: dronewatch failed on {path}: {tail}")
        points.append((flows, allocated))
        rows.append((f"{flows:,}", f"{allocated / 1e6:.1f}", f"{rss_kb / 1024:.0f}"))
    (f0, b0), (f1, b1) = points
    return rows, (b1 - b0) / (f1 - f0)


def growth_table(capture: Path, tmp: Path) -> list[tuple[str, ...]]:
    with capture.open("rb") as fh:
        frames = list(dpkt.pcap.Reader(fh))
    rows: list[tuple[str, ...]] = [("packets of the bench capture", "seconds", "peak RSS MB")]
    for part in (4, 2, 1):
        path = tmp / f"part-{part}.pcap"
        with path.open("wb") as out:
            writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
            for ts, frame in frames[: len(frames) // part]:
                writer.writepkt(frame, ts=ts)
        elapsed, rss_kb, code, tail = _run_once(
            [str(BIN / "dronewatch"), "analyze", "--quiet", "--no-progress", str(path)], tmp
        )
        if code not in (0, 1):
            raise SystemExit(f"bench: dronewatch failed on {path}: {tail}")
        rows.append((f"{len(frames) // part:,}", f"{elapsed:.2f}", f"{rss_kb / 1024:.0f}"))
        path.unlink()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE, help="bench capture")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/MEMORY.md")
    args = parser.parse_args()
    if not args.capture.exists():
        subprocess.run([sys.executable, str(ROOT / "bench" / "make_capture.py")], check=True)
    with tempfile.TemporaryDirectory(prefix="dronewatch-mem-") as tmp:
        flows, per_flow = per_flow_table(Path(tmp))
        growth = growth_table(args.capture, Path(tmp))
    text = (
        f"{measured_on()} (bench/memory.py).\n\n"
        f"Bytes per live flow (TCP connections to port 443, all open at the end; Python's "
        f"allocations read with tracemalloc, fixed costs taken out): **{per_flow:,.0f} bytes**.\n\n"
        f"{table(flows)}\n\nPeak RSS as the capture grows:\n\n{table(growth)}\n"
    )
    print(text)
    if not args.no_write:
        RESULTS.write_text("# Memory\n\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
