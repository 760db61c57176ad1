#!/usr/bin/env python3
"""Time one stage of dronewatch's analysis on a capture, in a fresh process: where the time goes.

    .venv/bin/python bench/stages.py STAGE FILE     # prints the seconds the stage took

Stages, each including the ones before it:
  read      walk the pcap records a batch at a time (no decoding)
  flows     + read the headers and assemble flows (the bulk path's C walk), with no analyzer
  inspect   + every analyzer on each flow's first packets, but no flow followed to its end
  analyzers + following flows to their end (drone links, DNS, MQTT...), still without
            classification, GeoIP or policy
  (the whole `dronewatch analyze` is timed by bench/run.py itself)
"""

from __future__ import annotations

import sys
import time

STAGES = ("read", "flows", "inspect", "analyzers")


def run(stage: str, path: str) -> float:
    import dronewatch.analyzers
    import dronewatch.pipeline as pipeline
    from dronewatch.capture.files import FileSource
    from dronewatch.flow import Flow

    dronewatch.analyzers.default_analyzers(
        pipeline.Context(emit=print, dns=pipeline.DnsNameCache())
    )
    if stage == "flows":
        pipeline.default_analyzers = lambda ctx: []  # type: ignore[assignment]
    if stage == "inspect":
        Flow.follow = lambda self, analyzer, counter=None: None  # type: ignore[method-assign]
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
