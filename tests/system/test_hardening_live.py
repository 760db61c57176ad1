"""A real service on loopback (uvicorn) against uploads it must refuse unread, and the page in a
real headless Chromium under the service's Content-Security-Policy."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveService, run_service, sqlite_settings
from tests.pcaps import PCAPS

HUGE = 300 * 1024 * 1024


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveService]:
    yield from run_service(sqlite_settings(tmp_path, max_ingest_body_bytes=1 << 20))


def _exchange(live: LiveService, request: bytes) -> bytes:
    """Send the start of a request, then read until the server closes the connection (a server
    that waited for the rest would leave this waiting until the socket times out)."""
    port = int(live.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_unauthenticated_upload_is_refused_after_its_headers(live: LiveService) -> None:
    """A 300 MB upload without a key gets 401 after its headers, the connection closed."""
    head = (
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Content-Length: " + str(HUGE).encode() + b"\r\n\r\n"
    )
    data = _exchange(live, head)
    assert data.startswith(b"HTTP/1.1 401 "), data[:200]
    assert b"connection: close" in data.lower()


def test_declared_oversize_upload_is_413_after_its_headers(live: LiveService) -> None:
    """An upload declared over the limit gets 413 after its headers, the connection closed."""
    key = live.key("agent", "big-sender").encode()
    head = (
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key + b"\r\n"
        b"Content-Length: " + str(HUGE).encode() + b"\r\n\r\n"
    )
    data = _exchange(live, head)
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    assert b"connection: close" in data.lower()


def test_chunked_oversize_upload_is_cut_at_the_limit(live: LiveService) -> None:
    """A chunked upload passing the limit gets 413 and the connection closed before its end."""
    key = live.key("agent", "chunk-sender").encode()
    head = (
        b"POST /api/v1/ingest HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + key + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    piece = b" " * 65536
    chunk = b"%x\r\n" % len(piece) + piece + b"\r\n"
    data = _exchange(live, head + b"1\r\n{\r\n" + chunk * 17)  # 1 MiB + 64 KiB, no last chunk
    assert data.startswith(b"HTTP/1.1 413 "), data[:200]
    assert b"connection: close" in data.lower()


def test_page_runs_under_its_csp(live: LiveService, browser: Any) -> None:
    """In Chromium, under the service's CSP, the page signs in and opens an alert, cleanly."""
    live.replay(PCAPS / "scenarios" / "dji_fly_ldm_on_violation.pcap", ldm=True)
    page = browser.new_page()
    violations: list[str] = []
    page.on(
        "console",
        lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
    )
    page.add_init_script(
        "window.__csp = []; document.addEventListener('securitypolicyviolation',"
        " e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
    )
    resp = page.goto(live.url + "/")
    assert resp is not None and "content-security-policy" in resp.headers
    page.fill("#key", live.admin_key)
    page.click("#login-form button[type=submit]")
    # Locators, not wait_for_function: the CSP forbids the eval that a string predicate needs.
    with page.expect_response(lambda r: "/evidence" in r.url) as evidence:
        page.locator("#alerts tbody tr").first.click()
    assert evidence.value.status == 200
    assert page.evaluate("window.__csp") == [] and violations == []
