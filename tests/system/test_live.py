"""The service as users run it: real uvicorn on loopback, the event stream, CORS, the CLI."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dronewatch.api.settings import Settings, SettingsError, load_settings
from tests.live import LiveService, free_port, run_service, sqlite_settings
from tests.pcaps import PCAPS

SCENARIOS = PCAPS / "scenarios"
DRONEWATCH = Path(sys.executable).parent / "dronewatch"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveService]:
    yield from run_service(sqlite_settings(tmp_path, cors_origins=["https://soc.example"]))


def test_stream_delivers_new_alerts(live: LiveService) -> None:
    """An SSE client connected before ingest receives each new alert as an event with its seq."""
    with live.client() as c:
        c.post("/api/v1/devices", json={"ip": "10.77.0.2", "ldm": True}).raise_for_status()
        dev = c.get("/api/v1/devices").json()[0]
        c.put(f"/api/v1/devices/{dev['id']}/ldm", json={"on": True, "at": 0}).raise_for_status()
    events: list[dict[str, object]] = []
    connected = threading.Event()

    def listen() -> None:
        with live.client() as c, c.stream("GET", "/api/v1/alerts/stream", timeout=20) as resp:
            assert resp.headers["content-type"].startswith("text/event-stream")
            connected.set()
            for line in resp.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
                    return

    thread = threading.Thread(target=listen, daemon=True)
    thread.start()
    assert connected.wait(10)
    live.replay(SCENARIOS / "dji_fly_ldm_on_violation.pcap", ldm=None)
    thread.join(15)
    assert events and events[0]["dest_name"] == "mydjiflight.dji.com"
    assert isinstance(events[0]["seq"], int)


def test_stream_resumes_from_last_event_id(live: LiveService) -> None:
    """Reconnecting with Last-Event-ID replays what changed after that id."""
    live.replay(SCENARIOS / "dji_fly_ldm_off.pcap", ldm=True)
    with live.client() as c:
        total = len(c.get("/api/v1/alerts", params={"limit": 100}).json()["items"])
        got: list[int] = []
        headers = {"Last-Event-ID": "2"}
        with c.stream("GET", "/api/v1/alerts/stream", headers=headers, timeout=20) as resp:
            for line in resp.iter_lines():
                if line.startswith("id: "):
                    got.append(int(line[4:]))
                if len(got) == total - 2:
                    break
    assert got == list(range(3, total + 1))


def test_cors_allows_configured_origin_only(live: LiveService) -> None:
    """A configured origin gets CORS headers on a preflight; another origin does not."""
    with httpx.Client(base_url=live.url) as c:
        ok = c.options(
            "/api/v1/alerts",
            headers={"Origin": "https://soc.example", "Access-Control-Request-Method": "GET"},
        )
        bad = c.options(
            "/api/v1/alerts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"},
        )
    assert ok.headers.get("access-control-allow-origin") == "https://soc.example"
    assert "access-control-allow-origin" not in bad.headers


def test_readiness_over_http(live: LiveService) -> None:
    """A real client reaches /readyz and the OpenAPI schema; the CDN-loading docs are off."""
    with httpx.Client(base_url=live.url) as c:
        assert c.get("/readyz").json()["status"] == "ok"
        assert c.get("/openapi.json").status_code == 200
        assert c.get("/docs").status_code == 404


def test_settings_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flags beat DRONEWATCH_* variables, which beat the config file."""
    cfg = tmp_path / "dw.yaml"
    cfg.write_text("port: 9001\nhost: 127.0.0.2\nopen_reads: true\n")
    monkeypatch.setenv("DRONEWATCH_PORT", "9002")
    s = load_settings({"host": None}, cfg)
    assert (s.port, s.host, s.open_reads) == (9002, "127.0.0.2", True)
    assert load_settings({"port": 9003}, cfg).port == 9003


@pytest.mark.parametrize(
    ("text", "env", "message"),
    [
        ("port: 70000\n", {}, "port (config file"),
        ("colour: blue\n", {}, "colour"),
        ("- a\n- b\n", {}, "expected a mapping"),
        ("db: mysql://x\n", {}, "sqlite:///PATH"),
        ("", {"DRONEWATCH_PORT": "abc"}, "$DRONEWATCH_PORT"),
    ],
)
def test_bad_settings_name_their_source(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    text: str,
    env: dict[str, str],
    message: str,
) -> None:
    """A bad setting stops start-up with the setting and where it came from."""
    cfg = tmp_path / "dw.yaml"
    cfg.write_text(text)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(SettingsError, match=message.replace("$", r"\$").replace("(", r"\(")):
        load_settings({}, cfg)


def test_default_database_is_sqlite_in_data_dir(tmp_path: Path) -> None:
    """Without --db the service uses SQLite inside the data directory."""
    assert Settings(data_dir=tmp_path).database_url == f"sqlite:///{tmp_path}/dronewatch.db"


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(DRONEWATCH), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_keys_command(tmp_path: Path) -> None:
    """`keys create` prints a working key once; `keys list` shows it without the secret."""
    created = _run(
        "keys", "create", "--role", "reader", "--name", "wall", "--data-dir", str(tmp_path)
    )
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("dw_") and "shown only this once" in created.stderr
    listed = _run("keys", "list", "--data-dir", str(tmp_path))
    assert "wall" in listed.stdout and "reader" in listed.stdout and secret not in listed.stdout
    dup = _run("keys", "create", "--role", "reader", "--name", "wall", "--data-dir", str(tmp_path))
    assert dup.returncode == 2 and "already exists" in dup.stderr
    assert _run("keys", "revoke", "wall", "--data-dir", str(tmp_path)).returncode == 0
    assert _run("keys", "revoke", "wall", "--data-dir", str(tmp_path)).returncode == 2


def test_serve_refuses_a_busy_port(tmp_path: Path) -> None:
    """`serve` on a port already in use exits 2 with a message, not a traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = _run("serve", "--data-dir", str(tmp_path), "--port", str(port))
    assert proc.returncode == 2
    assert "already in use" in proc.stderr and "Traceback" not in proc.stderr


def test_serve_with_replay_end_to_end(tmp_path: Path) -> None:
    """The README's main job: `serve --replay FILE --ldm on` gives alerts over the API."""
    port = free_port()
    proc = subprocess.Popen(
        [
            str(DRONEWATCH),
            "serve",
            "--data-dir",
            str(tmp_path),
            "--port",
            str(port),
            "--replay",
            str(SCENARIOS / "dji_fly_ldm_off.pcap"),
            "--ldm",
            "on",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        key = ""
        deadline = time.monotonic() + 30
        lines: list[str] = []
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if line.strip().startswith("dw_"):
                key = line.strip()
            if "replayed" in line:
                break
        assert key, "".join(lines)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {key}"}
        ) as c:
            alerts = c.get("/api/v1/alerts").json()["items"]
        assert len(alerts) == 6
        assert {a["device_ip"] for a in alerts} == {"10.77.0.2"}
    finally:
        proc.terminate()
        proc.wait(10)
        if proc.stderr is not None:
            proc.stderr.close()
