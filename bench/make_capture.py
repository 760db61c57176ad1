#!/usr/bin/env python3
"""Build the benchmark capture reproducibly: the recorded scenario sessions, repeated back to back.

Each repetition is one more phone session: the phone's addresses (10.77.0.2 on the uplink,
192.168.2.20 / 192.168.42.10 on the drone link) get a new host number, and the timestamps move on
by the length of everything written so far, so flows are long and realistic (a 2 MB upload, a
6-second DUML link, MQTT telemetry) and never collide. Only the address bytes change; checksums are
left as recorded, which no reader in the benchmark verifies.

    .venv/bin/python bench/make_capture.py                 # bench/data/bench.pcap, >= 1M packets
    .venv/bin/python bench/make_capture.py --packets 200000 --out /tmp/small.pcap

With --shapes it builds, instead, one capture per traffic shape (bench/shapes.py) under
bench/data/shapes/, each --packets long (by default 1M, and 250,000 SYNs for the SYN scan), from
fixed seeds: one-way TCP, TLS without ServerHello, sequence gaps, long flows, floods of short
flows, 802.11 with and without radiotap, pcapng with VLAN tags (and the same frames as pcap), the
same mix from remote mirrors (ERSPAN II over GRE, VXLAN), sessions joined mid-stream (no SYN,
often no ClientHello), a SYN scan.

    .venv/bin/python bench/make_capture.py --shapes all          # every shape, ~10 s each
    .venv/bin/python bench/make_capture.py --shapes syn_scan,seq_gaps --packets 100000
    .venv/bin/python bench/make_capture.py --shapes list         # what each shape holds
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from pathlib import Path

import dpkt

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
SCENARIOS = ROOT / "pcaps" / "scenarios"
DEFAULT_OUT = ROOT / "bench" / "data" / "bench.pcap"
SHAPES_DIR = ROOT / "bench" / "data" / "shapes"
PHONE_ADDRESSES = (bytes([10, 77, 0, 2]), bytes([192, 168, 2, 20]), bytes([192, 168, 42, 10]))
ETH_IPV4 = 0x0800


def load_sessions() -> list[tuple[float, bytes]]:
    """Every packet of every scenario, as (time from the session's start, frame), in file order."""
    packets: list[tuple[float, bytes]] = []
    offset = 0.0
    for path in sorted(SCENARIOS.glob("*.pcap")):
        with path.open("rb") as fh:
            reader = dpkt.pcap.Reader(fh)
            if reader.datalink() != dpkt.pcap.DLT_EN10MB:
                continue
            frames = list(reader)
        start = frames[0][0]
        for ts, frame in frames:
            packets.append((offset + ts - start, bytes(frame)))
        offset += frames[-1][0] - start + 1.0
    return packets


def rewrite(frame: bytes, host: int) -> bytes:
    """The frame with the phone's addresses given host number `host` (1..65000)."""
    if len(frame) < 34 or struct.unpack_from("!H", frame, 12)[0] != ETH_IPV4:
        return frame
    buf = bytearray(frame)
    for off in (26, 30):
        addr = bytes(buf[off : off + 4])
        if addr in PHONE_ADDRESSES:
            # 10.77.h.h on the uplink, 10.100.h.h / 10.101.h.h on the drone links: still local.
            prefix = {10: b"\x0a\x4d", 2: b"\x0a\x64", 42: b"\x0a\x65"}[
                addr[0] if addr[0] == 10 else addr[2]
            ]
            buf[off : off + 4] = prefix + struct.pack("!H", host)
    return bytes(buf)


def build(out: Path, packets_wanted: int) -> int:
    """Write the capture; returns the packet count."""
    session = load_sessions()
    span = session[-1][0] + 1.0
    base = 1_700_000_000.0
    out.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with out.open("wb") as fh:
        writer = dpkt.pcap.Writer(fh, snaplen=65535, linktype=dpkt.pcap.DLT_EN10MB)
        rep = 0
        while written < packets_wanted:
            rep += 1
            host = (rep % 65000) + 1
            for ts, frame in session:
                writer.writepkt(rewrite(frame, host), ts=base + rep * span + ts)
                written += 1
                if written >= packets_wanted:
                    break
    return written


def shape_names(spec: str) -> list[str]:
    """Shape names from `all` or a comma-separated list; an unknown name exits with the list."""
    from shapes import SHAPES

    if spec == "all":
        return list(SHAPES)
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in SHAPES]
    if unknown:
        raise SystemExit(f"unknown shape(s) {', '.join(unknown)}; known: {', '.join(SHAPES)}")
    return names


def build_shapes(names: list[str], directory: Path, packets: int | None, seed: int) -> list[Path]:
    """Write each shape's capture to `directory`, `packets` long (default: the shape's own
    length, 1M but for the SYN scan's 250,000 SYNs); returns their paths."""
    from shapes import SHAPES, build, path_of

    paths = []
    for name in names:
        out = path_of(name, directory)
        count = packets or SHAPES[name].packets
        print(f"make_capture: {name} ...", file=sys.stderr)
        start = time.perf_counter()
        flows = build(name, out, count, seed)
        took = time.perf_counter() - start
        print(
            f"{out}: {count:,} packets, {out.stat().st_size / 1e6:.0f} MB, "
            f"{flows:,} flows or sessions started, {took:.0f} s"
        )
        paths.append(out)
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--packets", type=int, help="packets to write (1M; with --shapes, each shape's own)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output ({DEFAULT_OUT})")
    parser.add_argument(
        "--shapes",
        metavar="NAMES",
        help="build traffic-shape captures instead: 'all', 'list', or names separated by commas",
    )
    parser.add_argument(
        "--dir", type=Path, default=SHAPES_DIR, help=f"where shape captures go ({SHAPES_DIR})"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the shapes' draws (1)")
    args = parser.parse_args()
    if args.shapes == "list":
        from shapes import SHAPES

        for shape in SHAPES.values():
            print(f"{shape.name:20} {shape.summary}")
        return 0
    if args.shapes:
        build_shapes(shape_names(args.shapes), args.dir, args.packets, args.seed)
        return 0
    n = build(args.out, args.packets or 1_000_000)
    print(f"{args.out}: {n:,} packets, {args.out.stat().st_size / 1e6:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
