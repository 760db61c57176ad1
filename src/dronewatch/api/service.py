"""The service's state: store, rules and GeoIP, ingest, metrics, and who hears of new alerts."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.engine import Engine

from dronewatch.api.db import make_engine
from dronewatch.api.ingest import Ingestor, IngestResult
from dronewatch.api.metrics import Metrics
from dronewatch.api.migrations import migrate
from dronewatch.api.records import validate_records
from dronewatch.api.settings import Settings
from dronewatch.api.sinks import SinkConfig, parse_sink_configs
from dronewatch.api.store import Store
from dronewatch.geoip.base import Resolver
from dronewatch.geoip.local import LocalNets
from dronewatch.geoip.maxmind import MaxMindResolver
from dronewatch.judge.classify import Classifier

logger = logging.getLogger(__name__)

AlertListener = Callable[[list[dict[str, Any]]], None]


@dataclass(slots=True)
class Service:
    """Everything a request or a replay needs."""

    settings: Settings
    store: Store
    classifier: Classifier
    resolver: Resolver
    ingestor: Ingestor
    metrics: Metrics
    sinks: list[SinkConfig] = field(default_factory=list)
    listeners: list[AlertListener] = field(default_factory=list)

    @classmethod
    def open(cls, settings: Settings) -> Service:
        """Open (and migrate) the database, load the rule packs and GeoIP data.

        Raises DronewatchError subclasses (StorageError, RulePackError, GeoIPError) with a
        message that names what is wrong.
        """
        sinks = parse_sink_configs(settings.sinks)
        engine = make_engine(settings.database_url)
        migrate(engine)
        store = _store(settings, engine)
        classifier = Classifier.load(settings.rules)
        local = LocalNets(settings.local_subnets)
        resolver: Resolver = MaxMindResolver.open(settings.geoip_dir, local=local)
        return cls(
            settings,
            store,
            classifier,
            resolver,
            Ingestor(store, classifier),
            Metrics(store),
            sinks,
        )

    def ingest(
        self,
        batch_id: str,
        agent: str,
        records: Sequence[dict[str, Any]],
        discovered_ldm: bool | None = None,
    ) -> IngestResult:
        """Apply a batch, count it, and tell the listeners (sinks) of the alerts it changed."""
        result, drops = apply_batch(self.ingestor, batch_id, agent, records, discovered_ldm)
        self.account(result, drops)
        return result

    def account(self, result: IngestResult, drops: int) -> None:
        """Count a batch applied (here or by a writer process) and tell the listeners (sinks)
        of the alerts it changed."""
        self.metrics.observe(result, drops)
        self._tell(result.alerts)

    def rejudge(self, device: dict[str, Any]) -> None:
        """Judge a device's stored observations again (its policy or LDM history changed)."""
        alerts = self.ingestor.rejudge_device(device)
        self._tell(alerts)

    def _tell(self, alerts: list[dict[str, Any]]) -> None:
        if alerts:
            for listener in self.listeners:
                try:
                    listener(alerts)
                except Exception:  # a sink must never break ingest
                    logger.exception("alert listener failed")

    def close(self) -> None:
        self.store.engine.dispose()


def _store(settings: Settings, engine: Engine) -> Store:
    return Store(
        engine,
        evidence_max_frames=settings.evidence_max_frames,
        agent_silence_s=settings.agent_silence_s,
    )


def open_ingestor(settings: Settings, config: dict[str, Any]) -> Ingestor:
    """An Ingestor over a connection of its own to the service's (already migrated) database,
    its store configured as the service's (`config`, from `store_config`): what a writer
    process applies batches with."""
    store = _store(settings, make_engine(settings.database_url))
    vars(store).update(config)
    return Ingestor(store, Classifier.load(settings.rules))


def store_config(store: Store) -> dict[str, Any]:
    """What configures a store (its limits), without its engine: for `open_ingestor`."""
    return {k: v for k, v in vars(store).items() if k != "engine"}


def apply_batch(
    ingestor: Ingestor,
    batch_id: str,
    agent: str,
    records: Sequence[dict[str, Any]],
    discovered_ldm: bool | None = None,
) -> tuple[IngestResult, int]:
    """Check and apply a batch; returns what it did and the capture drops it reported.

    Raises RecordError (nothing stored) when a record's schema refuses it.
    """
    records = validate_records(records)  # RecordError: the batch is refused whole
    result = ingestor.ingest(batch_id, agent, records, discovered_ldm)
    drops = sum(int(r.get("drops") or 0) for r in records if r.get("log") == "capture")
    return result, drops
