"""Ingest apart from reads: a full ingest queue answers 503 with Retry-After at once, its body
unread, while reads still answer; a request without a valid key never takes a slot; the writer
process applies batches as the service does and is replaced when it dies; agents send a 503'd
batch again, after the wait the service asked for."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from dronewatch.api.app import create_app
from dronewatch.api.ingest_queue import RETRY_AFTER_MAX_S, IngestQueue, in_memory
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.transport.replay import HttpSender, ReplayError
from tests.service_fixtures import records_of

PHONE = "10.77.0.2"
SCENARIO = "dji_fly_ldm_on_violation.pcap"
WAIT_S = 60.0
"""A bound on waiting for the other side of a test (never reached when the code works)."""


class Served:
    """An app over a fresh SQLite database, with one key per role and a device in LDM."""

    def __init__(self, tmp_path: Path, **settings: Any) -> None:
        self.settings = Settings(data_dir=tmp_path, **settings)
        self.service = Service.open(self.settings)
        self.app: FastAPI = create_app(self.settings, self.service)
        self.queue: IngestQueue = self.app.state.ingest_queue
        self.keys = {
            role: self.service.store.create_key(f"test-{role}", role)[1]  # type: ignore[arg-type]
            for role in ("reader", "agent", "admin")
        }
        device = self.service.store.create_device({"ip": PHONE}, by="test")
        self.service.store.set_ldm(device["id"], True, 0.0, by="test")

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def close(self) -> None:
        self.queue.close()
        self.service.close()


def batch(batch_id: str = "b1") -> dict[str, Any]:
    return {"batch_id": batch_id, "agent": "test", "records": list(records_of(SCENARIO))}


@pytest.fixture
def thread_writer(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path, ingest_queue=1, ingest_writer="thread")
    yield served
    served.close()


def test_full_queue_answers_503_unread_while_reads_answer(thread_writer: Served) -> None:
    """With the one slot held by a batch the writer is still applying, the next batch gets 503
    with Retry-After at once (its body, not even JSON, is not read: no 422), a poll of the
    alerts answers 200 meanwhile, and once the first batch is written a batch is taken again."""
    served = thread_writer
    writing, finish = threading.Event(), threading.Event()
    apply = served.service.ingestor.ingest

    def held(*args: Any, **kwargs: Any) -> Any:
        writing.set()
        finish.wait(WAIT_S)
        return apply(*args, **kwargs)

    served.service.ingestor.ingest = held  # type: ignore[method-assign]

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response, bool]:
        transport = httpx.ASGITransport(app=served.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = asyncio.create_task(
                client.post("/api/v1/ingest", json=batch(), headers=served.headers("agent"))
            )
            assert await asyncio.to_thread(writing.wait, WAIT_S)
            refused = await client.post(
                "/api/v1/ingest",
                content=b"not json at all",
                headers={**served.headers("agent"), "Content-Type": "application/json"},
            )
            poll = await client.get("/api/v1/alerts?since=0", headers=served.headers("reader"))
            pending = not first.done()
            finish.set()
            return await first, refused, poll, pending

    first, refused, poll, pending = asyncio.run(main())
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"].isdigit()
    assert 1 <= int(refused.headers["retry-after"]) <= RETRY_AFTER_MAX_S
    assert "busy" in refused.json()["detail"]
    assert poll.status_code == 200 and pending
    assert first.status_code == 200 and first.json()["alerts_changed"] > 0
    assert served.queue.refused == 1 and served.queue.admitted == 0
    with TestClient(served.app) as client:
        again = client.post("/api/v1/ingest", json=batch("b2"), headers=served.headers("agent"))
    assert again.status_code == 200, again.text


def test_request_without_a_valid_key_never_takes_a_slot(thread_writer: Served) -> None:
    """With every slot taken, a batch without a key still gets 401 and one with a reader key
    403, not 503: the key is checked first, and neither holds a slot."""
    served = thread_writer
    assert served.queue.admit()
    with TestClient(served.app) as client:
        anonymous = client.post("/api/v1/ingest", json=batch())
        reader = client.post("/api/v1/ingest", json=batch(), headers=served.headers("reader"))
        busy = client.post("/api/v1/ingest", json=batch(), headers=served.headers("agent"))
    assert (anonymous.status_code, reader.status_code, busy.status_code) == (401, 403, 503)
    assert served.queue.admitted == 1 and served.queue.refused == 1


def test_retry_after_follows_the_time_the_batches_in_hand_take(thread_writer: Served) -> None:
    """Retry-After is at least 1 s, about the time the writer takes for the batches in hand,
    and at most RETRY_AFTER_MAX_S."""
    queue = thread_writer.queue
    assert queue.retry_after() == 1
    queue._took(2.5)
    assert queue.retry_after() == 3  # one slot: 2.5 s
    queue._took(10_000.0)
    assert queue.retry_after() == RETRY_AFTER_MAX_S


def test_database_in_memory_gets_a_writer_thread(tmp_path: Path) -> None:
    """A SQLite database in memory cannot be shared with a process: its writer is a thread."""
    assert in_memory("sqlite://") and in_memory("sqlite:///:memory:")
    assert not in_memory(f"sqlite:///{tmp_path / 'x.db'}")
    assert not in_memory("postgresql+psycopg://u:p@db/dw")
    served = Served(tmp_path, db="sqlite:///:memory:")
    try:
        assert not served.queue.process
    finally:
        served.close()


@pytest.fixture
def process_writer(tmp_path: Path) -> Iterator[Served]:
    served = Served(tmp_path / "process")
    yield served
    served.close()


def test_writer_process_applies_batches_as_the_service_does(
    process_writer: Served, tmp_path: Path
) -> None:
    """The writer process (the default) stores what a writer thread stores, the service's
    process counts the batch and tells its listeners of the alerts, and a record its schema
    refuses still gets 422 naming it."""
    served = process_writer
    assert served.queue.process
    told: list[dict[str, Any]] = []
    served.service.listeners.append(told.extend)
    bad = batch("bad")
    bad["records"][0] = {**bad["records"][0], "ts": "yesterday"}
    with TestClient(served.app) as client:
        taken = client.post("/api/v1/ingest", json=batch(), headers=served.headers("agent"))
        refused = client.post("/api/v1/ingest", json=bad, headers=served.headers("agent"))
        alerts = client.get("/api/v1/alerts?limit=100", headers=served.headers("reader")).json()
    assert taken.status_code == 200, taken.text
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"][:3] == ["body", "records", 0]
    assert sorted(a["id"] for a in told) == sorted(a["id"] for a in alerts["items"])
    accepted = served.service.metrics.registry.get_sample_value(
        "dronewatch_ingest_batches_total", {"result": "accepted"}
    )
    assert accepted == 1.0

    thread = Served(tmp_path / "thread", ingest_writer="thread")
    try:
        with TestClient(thread.app) as client:
            resp = client.post("/api/v1/ingest", json=batch(), headers=thread.headers("agent"))
            same = client.get("/api/v1/alerts?limit=100", headers=thread.headers("reader"))
    finally:
        thread.close()
    assert resp.json() == taken.json()
    keep = ("id", "note", "bytes_out", "flows", "dest_name", "severity")
    assert [{k: a.get(k) for k in keep} for a in same.json()["items"]] == [
        {k: a.get(k) for k in keep} for a in alerts["items"]
    ]


def test_a_dead_writer_process_is_replaced(process_writer: Served) -> None:
    """When the writer process dies, the batch in its way gets 503 with Retry-After (sent
    again, nothing lost) and the next batch is written by a new writer process."""
    served = process_writer
    with TestClient(served.app) as client:
        first = client.post("/api/v1/ingest", json=batch("b1"), headers=served.headers("agent"))
        pool = served.queue._executor
        assert pool is not None
        pid = pool.submit(os.getpid).result(WAIT_S)
        os.kill(pid, signal.SIGKILL)
        answers = []
        for n in range(2, 4):
            resp = client.post(
                "/api/v1/ingest", json=batch(f"b{n}"), headers=served.headers("agent")
            )
            answers.append((resp.status_code, resp.headers.get("retry-after")))
        again = client.post("/api/v1/ingest", json=batch("b2"), headers=served.headers("agent"))
    assert first.status_code == 200
    assert answers[0][0] == 503 and (answers[0][1] or "").isdigit()
    assert answers[1][0] == 200
    assert again.status_code == 200 and again.json()["duplicate"] is False
    assert served.queue._executor is not pool


# --- the senders' side: a 503 is sent again, after the wait asked for ----------------------


def test_sender_waits_retry_after_and_delivers(monkeypatch: pytest.MonkeyPatch) -> None:
    """HttpSender (replays, agents) sends a batch answered 503 again, waiting at least the
    Retry-After the service gave, and returns once it is taken."""
    answers = iter([503, 503, 200])
    seen: list[str] = []
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read().decode())
        code = next(answers)
        return httpx.Response(code, headers={"Retry-After": "3"} if code == 503 else {})

    monkeypatch.setattr("dronewatch.transport.replay.time.sleep", waits.append)
    sender = HttpSender("http://service", "key")
    sender.client = httpx.Client(transport=httpx.MockTransport(handler))
    sender("b1", [{"log": "flows"}])
    assert len(seen) == 3 and len(set(seen)) == 1
    assert waits == [3.0, 3.0]


def test_sender_keeps_a_batch_the_service_stays_busy_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch still answered 503 after every retry raises a ReplayError that is not final:
    the agent's shipper keeps it in its spool and sends it again later."""
    monkeypatch.setattr("dronewatch.transport.replay.time.sleep", lambda _s: None)
    sender = HttpSender("http://service", "key", retries=2)
    sender.client = httpx.Client(
        transport=httpx.MockTransport(lambda _r: httpx.Response(503, headers={"Retry-After": "1"}))
    )
    with pytest.raises(ReplayError) as raised:
        sender("b1", [{"log": "flows"}])
    assert raised.value.final is False
