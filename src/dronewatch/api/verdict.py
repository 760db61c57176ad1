"""The verdict of one device over a time window, from stored alerts, egress and capture coverage,
decided by the same rule as `dronewatch analyze` (`dronewatch.judge.verdict.decide`)."""

from __future__ import annotations

from typing import Any

from dronewatch.api.store import Store
from dronewatch.judge.alert import NOTE_LEAK
from dronewatch.judge.policy import ldm_on_during, ldm_windows
from dronewatch.judge.verdict import Coverage, Sent, decide


def device_verdict(
    store: Store,
    device: dict[str, Any],
    alerts: list[dict[str, Any]],
    start: float | None,
    end: float | None,
) -> dict[str, Any]:
    """clean / violation / incomplete / not_applicable, with destinations and coverage."""
    windows = ldm_windows([(e["at"], e["on"]) for e in device["ldm_history"]])
    lo = start if start is not None else float("-inf")
    hi = end if end is not None else float("inf")
    ldm = ldm_on_during(windows, lo, hi)
    dests = store.egress_summary(store.device_hosts(device), start, end)
    coverage = store.coverage(start, end, device.get("mac"))
    verdict = decide(
        ldm,
        [
            Sent(
                str(a.get("note")),
                str(a.get("category")),
                str(a.get("dest_name") or a.get("dest_ip")),
                int(a.get("bytes_out", 0)),
            )
            for a in alerts
        ],
        [Sent(NOTE_LEAK, d["category"], d["destination"], d["bytes_out"]) for d in dests],
        Coverage(
            packets=coverage["packets"],
            drops=coverage["drops"],
            complete=coverage["complete"],
            captures=coverage["captures"],
            gaps=tuple((float(a), float(b)) for a, b in coverage["gaps"]),
            analyzer_errors=coverage["analyzer_errors"],
            lost_flows=coverage["lost_flows"],
            evicted_flows=coverage["evicted_flows"],
            gap_flows=coverage["gap_flows"],
            missed_bytes=coverage["missed_bytes"],
            stopped_flows=coverage["inspection_stopped"],
            bad_checksums=coverage["bad_checksums"],
            encrypted_frames=coverage["encrypted_frames"],
        ),
    )
    return {
        "device_id": device["id"],
        "device_ip": device["ip"],
        "start": start,
        "end": end,
        "ldm": ldm,
        "verdict": verdict.verdict,
        "msg": verdict.msg,
        "destinations": dests,
        "alerts": len(alerts),
        "coverage": coverage,
    }
