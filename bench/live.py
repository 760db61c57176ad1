#!/usr/bin/env python3
"""Highest replay rate each live capture set-up keeps up with, without losing a packet.

As root: a veth pair is created, tcpreplay sends the benchmark mix into one end at increasing
packet rates, and on the other end each set-up captures: the dronewatch agent (capture, the
whole analysis pipeline, coverage reports, spool) with the AF_PACKET ring and one worker, the
ring with `--workers 2` (PACKET_FANOUT), dumpcap, scapy, and, as the baseline,
`tcpdump -i IF -w /dev/null`. The set-ups take turns at each rate, so all are measured side by
side in one run. A rate passes when every packet sent was analyzed (no kernel drop, nothing
missing); a rate that fails is tried once more before it counts as failed. tcpreplay runs on the
first CPU, the captures on the others (`--no-pin`: anywhere).

Where tcpreplay cannot send faster than the captures read (one core sends, and the kernel's
receive work runs on the sender's core), the replay rates only say that much. So the capacity of
each capture path is measured too: the capture opens its ring (1 GiB, and tcpdump's `-B` the
same), tcpreplay sends the mix as fast as it can while the capture does not read, then the
capture reads and analyzes everything the ring holds; the rate is packets over the time that
takes (the 1-worker rows on one CPU, `--workers 2` on all, the sender having finished).

    sudo .venv/bin/python bench/live.py                     # every set-up, default rates
    sudo .venv/bin/python bench/live.py --setups afpacket,tcpdump --rates 100000,200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "LIVE.md"
SETUPS = ("afpacket", "afpacket-2w", "dumpcap", "tcpdump", "scapy")
"""afpacket-2w: two agent workers in one PACKET_FANOUT group."""


def child(backend: str, interface: str, expect: int, group: int | None, report_s: float) -> None:
    """A capture worker: the agent's loop until `expect` packets (0: until quiet for 2 s after
    the first), then JSON on stdout with what it received and what its coverage said."""
    from dronewatch.agent.runner import Agent, AgentOptions
    from dronewatch.agent.spool import Spool
    from dronewatch.capture.live import LiveSource
    from dronewatch.core.pipeline import AnalysisConfig

    spool_dir = Path(tempfile.mkdtemp(prefix="dronewatch-live-spool-"))
    source = LiveSource([interface], backend=backend, tick_s=0.2, fanout_group=group)
    spool = Spool(spool_dir, 1 << 30)
    agent = Agent(
        source, AnalysisConfig(), spool, None, AgentOptions(flush_s=0.5, report_s=report_s)
    )
    seen = {"packets": 0, "at": time.monotonic()}

    def tick(agent: Agent) -> None:
        now, packets = time.monotonic(), source.stats.packets
        if packets != seen["packets"]:
            seen.update(packets=packets, at=now)
        elif packets and now - seen["at"] > 2.0:
            agent.stop()
        if expect and packets >= expect:
            agent.stop()

    try:
        agent.run(on_tick=tick, on_started=lambda: print("ready", flush=True))
        reports = []
        while (batch := spool.peek(timeout=0.1)) is not None:
            reports += [r for r in batch.records if r.get("log") == "capture"]
            spool.ack(batch.seq)
    finally:
        spool.close()
        shutil.rmtree(spool_dir, ignore_errors=True)
    kernel = source.ring_statistics() if source.backend == "afpacket" else None
    out = {
        "received": source.stats.packets,
        "drops": source.drops_so_far(),
        "reports": len(reports),
        "reports_without_drops": sum(r.get("drops") is None for r in reports),
        "reported_drops": sum(r.get("drops") or 0 for r in reports),
        "freezes": kernel.freezes if kernel else None,
    }
    print(json.dumps(out), flush=True)


def capacity_child(interface: str, expect: int, group: int | None, buffer_mb: int) -> None:
    """A capture worker that opens its ring, waits for a line on stdin while the ring fills,
    then analyzes what the ring holds, as the agent's loop does (without the spool); JSON on
    stdout with when it started and when it had read the last packet (monotonic clock)."""
    from dronewatch.capture.base import CoverageMark
    from dronewatch.capture.live import SIDE_CHANNEL, LiveSource
    from dronewatch.capture.pcapbatch import PcapBatch
    from dronewatch.core.pipeline import Pipeline

    source = LiveSource(
        [interface], backend="afpacket", tick_s=0.1, fanout_group=group, buffer_mb=buffer_mb
    )
    pipe = Pipeline(lambda record: None)
    source.start()
    print("ready", flush=True)
    sys.stdin.readline()
    go = done = time.monotonic()
    next_mark = go + 2.0
    items = source.batches()
    for item in items:
        now = time.monotonic()
        if item is None:
            if now - done > 1.0:
                break
            pipe.tick(time.time())
            continue
        if isinstance(item, PcapBatch):
            pipe.feed_batch(item)
        elif isinstance(item, CoverageMark) or item.iface == SIDE_CHANNEL:
            continue
        else:
            pipe.feed(item)
        done = time.monotonic()
        if now >= next_mark:
            source.request_mark()
            next_mark = now + 2.0
        if expect and source.stats.packets >= expect:
            break
    source.stop()
    for _ in items:
        pass
    pipe.finish(source.stats)
    out = {"received": source.stats.packets, "drops": source.drops_so_far(), "go": go, "done": done}
    print(json.dumps(out), flush=True)


@dataclass
class Bench:
    send: str
    recv: str
    pcap: Path
    packets: int
    seconds: float
    report_s: float
    send_cpu: list[str] = field(default_factory=list)
    capture_cpu: list[str] = field(default_factory=list)

    def trial(self, setup: str, rate: int) -> dict[str, object]:
        """Replay at `rate` for at least `seconds` (looping the capture) into one set-up."""
        loops = max(1, -(-int(rate * self.seconds) // self.packets))
        sent = self.packets * loops
        procs = self._start(setup, sent)
        try:
            for proc in procs:
                assert proc.stdout is not None and proc.stderr is not None
                ready = (proc.stdout if setup != "tcpdump" else proc.stderr).readline()
                if ("ready" if setup != "tcpdump" else "listening") not in ready:
                    proc.kill()
                    err = proc.stderr.read() if proc.stderr else ""
                    return {"error": (ready + err).strip()[-300:] or "capture did not start"}
            replay = self._replay(loops, rate)
            got = self._collect(setup, procs)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        got["sent"] = sent
        achieved = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", replay.stdout)
        got["achieved"] = float(achieved.group(1)) if achieved else None
        got["passed"] = got.get("received") == sent and got.get("drops") == 0
        return got

    def capacity(self, setup: str, loops: int, buffer_mb: int) -> dict[str, object]:
        """Fill the capture's ring (it does not read meanwhile), then time how long it takes to
        read and analyze it all."""
        sent = self.packets * loops
        if setup == "tcpdump":
            return self._tcpdump_capacity(sent, loops, buffer_mb)
        workers = 2 if setup == "afpacket-2w" else 1
        group = str(os.getpid() & 0xFFFF) if workers > 1 else "-"
        cpus = [] if workers > 1 else self.capture_cpu  # the sender is done: every CPU is free
        procs = [
            subprocess.Popen(
                [
                    *cpus,
                    sys.executable,
                    __file__,
                    "--child",
                    "capacity",
                    "afpacket",
                    self.recv,
                    str(sent if workers == 1 else 0),
                    group,
                    str(buffer_mb),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                if proc.stdout.readline().strip() != "ready":
                    err = proc.stderr.read() if proc.stderr else ""
                    return {"error": err.strip()[-300:] or "capture did not start"}
            self._replay(loops, None)
            time.sleep(0.5)  # the last blocks are handed over
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results = []
            for proc in procs:
                out, err = proc.communicate(timeout=600)
                lines = out.strip().splitlines()
                if not lines or not lines[-1].startswith("{"):
                    return {"error": err.strip()[-300:] or "no result"}
                results.append(json.loads(lines[-1]))
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        received = sum(int(r["received"]) for r in results)
        drops = (
            None if any(r["drops"] is None for r in results) else sum(r["drops"] for r in results)
        )
        seconds = max(r["done"] for r in results) - min(r["go"] for r in results)
        split = [int(r["received"]) for r in results]
        return {
            "sent": sent,
            "received": received,
            "drops": drops,
            "seconds": seconds,
            "split": split,
        }

    def _tcpdump_capacity(self, sent: int, loops: int, buffer_mb: int) -> dict[str, object]:
        cmd = [
            *self.capture_cpu,
            "tcpdump",
            "-i",
            self.recv,
            "-w",
            "/dev/null",
            "-B",
            str(buffer_mb * 1024),
            "-c",
            str(sent),
        ]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert proc.stderr is not None
            if "listening" not in proc.stderr.readline():
                return {"error": "tcpdump did not start"}
            proc.send_signal(signal.SIGSTOP)
            self._replay(loops, None)
            time.sleep(0.5)
            go = time.monotonic()
            proc.send_signal(signal.SIGCONT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                proc.wait(timeout=10)
            seconds = time.monotonic() - go
            err = proc.stderr.read()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        captured = re.search(r"(\d+) packets? captured", err)
        dropped = re.search(r"(\d+) packets? dropped by kernel", err)
        return {
            "sent": sent,
            "received": int(captured.group(1)) if captured else None,
            "drops": int(dropped.group(1)) if dropped else None,
            "seconds": seconds,
        }

    def _replay(self, loops: int, rate: int | None) -> subprocess.CompletedProcess[str]:
        pace = ["--pps", str(rate)] if rate else ["--topspeed"]
        return subprocess.run(
            [*self.send_cpu, "tcpreplay", "-K", "-i", self.send, *pace, "--loop", str(loops)]
            + [str(self.pcap)],
            check=True,
            capture_output=True,
            text=True,
        )

    def _start(self, setup: str, sent: int) -> list[subprocess.Popen[str]]:
        if setup == "tcpdump":
            cmd = [*self.capture_cpu, "tcpdump", "-i", self.recv, "-w", "/dev/null"]
            return [
                subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            ]
        workers = 2 if setup == "afpacket-2w" else 1
        backend = setup.removesuffix("-2w")
        group = str(os.getpid() & 0xFFFF) if workers > 1 else "-"
        expect = sent if workers == 1 else 0
        return [
            subprocess.Popen(
                [
                    *self.capture_cpu,
                    sys.executable,
                    __file__,
                    "--child",
                    "agent",
                    backend,
                    self.recv,
                    str(expect),
                    group,
                    str(self.report_s),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(workers)
        ]

    def _collect(self, setup: str, procs: list[subprocess.Popen[str]]) -> dict[str, object]:
        if setup == "tcpdump":
            (proc,) = procs
            time.sleep(1.5)  # what is in flight is written
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            captured = re.search(r"(\d+) packets? captured", err)
            dropped = re.search(r"(\d+) packets? dropped by kernel", err)
            return {
                "received": int(captured.group(1)) if captured else None,
                "drops": int(dropped.group(1)) if dropped else None,
            }
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=600)
            lines = out.strip().splitlines()
            if not lines or not lines[-1].startswith("{"):
                return {"error": err.strip()[-300:] or "no result"}
            results.append(json.loads(lines[-1]))
        total: dict[str, object] = {}
        for key in ("received", "drops", "reports", "reports_without_drops", "reported_drops"):
            values = [r[key] for r in results]
            total[key] = None if None in values else sum(values)
        return total


SPIN = (
    "import time\nt = time.perf_counter()\nx = 0\n"
    "for i in range(8_000_000):\n    x += i\nprint(time.perf_counter() - t)"
)


def cpu_scaling(cpus: list[int]) -> float:
    """How much more work two CPU-bound processes on two CPUs get done than one alone (2.0 on
    two free cores), measured now: what the machine leaves for a second worker."""

    def spin(on: list[int]) -> list[float]:
        procs = [
            subprocess.Popen(
                ["taskset", "-c", str(cpu), sys.executable, "-c", SPIN],
                stdout=subprocess.PIPE,
                text=True,
            )
            for cpu in on
        ]
        return [float(proc.communicate()[0]) for proc in procs]

    (alone,) = spin(cpus[:1])
    together = spin(cpus[:2])
    return 2 * alone / max(together)


def veth(send: str, recv: str, up: bool) -> None:
    subprocess.run(["ip", "link", "del", send], capture_output=True)
    if up:
        subprocess.run(
            ["ip", "link", "add", send, "type", "veth", "peer", "name", recv], check=True
        )
        for name in (send, recv):
            # Keep the kernel quiet on the test link: no IPv6 router solicitations.
            subprocess.run(
                ["sysctl", "-qw", f"net.ipv6.conf.{name}.disable_ipv6=1"], capture_output=True
            )
            subprocess.run(["ip", "link", "set", name, "up"], check=True)


def describe(got: dict[str, object], rate: int) -> str:
    achieved = got.get("achieved")
    shown = f"{achieved:,.0f}" if isinstance(achieved, float) else f"{rate:,}"
    received, sent = got.get("received"), got.get("sent")
    text = f"{shown}/s: {received:,} / {sent:,}" if isinstance(received, int) else f"{shown}/s"
    return text + f", drops {got.get('drops')}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--packets", type=int, default=30000, help="packets in the capture (30000)")
    parser.add_argument(
        "--seconds", type=float, default=5.0, help="each rate lasts at least this long (5)"
    )
    parser.add_argument(
        "--rates",
        default="25000,50000,75000,100000,125000,150000,175000,200000,250000,300000,400000,500000",
        help="packet rates to try, ascending (comma-separated)",
    )
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"of {', '.join(SETUPS)}")
    parser.add_argument(
        "--report-s", type=float, default=2.0, help="agent coverage report interval (2)"
    )
    parser.add_argument(
        "--capacity-loops",
        type=int,
        default=14,
        help="times the capture is sent to fill the ring for the capacity rows (14; 0: none)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin tcpreplay to CPU 0")
    parser.add_argument("--no-write", action="store_true", help="do not update bench/LIVE.md")
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, backend, interface, expect, group, extra = args.child
        fanout = None if group == "-" else int(group)
        if mode == "capacity":
            capacity_child(interface, int(expect), fanout, int(extra))
        else:
            child(backend, interface, int(expect), fanout, float(extra))
        return 0
    if os.geteuid() != 0 or shutil.which("tcpreplay") is None or shutil.which("tcpdump") is None:
        print("bench/live.py: needs root, tcpreplay and tcpdump", file=sys.stderr)
        return 2
    setups = args.setups.split(",")
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        print(f"bench/live.py: unknown set-up {unknown[0]!r}", file=sys.stderr)
        return 2
    rates = [int(r) for r in args.rates.split(",")]
    cpus = sorted(os.sched_getaffinity(0))
    pin = not args.no_pin and len(cpus) > 1 and shutil.which("taskset") is not None
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
    tag = uuid.uuid4().hex[:6]
    bench = Bench(f"dwls{tag}", f"dwlr{tag}", pcap, args.packets, args.seconds, args.report_s)
    if pin:
        bench.send_cpu = ["taskset", "-c", str(cpus[0])]
        bench.capture_cpu = ["taskset", "-c", ",".join(map(str, cpus[1:]))]
    best: dict[str, str] = dict.fromkeys(setups, f"below {rates[0]:,}")
    best_rate: dict[str, float] = {}
    lossy: dict[str, str] = dict.fromkeys(setups, "none up to the highest rate tried")
    coverage: dict[str, str] = dict.fromkeys(setups, "")
    capacity: dict[str, dict[str, object]] = {}
    scaling: float | None = None
    alive = list(setups)
    veth(bench.send, bench.recv, True)
    try:
        ceiling = bench._replay(max(1, int(300_000 * args.seconds) // args.packets), None)
        top = re.search(r"Rated: [\d.]+ Bps, [\d.]+ Mbps, ([\d.]+) pps", ceiling.stdout)
        sender = float(top.group(1)) if top else 0.0
        for rate in rates:
            for setup in list(alive):
                for attempt in (1, 2):
                    print(f"bench: {setup} at {rate:,} packets/s ...", file=sys.stderr)
                    got = bench.trial(setup, rate)
                    if "error" in got or got["passed"]:
                        break
                    print(f"bench:   lost: {describe(got, rate)} (try {attempt})", file=sys.stderr)
                if "error" in got:
                    lossy[setup] = f"failed: {got['error']}"
                    alive.remove(setup)
                    continue
                if setup != "tcpdump":
                    unknown_drops = got.get("reports_without_drops")
                    coverage[setup] = (
                        f"{got.get('reports')} reports, {unknown_drops} without a drop count"
                        if unknown_drops is not None
                        else ""
                    )
                achieved = got["achieved"]
                if not got["passed"]:
                    lossy[setup] = describe(got, rate)
                    alive.remove(setup)
                    continue
                before = best_rate.get(setup, 0.0)
                best_rate[setup] = achieved if isinstance(achieved, float) else float(rate)
                best[setup] = f"{max(before, best_rate[setup]):,.0f}"
                if best_rate[setup] < 1.05 * before:  # the sender is the limit now
                    best_rate[setup] = max(before, best_rate[setup])
                    lossy[setup] = f"none: tcpreplay sent no faster than {best[setup]}/s"
                    alive.remove(setup)
            if not alive:
                break
        scaling = cpu_scaling(cpus) if len(cpus) > 1 and shutil.which("taskset") else None
        for setup in setups:
            if args.capacity_loops and setup in ("afpacket", "afpacket-2w", "tcpdump"):
                print(f"bench: {setup}, capacity from a filled ring ...", file=sys.stderr)
                capacity[setup] = bench.capacity(setup, args.capacity_loops, 1024)
    finally:
        veth(bench.send, bench.recv, False)
        shutil.rmtree(work, ignore_errors=True)
    names = {
        "afpacket": "dronewatch agent, afpacket ring, 1 worker",
        "afpacket-2w": "dronewatch agent, afpacket ring, --workers 2",
        "dumpcap": "dronewatch agent, dumpcap",
        "scapy": "dronewatch agent, scapy",
        "tcpdump": "tcpdump -i IF -w /dev/null",
    }
    rows = [
        "| set-up | zero-loss rate (packets/s) | first lossy rate: received / sent, drops "
        "| coverage reports at the last rate |",
        "|---|---|---|---|",
    ]
    for setup in setups:
        rows.append(f"| {names[setup]} | {best[setup]} | {lossy[setup]} | {coverage[setup]} |")
    ratios = []
    base, one = best_rate.get("tcpdump"), best_rate.get("afpacket")
    if one and base:
        ratios.append(f"afpacket ring / tcpdump: {one / base:.2f}x")
    if one and best_rate.get("afpacket-2w"):
        ratios.append(f"--workers 2 / 1 worker: {best_rate['afpacket-2w'] / one:.2f}x")
    cap_rows = [
        "| set-up | packets | seconds | packets/s | lost |",
        "|---|---|---|---|---|",
    ]
    cap_rate: dict[str, float] = {}
    for setup, got in capacity.items():
        if "error" in got:
            cap_rows.append(f"| {names[setup]} | failed: {got['error']} | | | |")
            continue
        seconds = float(got["seconds"])  # type: ignore[arg-type]
        received = got["received"]
        lost = f"{got['drops']} drops" if got["drops"] else "none"
        if received != got["sent"]:
            lost += f", {received} of {got['sent']} read"
        split = got.get("split")
        if isinstance(split, list) and len(split) > 1:
            lost += " (per worker: " + " + ".join(f"{n:,}" for n in split) + ")"
        cap_rate[setup] = float(got["sent"]) / seconds  # type: ignore[arg-type]
        where = ", all CPUs" if setup == "afpacket-2w" else ", one CPU" if pin else ""
        cap_rows.append(
            f"| {names[setup]}{where} | {got['sent']:,} | {seconds:.2f} | "
            f"{cap_rate[setup]:,.0f} | {lost} |"
        )
    cap_ratios = []
    if cap_rate.get("afpacket") and cap_rate.get("tcpdump"):
        cap_ratios.append(
            f"afpacket ring / tcpdump: {cap_rate['afpacket'] / cap_rate['tcpdump']:.2f}x"
        )
    if cap_rate.get("afpacket") and cap_rate.get("afpacket-2w"):
        cap_ratios.append(
            f"--workers 2 / 1 worker: {cap_rate['afpacket-2w'] / cap_rate['afpacket']:.2f}x"
        )
    machine = f"{platform.processor() or platform.machine()}, {len(cpus)} CPUs"
    placement = (
        f"tcpreplay pinned to CPU {cpus[0]}, the captures to CPU {','.join(map(str, cpus[1:]))}"
        if pin
        else "nothing pinned"
    )
    load = os.getloadavg()[0]
    report = (
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine} "
        f"(Linux {platform.release()}, load average {load:.1f} at the end): tcpreplay -K into "
        f"a veth pair, a {args.packets:,}-packet benchmark mix (bench/make_capture.py) looped "
        f"for at least {args.seconds:g} s per rate; {placement}. The dronewatch rows run the "
        f"agent's loop (capture, the whole analysis pipeline, coverage reports every "
        f"{args.report_s:g} s, spool). The set-ups take turns at each rate; a lossy rate is "
        "tried twice. Rates are what tcpreplay achieved; with nothing capturing, tcpreplay "
        f"sent {sender:,.0f} packets/s into the veth. The kernel's receive work for the veth "
        "(running each capture's filter, copying each packet into its ring) runs on the "
        "sender's CPU, so a row that ends with 'tcpreplay sent no faster' lost nothing at the "
        "highest rate the sender reached with that capture attached.\n\n" + "\n".join(rows) + "\n"
    )
    if ratios:
        report += "\nZero-loss rates: " + "; ".join(ratios) + ".\n"
    if capacity:
        report += (
            "\nCapacity: the ring (1 GiB; tcpdump -B the same) filled by tcpreplay at full "
            "speed while the capture does not read, then read and analyzed (the dronewatch rows: "
            "the agent's analysis pipeline without the spool).\n\n" + "\n".join(cap_rows) + "\n"
        )
        if cap_ratios:
            report += "\nCapacity: " + "; ".join(cap_ratios) + ".\n"
    if scaling is not None:
        report += (
            f"\nWhat the machine leaves for a second worker, measured in the same run: two "
            f"CPU-bound Python processes on two CPUs get {scaling:.2f}x the work of one done "
            "(2.00x on two free cores).\n"
        )
    print(report)
    if not args.no_write:
        RESULTS.write_text("# Live capture: zero-loss rates\n\n" + report, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
