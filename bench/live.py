#!/usr/bin/env python3
"""Highest replay rate each live capture backend keeps up with, without losing a packet.

As root: a veth pair is created, tcpreplay sends a capture into one end at increasing packet
rates, and on the other end dronewatch captures with one backend and runs the whole analysis
pipeline. A rate passes when every packet sent was analyzed (no kernel drop, no queue overflow,
nothing missing); the table gives, per backend, the highest passing rate.

    .venv/bin/python bench/live.py                       # all backends, default rates
    .venv/bin/python bench/live.py --packets 20000 --rates 1000,5000,20000
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "LIVE.md"
SEND, RECV = "dwbench0", "dwbench1"


def capture(backend: str, interface: str, expect: int, quiet_s: float) -> None:
    """Child process: analyze what arrives until `expect` packets or `quiet_s` of silence;
    print JSON with what was received and dropped."""
    from dronewatch.capture.live import LiveSource
    from dronewatch.core.pipeline import Pipeline

    source = LiveSource([interface], backend=backend, tick_s=0.2)
    pipe = Pipeline(lambda record: None)
    source.start()
    print("ready", flush=True)
    seen, last = 0, time.monotonic()
    for raw in source.packets():
        now = time.monotonic()
        if raw is None:
            if seen and now - last > quiet_s:
                break
            continue
        pipe.feed(raw)
        seen += 1
        last = now
        if seen >= expect:
            break
    source.stop()
    for _ in source.packets():
        pass
    drops = source.drops_so_far()
    print(json.dumps({"received": seen, "drops": drops}), flush=True)


def run_rate(
    backend: str, pcap: Path, packets: int, rate: int, seconds: float
) -> dict[str, object]:
    """Replay `pcap` at `rate` for at least `seconds` (looping it) into a capture by `backend`."""
    loops = max(1, -(-int(rate * seconds) // packets))
    child = subprocess.Popen(
        [sys.executable, __file__, "--child", backend, RECV, str(packets * loops)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        err = child.stderr.read() if child.stderr else ""
        return {"error": err.strip()[-200:] or "capture did not start"}
    time.sleep(1.0)  # dumpcap opens the interface after it says so
    sent = subprocess.run(
        ["tcpreplay", "-i", SEND, "--pps", str(rate), "--loop", str(loops), str(pcap)],
        check=True,
        capture_output=True,
        text=True,
    )
    out, _ = child.communicate(timeout=600)
    got = dict(json.loads(out.strip().splitlines()[-1]))
    got["sent"] = packets * loops
    achieved = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", sent.stdout)
    got["achieved"] = float(achieved.group(1)) if achieved else None
    return got


def veth(up: bool) -> None:
    subprocess.run(["ip", "link", "del", SEND], capture_output=True)
    if up:
        subprocess.run(
            ["ip", "link", "add", SEND, "type", "veth", "peer", "name", RECV], check=True
        )
        for name in (SEND, RECV):
            subprocess.run(["ip", "link", "set", name, "up"], check=True)
            # Keep the kernel quiet on the test link: no IPv6 router solicitations.
            subprocess.run(
                ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], capture_output=True
            )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=30000, help="packets in the capture (30000)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each rate lasts at least this long (5)"
    )
    parser.add_argument(
        "--rates",
        default="5000,10000,20000,40000,80000,160000,320000",
        help="packet rates to try, ascending (comma-separated)",
    )
    parser.add_argument("--backends", default="dumpcap,afpacket,scapy")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/LIVE.md")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        backend, interface, expect = args.child
        capture(backend, interface, int(expect), quiet_s=3.0)
        return 0
    if os.geteuid() != 0 or shutil.which("tcpreplay") is None:
        print("bench/live.py: needs root and tcpreplay (apt install tcpreplay)", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    work = Path(tempfile.mkdtemp(prefix="dronewatch-live-"))
    pcap = work / "live.pcap"
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "make_capture.py"),
            "--packets",
            str(args.packets),
            "--out",
            str(pcap),
        ],
        check=True,
        capture_output=True,
    )
    rows = [
        "| backend | zero-loss rate (packets/s) | first lossy rate: received / sent, drops |",
        "|---|---|---|",
    ]
    veth(True)
    try:
        for backend in args.backends.split(","):
            best, lossy = f"below {rates[0]:,}", "none up to the highest rate tried"
            for rate in rates:
                print(f"bench: {backend} at {rate:,} packets/s ...", file=sys.stderr)
                got = run_rate(backend, pcap, args.packets, rate, args.seconds)
                if "error" in got:
                    lossy = f"failed: {got['error']}"
                    break
                achieved = got["achieved"]
                shown = f"{achieved:,.0f}" if isinstance(achieved, float) else f"{rate:,}"
                if got["received"] == got["sent"] and not got["drops"]:
                    best = shown
                    continue
                lossy = f"{shown}/s: {got['received']:,} / {got['sent']:,}, drops {got['drops']}"
                break
            rows.append(f"| {backend} | {best} | {lossy} |")
    finally:
        veth(False)
        shutil.rmtree(work, ignore_errors=True)
    report = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: tcpreplay into a veth "
        f"pair, a {args.packets:,}-packet benchmark capture looped for at least "
        f"{args.seconds:g} s per rate, the whole analysis pipeline behind each capture backend. "
        "Rates are what tcpreplay achieved.\n\n" + "\n".join(rows) + "\n"
    )
    print(report)
    if not args.no_write:
        RESULTS.write_text("# Live capture: zero-loss rates\n\n" + report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
