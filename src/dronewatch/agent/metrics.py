"""The agent's own Prometheus metrics, read from the running capture, pipeline, spool and shipper
at each scrape (`agent --metrics-port`)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dronewatch.exceptions import DronewatchError

if TYPE_CHECKING:
    from dronewatch.agent.runner import Agent


class AgentCollector:
    """Exposes one agent's counters; nothing is copied, so a scrape sees the current values."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self.agent
        stats = agent.source.stats
        yield CounterMetricFamily(
            "dronewatch_agent_packets", "Packets captured", value=stats.packets
        )
        yield CounterMetricFamily(
            "dronewatch_agent_bytes", "Bytes captured (as captured)", value=stats.bytes
        )
        drops = agent.source.drops_so_far()
        if drops is not None:
            yield CounterMetricFamily(
                "dronewatch_agent_drops", "Packets lost by the kernel or the pipeline", value=drops
            )
        pipe = agent.pipeline
        if pipe is not None:
            yield CounterMetricFamily(
                "dronewatch_agent_flows", "Flows started", value=pipe.engine.flows_total
            )
            yield GaugeMetricFamily(
                "dronewatch_agent_live_flows",
                "Flows in the flow table",
                value=len(pipe.engine.flows),
            )
        batches, size = agent.spool.pending()
        yield GaugeMetricFamily(
            "dronewatch_agent_spool_batches", "Batches waiting in the spool", value=batches
        )
        yield GaugeMetricFamily(
            "dronewatch_agent_spool_bytes", "Bytes waiting in the spool", value=size
        )
        shipper = agent.shipper
        if shipper is not None:
            yield CounterMetricFamily(
                "dronewatch_agent_batches_sent", "Batches the service took", value=shipper.sent
            )
            yield CounterMetricFamily(
                "dronewatch_agent_send_failures",
                "Failed attempts to deliver a batch",
                value=shipper.failures,
            )
            yield GaugeMetricFamily(
                "dronewatch_agent_service_reachable",
                "1 when the last delivery attempt succeeded",
                value=0 if shipper.last_error else 1,
            )


def serve_metrics(agent: Agent, host: str, port: int) -> Any:
    """Serve the agent's metrics at http://HOST:PORT/metrics; returns the server."""
    registry = CollectorRegistry()
    registry.register(AgentCollector(agent))
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise DronewatchError(f"metrics: cannot listen on {host}:{port}: {exc.strerror}") from None
    return server
