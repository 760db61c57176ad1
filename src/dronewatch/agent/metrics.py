"""The agent's own Prometheus metrics, read from the running capture, pipeline, spool and shipper
at each scrape (`agent --metrics-port`); and the state of the capture child of `serve -i`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dronewatch.agent.supervisor import CHILD_STATES
from dronewatch.exceptions import DronewatchError

if TYPE_CHECKING:
    from dronewatch.agent.runner import Agent
    from dronewatch.agent.supervisor import CaptureSupervisor


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


class SupervisorCollector:
    """Exposes the capture child of `serve -i`: its state, process id, restarts, last exit."""

    def __init__(self, supervisor: CaptureSupervisor) -> None:
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        sup = self.supervisor
        state = sup.state
        yield GaugeMetricFamily(
            "dronewatch_capture_child_up",
            "1 while the capture child process has its capture open and is not suspended",
            value=1 if state == "capturing" else 0,
        )
        family = GaugeMetricFamily(
            "dronewatch_capture_child_state",
            "State of the capture child process (1 for the current one)",
            labels=["state"],
        )
        for name in CHILD_STATES:
            family.add_metric([name], 1 if name == state else 0)
        yield family
        yield GaugeMetricFamily(
            "dronewatch_capture_child_pid",
            "Process id of the capture child (0 when none runs)",
            value=sup.pid or 0,
        )
        yield CounterMetricFamily(
            "dronewatch_capture_child_restarts",
            "Capture children started again after one ended unexpectedly",
            value=sup.restarts,
        )
        if sup.last_exit is not None:
            yield GaugeMetricFamily(
                "dronewatch_capture_child_last_exit_code",
                "Exit status of the last capture child that ended unexpectedly (negative: the "
                "signal that killed it)",
                value=sup.last_exit,
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
