#!/usr/bin/env python3
"""Time one stage of dronewatch's analysis on a capture, in a fresh process: where the time goes.

    .venv/bin/python bench/stages.py STAGE FILE     # prints the seconds the stage took
    .venv/bin/python bench/stages.py handed FILE    # prints, as JSON, the packets and flows,
                                                    # and the packets handed to Python by the
                                                    # service of their flow

Stages, each including the ones before it:
  read      walk the pcap records a batch at a time (no decoding)
  flows     + read the headers and assemble flows (the bulk path's C walk), with no analyzer
  analyzers + every analyzer, on the packets the walk hands to Python (a flow's first packets,
            TCP control packets); the drone links' later datagrams go to the C frame counters
  No stage classifies, geolocates or checks policy at a flow's end (the monitor's flow_end is
  turned off), and records are dropped, not written: those, and start-up, are the rest of the
  whole `dronewatch analyze`, timed by bench/run.py itself.
"""

from __future__ import annotations

import json
import sys
import time

STAGES = ("read", "flows", "analyzers")


def run(stage: str, path: str) -> float:
    import dronewatch.analyzers
    import dronewatch.core.pipeline as pipeline
    from dronewatch.capture.files import FileSource
    from dronewatch.judge.monitor import Monitor

    every = dronewatch.analyzers.default_analyzers
    every(pipeline.Context(emit=print, dns=pipeline.DnsNameCache()))  # imports done before timing
    Monitor.flow_end = lambda self, flow: None  # type: ignore[method-assign]
    if stage == "flows":
        pipeline.default_analyzers = lambda *args, **kwargs: []  # type: ignore[assignment]
    start = time.perf_counter()  # after the imports: the stage's own time
    if stage == "read":
        for _ in FileSource(path).batches():
            pass
    else:
        pipeline.run_source(FileSource(path), lambda record: None)
    return time.perf_counter() - start


def handed(path: str) -> dict[str, int]:
    """Packets the bulk path handed to the per-packet decoder and `Engine.process`, by the
    service of their flow at its end (`not IP`: frames without an IP packet that the walk handed
    to the decoder, such as 802.11 management frames; those the walk counts itself, such as
    802.11 control frames, are not handed)."""
    from collections import Counter

    import dronewatch.core.pipeline as pipeline
    from dronewatch.capture.decode import Decoder
    from dronewatch.capture.files import FileSource
    from dronewatch.core.engine import Engine
    from dronewatch.core.flow import Flow, Packet

    per_flow: Counter[int] = Counter()
    by_service: Counter[str] = Counter()
    ended = [0]
    decoded = [0, 0]  # frames handed to the decoder, of them IP packets
    process, end, decode = Engine.process, Engine._end, Decoder.decode

    def counting_decode(self: Decoder, raw: object) -> Packet | None:
        pkt = decode(self, raw)  # type: ignore[arg-type]
        decoded[0] += 1
        decoded[1] += pkt is not None and pkt.ip_version != 0
        return pkt

    def counting_process(self: Engine, pkt: Packet) -> None:
        process(self, pkt)
        if not pkt.ip_version:
            return  # counted below, with the frames the decoder made no packet of
        ends = (pkt.src, pkt.sport), (pkt.dst, pkt.dport)
        low, high = min(ends), max(ends)
        flow = self.flows.get((pkt.proto, *low, *high))
        if flow is not None:
            per_flow[id(flow)] += 1

    def counting_end(self: Engine, key: object, flow: Flow, reason: str) -> None:
        ended[0] += 1
        by_service[flow.service or "unrecognised"] += per_flow.pop(id(flow), 0)
        end(self, key, flow, reason)  # type: ignore[arg-type]

    Engine.process = counting_process  # type: ignore[method-assign]
    Engine._end = counting_end  # type: ignore[method-assign]
    Decoder.decode = counting_decode  # type: ignore[method-assign]
    result = pipeline.run_source(FileSource(path), lambda record: None)
    by_service["not IP"] += decoded[0] - decoded[1]
    counts = {"packets": result.capture.packets, "flows": ended[0]}
    return {**counts, **dict(by_service.most_common())}


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in (*STAGES, "handed"):
        print(f"usage: stages.py {{{','.join(STAGES)},handed}} FILE", file=sys.stderr)
        return 2
    if sys.argv[1] == "handed":
        print(json.dumps(handed(sys.argv[2])))
        return 0
    print(f"{run(sys.argv[1], sys.argv[2]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
