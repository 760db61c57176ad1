#!/usr/bin/env python3
"""Time one stage of dronewatch's analysis on a capture, in a fresh process: where the time goes.

    .venv/bin/python bench/stages.py STAGE FILE     # prints the seconds the stage took

Stages, each including the ones before it:
  read      walk the pcap records a batch at a time (no decoding)
  flows     + read the headers and assemble flows (the bulk path's C walk), with no analyzer
  others    + every analyzer but the drone-link ones (TLS, QUIC, DNS, HTTP, MQTT, RTMP...), on the
            packets the walk hands to Python
  analyzers + the drone-link analyzers (DJI Wi-Fi, Parrot, MAVLink, Tello): a link's first
            packets in Python, the rest counted by the C frame counters
  No stage classifies, geolocates or checks policy at a flow's end (the monitor's flow_end is
  turned off), and records are dropped, not written: those, and start-up, are the rest of the
  whole `dronewatch analyze`, timed by bench/run.py itself.
"""

from __future__ import annotations

import sys
import time

STAGES = ("read", "flows", "others", "analyzers")
DRONE_LINKS = ("mavlink", "dji_wifi", "tello", "parrot")


def run(stage: str, path: str) -> float:
    import dronewatch.analyzers
    import dronewatch.pipeline as pipeline
    from dronewatch.capture.files import FileSource
    from dronewatch.monitor import Monitor

    every = dronewatch.analyzers.default_analyzers
    every(pipeline.Context(emit=print, dns=pipeline.DnsNameCache()))  # imports done before timing
    Monitor.flow_end = lambda self, flow: None  # type: ignore[method-assign]
    if stage == "flows":
        pipeline.default_analyzers = lambda ctx: []  # type: ignore[assignment]
    if stage == "others":
        pipeline.default_analyzers = lambda ctx: [  # type: ignore[assignment]
            a for a in every(ctx) if a.name not in DRONE_LINKS
        ]
    start = time.perf_counter()  # after the imports: the stage's own time
    if stage == "read":
        for _ in FileSource(path).batches():
            pass
    else:
        pipeline.run_source(FileSource(path), lambda record: None)
    return time.perf_counter() - start


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in STAGES:
        print(f"usage: stages.py {{{','.join(STAGES)}}} FILE", file=sys.stderr)
        return 2
    print(f"{run(sys.argv[1], sys.argv[2]):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
