"""`dronewatch diff A B`: what left the devices in one capture and not in the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dronewatch.core.hooks import Record
from dronewatch.judge.flowlog import FlowRecord


@dataclass(slots=True)
class Destination:
    """Traffic to one off-device destination in one category."""

    name: str
    category: str
    vendor: str | None = None
    bytes_out: int = 0
    bytes_in: int = 0
    flows: int = 0
    ips: set[str] = field(default_factory=set)
    country: str | None = None
    asn: int | None = None


class EgressCollector:
    """Keeps, per destination and category, what a capture sent off the local network."""

    def __init__(self) -> None:
        self.destinations: dict[tuple[str, str], Destination] = {}
        self.dns_lookups: set[str] = set()

    def add(self, record: Record) -> None:
        if isinstance(record, FlowRecord):
            if record.resp_scope != "public" or record.orig_pkts == 0:
                return
            name = record.server_name or record.resp_h
            category = record.category or "other"
            key = (name, category)
            dest = self.destinations.get(key)
            if dest is None:
                dest = Destination(
                    name=name,
                    category=category,
                    vendor=record.vendor,
                    country=record.resp_country,
                    asn=record.resp_asn,
                )
                self.destinations[key] = dest
            dest.bytes_out += record.orig_bytes
            dest.bytes_in += record.resp_bytes
            dest.flows += 1
            if len(dest.ips) < 16:
                dest.ips.add(record.resp_h)
        elif record.log == "alerts" and getattr(record, "note", "") == "ldm.vendor_dns_lookup":
            self.dns_lookups.add(str(getattr(record, "dest_name", "")))


@dataclass(frozen=True, slots=True)
class DiffRow:
    """One destination and category compared across the two captures."""

    name: str
    category: str
    vendor: str | None
    status: str
    """only_a, only_b or both."""
    bytes_out_a: int
    bytes_out_b: int
    flows_a: int
    flows_b: int
    country: str | None
    asn: int | None

    def to_dict(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__slots__}


def diff(a: EgressCollector, b: EgressCollector) -> list[DiffRow]:
    """Every destination/category in either capture, the ones in only one capture first."""
    rows = []
    for key in sorted(set(a.destinations) | set(b.destinations)):
        da, db = a.destinations.get(key), b.destinations.get(key)
        any_d = da or db
        assert any_d is not None
        status = "both" if da and db else ("only_a" if da else "only_b")
        rows.append(
            DiffRow(
                name=key[0],
                category=key[1],
                vendor=any_d.vendor,
                status=status,
                bytes_out_a=da.bytes_out if da else 0,
                bytes_out_b=db.bytes_out if db else 0,
                flows_a=da.flows if da else 0,
                flows_b=db.flows if db else 0,
                country=any_d.country,
                asn=any_d.asn,
            )
        )
    order = {"only_a": 0, "only_b": 1, "both": 2}
    return sorted(rows, key=lambda r: (order[r.status], r.category, r.name))
