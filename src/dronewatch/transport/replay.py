"""Feed a capture through the analysis pipeline into the alert service, in batches.

Records go to the service in-process (`dronewatch serve --replay`) or over HTTP
(`dronewatch replay --api URL`). A batch's id is the hash of its content, so a batch re-sent after
a network failure, or a capture replayed twice, changes nothing. With `realtime`, packets are
released at the pace they were captured (times `speed`), so a dashboard sees alerts appear as
they would have live.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from dronewatch.capture.base import RawPacket, Source, SourceStats
from dronewatch.core.hooks import Record
from dronewatch.core.pipeline import AnalysisConfig, ProgressFn, RunResult, run_source
from dronewatch.exceptions import DronewatchError
from dronewatch.judge.alert import JUDGEMENT_LOGS

logger = logging.getLogger(__name__)

Send = Callable[[str, list[dict[str, Any]]], None]
"""Deliver one batch: (batch id, records)."""

BATCH_SIZE = 500
RETRY_AFTER_MAX_S = 60
"""The longest wait a service's Retry-After makes a sender take before it tries again."""


class ReplayError(DronewatchError):
    """The service refused a batch or could not be reached. `final`: the service refused it and
    would refuse it again (a 4xx answer other than 408 and 429): retrying cannot help."""

    def __init__(self, msg: str, *, final: bool = False) -> None:
        super().__init__(msg)
        self.final = final


def record_dict(record: Record) -> dict[str, Any]:
    """A record as the ingest API takes it: its fields plus its `log` name."""
    return {"log": record.log, **record.to_dict()}


def batch_id(records: list[dict[str, Any]]) -> str:
    """The id of a batch: a hash of its content (so a re-sent batch has the same id)."""
    body = json.dumps(records, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:32]


class Batcher:
    """Collects records and sends them in batches of `size`."""

    def __init__(self, send: Send, size: int = BATCH_SIZE) -> None:
        self.send = send
        self.size = size
        self._records: list[dict[str, Any]] = []
        self.batches = 0
        self.records = 0

    def __call__(self, record: Record) -> None:
        if record.log in JUDGEMENT_LOGS:
            return  # the service judges for itself
        self._records.append(record_dict(record))
        if len(self._records) >= self.size:
            self.flush()

    def flush(self) -> None:
        if not self._records:
            return
        records, self._records = self._records, []
        self.send(batch_id(records), records)
        self.batches += 1
        self.records += len(records)


class PacedSource:
    """A source whose packets come out at the pace they were captured, times `speed`."""

    def __init__(
        self, inner: Source, speed: float = 1.0, flush: Callable[[], None] | None = None
    ) -> None:
        """`flush` is called while waiting, so records of finished flows go out at once."""
        self.inner = inner
        self.speed = speed
        self.flush = flush
        self.stats: SourceStats = inner.stats

    def progress(self) -> tuple[int, int | None]:
        return self.inner.progress()

    def packets(self) -> Iterator[RawPacket]:
        start_wall: float | None = None
        start_ts = 0.0
        for raw in self.inner.packets():
            if start_wall is None:
                start_wall, start_ts = time.monotonic(), raw.ts
            due = start_wall + (raw.ts - start_ts) / self.speed
            wait = due - time.monotonic()
            if wait > 0.05 and self.flush is not None:
                self.flush()
                wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            yield raw


def replay(
    source: Source,
    send: Send,
    config: AnalysisConfig,
    *,
    realtime: bool = False,
    speed: float = 1.0,
    batch_size: int = BATCH_SIZE,
    progress: ProgressFn | None = None,
) -> RunResult:
    """Analyze `source` and deliver every record through `send`; returns the run's result."""
    batcher = Batcher(send, batch_size)
    src: Source = PacedSource(source, speed, batcher.flush) if realtime else source
    try:
        result = run_source(src, batcher, config, progress=progress)
    finally:
        batcher.flush()
    return result


class HttpSender:
    """Posts batches to a service's /api/v1/ingest, retrying what can be retried."""

    def __init__(
        self,
        api: str,
        key: str,
        *,
        agent: str = "replay",
        discovered_ldm: bool | None = None,
        retries: int = 5,
        timeout_s: float = 30.0,
    ) -> None:
        self.url = api.rstrip("/") + "/api/v1/ingest"
        self.agent = agent
        self.discovered_ldm = discovered_ldm
        self.retries = retries
        self.client = httpx.Client(timeout=timeout_s, headers={"Authorization": f"Bearer {key}"})

    def __call__(self, batch: str, records: list[dict[str, Any]]) -> None:
        body: dict[str, Any] = {"batch_id": batch, "agent": self.agent, "records": records}
        if self.discovered_ldm is not None:
            body["discovered_ldm"] = self.discovered_ldm
        delay = 0.5
        for attempt in range(self.retries + 1):
            wait = delay
            try:
                resp = self.client.post(self.url, json=body)
            except httpx.HTTPError as exc:
                problem = f"cannot reach {self.url}: {exc}"
            else:
                if resp.status_code < 300:
                    return
                problem = f"{self.url} answered {resp.status_code}: {_detail(resp)}"
                if resp.status_code < 500 and resp.status_code not in (408, 429):
                    raise ReplayError(problem, final=True)
                wait = max(delay, retry_after(resp))  # a busy service says when to come back
            if attempt == self.retries:
                raise ReplayError(problem)
            logger.warning("%s; retrying in %.1fs", problem, wait)
            time.sleep(wait)
            delay = min(delay * 2, 10.0)

    def close(self) -> None:
        self.client.close()


def retry_after(resp: httpx.Response) -> float:
    """The seconds a Retry-After header of an answer asks for (up to RETRY_AFTER_MAX_S; 0 when
    there is none, or it is a date)."""
    value = resp.headers.get("retry-after", "").strip()
    return float(min(int(value), RETRY_AFTER_MAX_S)) if value.isascii() and value.isdigit() else 0.0


def _detail(resp: httpx.Response) -> str:
    try:
        detail = resp.json().get("detail")
    except ValueError:
        return resp.text[:200]
    return json.dumps(detail) if not isinstance(detail, str) else detail
