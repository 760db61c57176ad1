"""Prometheus metrics of the service: what was ingested, alerts by category, ingest lag, drops."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from dronewatch.api.ingest import IngestResult
from dronewatch.api.store import Store


class _AlertCollector(Collector):
    """Alerts by category and status, read from the database at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "dronewatch_alerts",
            "Alerts held, by category and status",
            labels=["category", "status"],
        )
        for (category, status), n in sorted(self.store.alert_counts().items()):
            family.add_metric([category, status], n)
        yield family


class Metrics:
    """The service's counters, in a registry of its own."""

    def __init__(self, store: Store) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.batches = Counter(
            "dronewatch_ingest_batches", "Ingest batches", ["result"], registry=r
        )
        self.records = Counter("dronewatch_ingest_records", "Records ingested", registry=r)
        self.packets = Counter("dronewatch_packets", "Packets of the flows ingested", registry=r)
        self.flows = Counter("dronewatch_flows", "New flows ingested", registry=r)
        self.alert_changes = Counter(
            "dronewatch_alert_changes",
            "Alerts created or updated by ingest",
            ["category"],
            registry=r,
        )
        self.drops = Counter("dronewatch_capture_drops", "Packets the captures dropped", registry=r)
        self.lag = Gauge(
            "dronewatch_ingest_lag_seconds",
            "Wall-clock time of the last ingest minus the network time of its newest record",
            registry=r,
        )
        r.register(_AlertCollector(store))

    def observe(self, result: IngestResult, drops: int = 0) -> None:
        """Count one ingested batch."""
        self.batches.labels("duplicate" if result.duplicate else "accepted").inc()
        if result.duplicate:
            return
        self.records.inc(result.records)
        self.packets.inc(result.packets)
        self.flows.inc(result.flows_new)
        self.drops.inc(drops)
        for alert in result.alerts:
            self.alert_changes.labels(str(alert.get("category", "other"))).inc()
        if result.latest_ts is not None:
            self.lag.set(max(0.0, time.time() - result.latest_ts))
