#!/usr/bin/env python3
"""Memory of dronewatch's analysis: bytes per live flow, peak RSS as a capture grows, and under a
flood of distinct flows.

    .venv/bin/python bench/memory.py            # prints both tables, writes bench/MEMORY.md
    .venv/bin/python bench/memory.py --no-write
    .venv/bin/python bench/memory.py --flood    # the flood table only (its section of MEMORY.md)

Bytes per live flow: a capture of N TCP connections from one phone to 200 servers, each opened
(SYN) and then acknowledged 30 s later, so all N are open at once when the capture ends. The
memory Python has allocated (tracemalloc) is read at the end of the capture, before the flows are
ended; the cost of one flow is the difference between two sizes of N divided by the difference
in flows, so the fixed costs (read buffer, rule packs, GeoIP) drop out.

Peak RSS as the capture grows: `dronewatch analyze --quiet` on the first quarter, half and the
whole of the benchmark capture (bench/data/bench.pcap, built by bench/make_capture.py), measured
by GNU time. Flows end as the capture goes on, so the peak should not grow with its length.

Flood (`--flood`, a few minutes): a capture of two million distinct TCP SYNs in four seconds, as
a SYN flood or random-port scan crossing the mirror gives (random public source addresses and
ports, to random public addresses on port 443 and on random ports; nothing answers, all within
the attempt timeout, so every flow is still open when the capture ends), built deterministically
in a temporary file. `dronewatch analyze --quiet` runs on it with the C path and with
`DRONEWATCH_NO_C=1`: seconds, peak RSS (GNU time), and the flows the flow table evicted (from
the capture record). Bytes per flow of the flood: Python's allocations at the end of 20,000- and
100,000-SYN captures, as for the open flows above.
"""

from __future__ import annotations

import argparse
import gc
import linecache
import os
import random
import re
import struct
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
FLOOD_FLOWS = 2_000_000
FLOOD_SECONDS = 4.0
"""The flood's span: within the TCP attempt timeout, so no flow ends before the capture does."""
FLOOD_BEFORE = (
    "Before the flow cap and the smaller flows (measured 2026-12-05 on the same machine, other "
    "jobs running; `EngineOptions.max_flows` was 2,000,000, so nothing was evicted): peak RSS "
    "3,031 MB with the C path (927 s) and without (539 s), 1,416 bytes per flow of the flood."
)
"""The flood's figures before issue 13's change, kept for comparison."""
FLOOD_SECTION = "## Flood"
"""Where the flood's part of MEMORY.md starts (each mode rewrites only its own part)."""
_PUBLIC_FIRST_OCTETS = tuple(
    o for o in range(1, 224) if o not in (10, 45, 100, 127, 169, 172, 192, 198, 203)
)
"""First octets of the flood's destinations: public unicast (45/8 holds its sources)."""


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


def flood_capture(n: int, path: Path, seed: int = 13) -> None:
    """N distinct TCP SYNs in FLOOD_SECONDS, nothing answered: random source addresses (45/8,
    spoofed) and ports, to random public addresses, half to port 443 and half to random ports.

    Distinct by construction: the source address and port are the bits of `i` times an odd
    constant modulo 2**40 (a bijection), so no two SYNs share a 5-tuple."""
    rng = random.Random(seed)
    eth = b"\x02\x00\x00\x00\x00\x01" + b"\xae\x3f\x52\x8c\x77\x02" + b"\x08\x00"
    first = _PUBLIC_FIRST_OCTETS
    with path.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, linktype=dpkt.pcap.DLT_EN10MB)
        for i in range(n):
            mixed = (i * 0x9E3779B97F) & 0xFF_FFFF_FFFF
            src = bytes((45, mixed >> 32, (mixed >> 24) & 0xFF, (mixed >> 16) & 0xFF))
            sport = mixed & 0xFFFF
            dst = bytes(
                (rng.choice(first), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
            )
            dport = 443 if i % 2 == 0 else rng.randrange(1, 65536)
            ip = bytearray(
                struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0, 64, 6, 0, src, dst)
            )
            struct.pack_into("!H", ip, 10, _checksum(ip))
            tcp = bytearray(
                struct.pack(
                    "!HHIIBBHHH", sport, dport, rng.getrandbits(32), 0, 0x50, 0x02, 64240, 0, 0
                )
            )
            pseudo = src + dst + struct.pack("!BBH", 0, 6, len(tcp))
            struct.pack_into("!H", tcp, 16, _checksum(pseudo + tcp))
            writer.writepkt(eth + bytes(ip) + bytes(tcp), ts=1_700_000_000 + i * FLOOD_SECONDS / n)


def _checksum(data: bytes | bytearray) -> int:
    """The Internet checksum (RFC 1071) of an even number of bytes."""
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def traced_at_end(path: Path, sites: list[tuple[str, int]] | None = None) -> tuple[int, int]:
    """(bytes allocated, flows open) at the end of the capture, before its flows end (tracing
    stops there: ending the flows is not measured). `sites`, when given, gets the bytes held by
    each allocating line of dronewatch, largest first."""
    import dronewatch.core.pipeline as pipeline
    from dronewatch.capture.files import FileSource
    from dronewatch.cli.app import analysis_config, build_parser

    seen: dict[str, int] = {}
    finish = pipeline.Pipeline.finish

    def measured_finish(self: pipeline.Pipeline, *args: object, **kwargs: object) -> object:
        gc.collect()
        seen["bytes"] = tracemalloc.get_traced_memory()[0]
        seen["flows"] = len(self.engine.flows)
        if sites is not None:
            for stat in tracemalloc.take_snapshot().statistics("lineno"):
                where = stat.traceback[0]
                if "dronewatch" in where.filename and stat.size >= 1024:
                    name = where.filename.split("dronewatch/")[-1]
                    code = linecache.getline(where.filename, where.lineno).strip()[:70]
                    code = code.replace("|", "\\|")
                    sites.append((f"{name}:{where.lineno} `{code}`", stat.size))
        tracemalloc.stop()
        return finish(self, *args, **kwargs)  # type: ignore[arg-type]

    pipeline.Pipeline.finish = measured_finish  # type: ignore[method-assign]
    try:
        # Everything `analyze --ldm on` runs: rules, GeoIP, policy and alerts.
        config = analysis_config(build_parser().parse_args(["analyze", "--ldm", "on", str(path)]))
        tracemalloc.start()
        pipeline.run_source(FileSource(str(path)), lambda record: None, config)
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


