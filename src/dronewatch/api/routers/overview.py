"""/api/v1/overview: what the web page shows at a glance, one card per device and the timeline
of bytes leaving them per category, with the LDM-on periods."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from dronewatch.api.auth import Reader
from dronewatch.api.schemas import NOT_FOUND, DeviceOut, Epoch, VerdictOut
from dronewatch.api.store import AlertFilter, NotFound, Store
from dronewatch.api.verdict import device_verdict
from dronewatch.judge.alert import NOTE_LEAK
from dronewatch.judge.policy import ldm_windows
from dronewatch.output.timeline import (
    EgressSpan,
    activity_periods,
    build_timeline,
    merge_windows,
)

router = APIRouter(prefix="/api/v1/overview", tags=["overview"])


class DeviceCard(BaseModel):
    """One device as the page's card shows it."""

    device: DeviceOut
    verdict: VerdictOut
    ldm_since: float | None = Field(
        description="when the current LDM state took effect (0: from the start)"
    )
    ldm_by: str | None = Field(description="who set the current LDM state")
    bytes_off: int = Field(description="bytes the device sent off itself in the window")
    bytes_ldm_on: int = Field(description="of those, bytes sent while LDM was on (alerts)")
    flows: int
    evicted_flows: int = Field(description="flows the flow table evicted before they ended")
    last_seen: float | None = Field(description="the last packet of the device's flows")
    alerts: dict[str, int] = Field(description="the device's alerts by status")
    caveats: list[str] = Field(
        description="what limits the verdict: drops, coverage gaps, damage, evictions"
    )


class Overview(BaseModel):
    """Every device's card."""

    start: float | None
    end: float | None
    devices: list[DeviceCard]


class Series(BaseModel):
    """The bytes of one category, bucket by bucket."""

    category: str
    bytes: list[int]


class TimelineOut(BaseModel):
    """Bytes sent off the devices per category, in buckets, with the LDM-on periods."""

    device_id: int | None
    start: float
    end: float
    step: float = Field(description="bucket width, seconds")
    times: list[float] = Field(description="the start of each bucket (epoch s)")
    series: list[Series] = Field(description="per category, the one that sent most first")
    ldm_on: list[list[float]] = Field(
        description="periods LDM was on (for any device when no device is given)"
    )
    activity: list[list[float]] = Field(
        description="stretches of time in which bytes left, gaps of over 5% of the range apart"
    )


def _store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def caveats(verdict: dict[str, Any], flows: int, evicted: int) -> list[str]:
    """Why a verdict may not be proof, in words."""
    cov = verdict["coverage"]
    out = []
    if cov["captures"] == 0:
        out.append("no capture covers this time")
    elif flows == 0:
        out.append("no traffic of this device was captured in this time")
    if cov["drops"] is None:
        out.append("drops not reported by the capture")
    elif cov["drops"]:
        out.append(f"{cov['drops']:,} packets dropped")
    if cov["gaps"]:
        missing = sum(b - a for a, b in cov["gaps"])
        out.append(f"{len(cov['gaps'])} coverage gaps ({missing:,.0f} s not captured)")
    if not cov["complete"]:
        out.append("a capture was damaged (cut short or corrupt)")
    if evicted:
        out.append(f"{evicted:,} flows evicted from a full flow table")
    return out


def _current_ldm(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The change that put the device in its current LDM state (a repeated setting of the same
    state does not move "since")."""
    if not history:
        return None
    first = history[-1]
    for change in reversed(history):
        if change["on"] != first["on"]:
            break
        first = change
    return first


@router.get("", response_model=Overview)
def overview(
    request: Request,
    _key: Reader,
    start: Annotated[Epoch, Query(description="epoch s")] = None,
    end: Annotated[Epoch, Query(description="epoch s")] = None,
) -> Any:
    """One card per device: its verdict and why, LDM state and since when (and who set it),
    bytes off the device, destinations, and last activity, for a time window (default: all)."""
    store = _store(request)
    counts = store.alert_status_counts()
    cards = []
    for device in store.list_devices():
        alerts: list[dict[str, Any]] = []
        ident = device["ip"] or device["mac"]
        if ident:
            flt = AlertFilter(device=ident, start=start, end=end)
            alerts = store.list_alerts(flt, since=None, cursor=None, limit=10000)
        verdict = device_verdict(store, device, alerts, start, end)
        activity: dict[str, Any] = (
            store.device_activity(device["ip"], start, end)
            if device["ip"]
            else {"flows": 0, "last_seen": None, "evicted": 0}
        )
        last = _current_ldm(device["ldm_history"])
        cards.append(
            {
                "device": device,
                "verdict": verdict,
                "ldm_since": last["at"] if last else None,
                "ldm_by": last["by"] if last else None,
                "bytes_off": sum(d["bytes_out"] for d in verdict["destinations"]),
                "bytes_ldm_on": sum(
                    int(a.get("bytes_out") or 0) for a in alerts if a.get("note") == NOTE_LEAK
                ),
                "flows": activity["flows"],
                "evicted_flows": activity["evicted"],
                "last_seen": activity["last_seen"],
                "alerts": counts.get(device["ip"] or "", {}),
                "caveats": caveats(verdict, activity["flows"], activity["evicted"]),
            }
        )
    return {"start": start, "end": end, "devices": cards}


@router.get("/timeline", response_model=TimelineOut, responses=NOT_FOUND)
def timeline(
    request: Request,
    _key: Reader,
    device: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="device id")] = None,
    start: Annotated[Epoch, Query(description="epoch s (default: first flow)")] = None,
    end: Annotated[Epoch, Query(description="epoch s (default: last flow)")] = None,
    buckets: Annotated[int, Query(ge=10, le=1000)] = 120,
) -> Any:
    """Bytes each device (or one) sent off itself per category over time, each flow's bytes
    spread over its duration, with the periods its local-data mode was on."""
    store = _store(request)
    if device is not None:
        try:
            devices = [store.get_device(device)]
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from None
        ips: list[str] | None = [d["ip"] for d in devices if d["ip"]]
    else:
        devices = store.list_devices()
        ips = None
    if start is None or end is None:
        span = store.flow_span(ips) if ips != [] else None
        lo, hi = span if span is not None else (0.0, 0.0)
        start = lo if start is None else start
        end = hi if end is None else end
    if end < start:
        raise HTTPException(400, "end is before start")
    spans = [] if ips == [] else [EgressSpan(*row) for row in store.egress_spans(ips, start, end)]
    line = build_timeline(spans, start, end, buckets).to_dict()
    windows = [
        w for d in devices for w in ldm_windows([(e["at"], e["on"]) for e in d["ldm_history"]])
    ]
    return {
        "device_id": device,
        **line,
        "ldm_on": merge_windows(windows, line["start"], line["end"]),
        "activity": activity_periods(spans, max(300.0, (end - start) / 20)),
    }
