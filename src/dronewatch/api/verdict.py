"""The verdict of one device over a time window, from stored flows, alerts and capture coverage."""

from __future__ import annotations

from typing import Any

from dronewatch.api.ingest import ldm_on_during
from dronewatch.api.store import Store
from dronewatch.judge.alert import NOTE_LEAK, NOTE_OTHER_APP


def device_verdict(
    store: Store,
    device: dict[str, Any],
    alerts: list[dict[str, Any]],
    start: float | None,
    end: float | None,
) -> dict[str, Any]:
    """clean / violation / incomplete / not_applicable, with destinations and coverage."""
    changes = [(e["at"], e["on"]) for e in device["ldm_history"]]
    lo = start if start is not None else float("-inf")
    hi = end if end is not None else float("inf")
    ldm = ldm_on_during(changes, lo, hi)
    dests = store.egress_summary(device["ip"], start, end) if device["ip"] else []
    coverage = store.coverage(start, end)
    open_alerts = [a for a in alerts if a.get("note") != NOTE_OTHER_APP]
    cover = f"{coverage['packets']:,} packets in {coverage['captures']} captures, " + (
        "drops not reported" if coverage["drops"] is None else f"{coverage['drops']:,} drops"
    )
    if coverage["gaps"]:
        missing = sum(b - a for a, b in coverage["gaps"])
        cover += f", {len(coverage['gaps'])} coverage gaps ({missing:,.0f} s not captured)"
    if not ldm:
        total = sum(d["bytes_out"] for d in dests)
        verdict = "not_applicable"
        msg = f"LDM off: {total:,} bytes to {len(dests)} destinations ({cover})"
    elif open_alerts:
        leak = [a for a in open_alerts if a.get("note") == NOTE_LEAK]
        sent = sum(int(a.get("bytes_out", 0)) for a in leak)
        cats = {a["category"] for a in open_alerts}
        verdict = "violation"
        n_dest = len({a.get("dest_name") or a.get("dest_ip") for a in leak})
        msg = f"LDM on: {sent:,} bytes to {n_dest} destinations in {len(cats)} categories ({cover})"
    elif (
        coverage["captures"] == 0
        or not coverage["complete"]
        or coverage["drops"]
        or coverage["gaps"]
    ):
        verdict = "incomplete"
        msg = f"LDM on: nothing seen leaving the device, but coverage is incomplete ({cover})"
    else:
        verdict = "clean"
        msg = f"LDM on: nothing left the device ({cover})"
    return {
        "device_id": device["id"],
        "device_ip": device["ip"],
        "start": start,
        "end": end,
        "ldm": ldm,
        "verdict": verdict,
        "msg": msg,
        "destinations": dests,
        "alerts": len(alerts),
        "coverage": coverage,
    }