def flood_per_flow(tmp: Path) -> tuple[float, list[tuple[str, ...]]]:
    """Bytes per flow of a SYN flood (every flow open at the end), and what holds them: the
    allocating lines of dronewatch, per flow."""
    points = []
    sites: list[tuple[str, int]] = []
    for n in SIZES:
        path = tmp / f"syn-{n}.pcap"
        flood_capture(n, path)
        points.append(traced_at_end(path, sites if n == SIZES[-1] else None))
        path.unlink()
    (b0, f0), (b1, f1) = points
    rows: list[tuple[str, ...]] = [("allocated at", "bytes per flow")]
    for site, size in sites:
        if size / f1 >= 4:
            rows.append((site, f"{size / f1:,.0f}"))
    return (b1 - b0) / (f1 - f0), rows


def flood_table(tmp: Path, n: int) -> list[tuple[str, ...]]:
    """`dronewatch analyze` on an N-SYN flood, with the C path and without: seconds, peak RSS,
    flows, and the flows evicted (from the summary's capture line)."""
    path = tmp / "flood.pcap"
    flood_capture(n, path)
    rows: list[tuple[str, ...]] = [("run", "distinct flows", "evicted", "seconds", "peak RSS MB")]
    for label, no_c in (("C path (default)", None), ("DRONEWATCH_NO_C=1", "1")):
        saved = os.environ.pop("DRONEWATCH_NO_C", None)
        if no_c is not None:
            os.environ["DRONEWATCH_NO_C"] = no_c
        try:
            with (tmp / "summary.txt").open("w+b") as out:
                elapsed, rss_kb, code, tail = _run_once(
                    [str(BIN / "dronewatch"), "analyze", "--no-progress", str(path)], tmp, out
                )
                out.seek(0)
                summary = out.read().decode("utf-8", "replace")
        finally:
            os.environ.pop("DRONEWATCH_NO_C", None)
            if saved is not None:
                os.environ["DRONEWATCH_NO_C"] = saved
        if code not in (0, 1):
            raise SystemExit(f"bench: dronewatch failed on {path}: {tail}")
        flows = re.search(r"([\d,]+) flows, ", summary)
        evicted = re.search(r"([\d,]+) flows evicted", summary)
        rows.append(
            (
                label,
                flows.group(1) if flows else "?",
                evicted.group(1) if evicted else "0",
                f"{elapsed:.0f}",
                f"{rss_kb / 1024:.0f}",
            )
        )
    path.unlink()
    return rows


def flood_text(tmp: Path, n: int) -> str:
    """The flood's section of MEMORY.md."""
    from dronewatch.core.engine import EngineOptions

    per_flow, sites = flood_per_flow(tmp)
    runs = flood_table(tmp, n)
    return (
        f"{FLOOD_SECTION}\n\n{measured_on()} (bench/memory.py --flood).\n\n"
        f"{n:,} distinct TCP SYNs in {FLOOD_SECONDS:.0f} s, nothing answered (random spoofed "
        f"sources in 45/8 and ports, to random public addresses on port 443 and random ports): "
        f"`dronewatch analyze --no-progress FLOOD.pcap` with the default flow table "
        f"(`EngineOptions.max_flows` = {EngineOptions().max_flows:,}).\n\n{table(runs)}\n\n"
        f"Bytes per flow of the flood (Python's allocations with every flow open, between "
        f"{SIZES[0]:,} and {SIZES[1]:,} SYNs, fixed costs taken out): **{per_flow:,.0f} "
        f"bytes**, held at {SIZES[1]:,} flows by:\n\n{table(sites)}\n\n{FLOOD_BEFORE}\n"
    )


def _write(part: str, flood: bool) -> None:
    """Replace one part of MEMORY.md (the flood's section, or what comes before it)."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Memory\n\n"
    head, sep, tail = old.partition(FLOOD_SECTION)
    kept_flood = sep + tail if sep else ""
    if flood:
        RESULTS.write_text(head.rstrip("\n") + "\n\n" + part)
    else:
        RESULTS.write_text("# Memory\n\n" + part + ("\n" + kept_flood if kept_flood else ""))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--capture", type=Path, default=DEFAULT_CAPTURE, help="bench capture")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/MEMORY.md")
    parser.add_argument(
        "--flood", action="store_true", help="only the flood (a few minutes): its section"
    )
    parser.add_argument(
        "--flood-flows", type=int, default=FLOOD_FLOWS, help="distinct flows of the flood"
    )
    args = parser.parse_args()
    if args.flood:
        with tempfile.TemporaryDirectory(prefix="dronewatch-flood-") as tmp:
            text = flood_text(Path(tmp), args.flood_flows)
        print(text)
        if not args.no_write:
            _write(text, flood=True)
        return 0
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
        _write(text, flood=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
