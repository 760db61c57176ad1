"""A real service for tests: uvicorn on a free loopback port over a fresh database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from dronewatch.api.app import create_app
from dronewatch.api.service import Service
from dronewatch.api.settings import Settings
from dronewatch.capture.files import FileSource
from dronewatch.core.pipeline import AnalysisConfig
from dronewatch.judge.evidence import EvidenceOptions
from dronewatch.transport.replay import replay
from tests.ports import free_port

DRONEWATCH = str(Path(sys.executable).parent / "dronewatch")


@dataclass
class LiveService:
    """A running service: its URL, an admin key and the in-process service object."""

    url: str
    admin_key: str
    service: Service

    def client(self, key: str | None = None) -> httpx.Client:
        """An HTTP client for the API, authenticated with `key` (admin when not given)."""
        headers = {"Authorization": f"Bearer {key or self.admin_key}"} if key != "" else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def key(self, role: str, name: str) -> str:
        """A new API key of `role`."""
        _, secret = self.service.store.create_key(name, role)  # type: ignore[arg-type]
        return secret

    def replay(self, capture: Path, *, ldm: bool | None = True) -> None:
        """Feed a capture into the service, in-process, as `serve --replay` does."""
        config = AnalysisConfig(
            classifier=self.service.classifier,
            resolver=self.service.resolver,
            evidence=EvidenceOptions(),
        )

        def send(batch: str, records: list[dict[str, Any]]) -> None:
            self.service.ingest(batch, "test-replay", records, ldm)

        replay(FileSource(str(capture)), send, config)


def run_service(settings: Settings) -> Iterator[LiveService]:
    """Start uvicorn in a thread; stop it when the generator is closed."""
    service = Service.open(settings)
    _, admin = service.store.create_key("test-admin", "admin")
    app = create_app(settings, service)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield LiveService(f"http://127.0.0.1:{settings.port}", admin, service)
    finally:
        server.should_exit = True
        thread.join(10)
        service.close()


def sqlite_settings(tmp: Path, **kw: Any) -> Settings:
    return Settings(data_dir=tmp, port=free_port(), sse_poll_s=0.1, **kw)


def spawn_service(
    data: Path, port: int, *extra: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """`dronewatch serve` as a process on `port`, ready; and the admin key it printed ("" when the
    database already had keys)."""
    proc = subprocess.Popen(
        [DRONEWATCH, "serve", "--data-dir", str(data), "--port", str(port), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stderr is not None
    key, lines = "", []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if line.strip().startswith("dw_"):
            key = line.strip()
        if "serving on" in line or (not line and proc.poll() is not None):
            break
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, key
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError("serve did not become ready:\n" + "".join(lines))


def stop_service(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        proc.wait(15)
    if proc.stderr is not None:
        proc.stderr.close()


def spawn_agent(*args: str, workers: int = 1) -> subprocess.Popen[str]:
    """`dronewatch agent ARGS` as a process; returns once each of its `workers` has opened the
    capture (plus a second for dumpcap, which opens the interface right after it says so)."""
    proc = subprocess.Popen([DRONEWATCH, "agent", *args], stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 20
    ready = 0
    while time.monotonic() < deadline and ready < workers:
        line = proc.stderr.readline()
        ready += "capturing on" in line
        if not line and proc.poll() is not None:
            raise AssertionError(f"agent did not start: {proc.stderr.read()}")
    if ready < workers:
        proc.kill()
        raise AssertionError("agent did not start in time")
    # Fanout workers must all have joined before traffic, or the kernel re-spreads the flows.
    time.sleep(1.0)
    return proc


def stop_agent(proc: subprocess.Popen[str], timeout: float = 60) -> str:
    """SIGTERM the agent, wait for it; its remaining log."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    finally:
        assert proc.stderr is not None
        rest = proc.stderr.read()
        proc.stderr.close()
    return rest
