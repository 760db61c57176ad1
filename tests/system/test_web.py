"""The web page in a real headless Chromium (Debian's) against a real service on loopback."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from tests.live import LiveService
from tests.pcaps import PCAPS

SCENARIOS = PCAPS / "scenarios"


@pytest.fixture
def live(live_dji: LiveService) -> LiveService:
    return live_dji


@pytest.fixture
def page(browser: Any, live: LiveService) -> Iterator[Any]:
    # The string predicates of wait_for_function are evaluated with eval, which the service's CSP
    # forbids; tests/system/test_hardening_live.py checks the page with the CSP in force.
    context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    page = context.new_page()
    page.hosts = set()
    page.failed = []
    page.on("request", lambda r: page.hosts.add(urlparse(r.url).netloc))
    # The page's first, keyless call is refused on purpose (it learns whether reads are open);
    # every other request must succeed.
    page.on(
        "response",
        lambda r: (
            page.failed.append(f"{r.status} {r.url}")
            if r.status >= 400 and (r.status != 401 or "authorization" in r.request.headers)
            else None
        ),
    )
    yield page
    context.close()


def sign_in(page: Any, live: LiveService, key: str) -> None:
    page.goto(live.url + "/")
    page.fill("#key", key)
    page.click("#login-form button[type=submit]")


def rows(page: Any) -> list[str]:
    return page.locator("#alerts tbody tr").all_inner_texts()


def test_alerts_table_map_and_only_own_requests(page: Any, live: LiveService) -> None:
    """With an admin key the page lists the six alerts with categories, draws them on the map
    with a legend, and asks nothing of any host but the service."""
    sign_in(page, live, live.admin_key)
    page.wait_for_function("document.querySelectorAll('#alerts tbody tr').length === 6")
    text = "\n".join(rows(page))
    for dest, cat in (
        ("www.skypixel.com", "media_sync"),
        ("api.mapbox.com", "maps"),
        ("flysafe-api.dji.com", "geofence"),
        ("live.example-user-stream.net", "livestream"),
    ):
        assert dest in text and cat in text
    dots = page.locator("#dots circle")
    assert dots.count() == 6  # one per (country, category): all six are in the US
    assert {dots.nth(i).get_attribute("data-country") for i in range(6)} == {"US"}
    assert page.locator("#legend li").count() == 13
    assert page.locator("#map path.land").count() > 150
    assert page.hosts == {urlparse(live.url).netloc}
    assert page.failed == []  # no missing asset (favicon included), no refused call


def test_new_alert_appears_without_reload(page: Any, live: LiveService) -> None:
    """An alert raised while the page is open shows up within seconds, with no duplicate row."""
    sign_in(page, live, live.admin_key)
    page.wait_for_function("document.querySelectorAll('#alerts tbody tr').length === 6")
    live.replay(SCENARIOS / "dji_fly_ldm_on_violation.pcap", ldm=True)
    page.wait_for_function(
        "[...document.querySelectorAll('#alerts tbody tr')].some("
        "r => r.innerText.includes('mydjiflight.dji.com'))",
        timeout=10_000,
    )
    texts = rows(page)
    assert len(texts) == len(set(texts)) == 7


def test_ldm_toggle_changes_the_device(page: Any, live: LiveService) -> None:
    """Clicking a device's LDM toggle turns it off in the service and in the page."""
    sign_in(page, live, live.admin_key)
    toggle = page.locator("#devices li", has_text="10.77.0.2").locator("button.toggle")
    toggle.wait_for()
    assert toggle.get_attribute("aria-pressed") == "true"
    toggle.click()
    page.wait_for_function(
        "[...document.querySelectorAll('#devices li')].some(li => li.innerText.includes("
        "'10.77.0.2') && li.querySelector('button').getAttribute('aria-pressed') === 'false')"
    )
    with live.client() as c:
        dev = next(d for d in c.get("/api/v1/devices").json() if d["ip"] == "10.77.0.2")
    assert dev["ldm"] is False and dev["ldm_history"][-1]["by"] == "test-admin"


def test_reader_sees_alerts_but_cannot_toggle(page: Any, live: LiveService) -> None:
    """A reader key reads the alerts; its LDM toggle reports that the role may not do it."""
    sign_in(page, live, live.key("reader", "wall"))
    page.wait_for_function("document.querySelectorAll('#alerts tbody tr').length === 6")
    page.locator("#devices li", has_text="10.77.0.2").locator("button.toggle").click()
    page.wait_for_function("document.getElementById('devices-error').innerText.length > 0")
    assert "reader role may not" in page.inner_text("#devices-error")


def test_wrong_key_is_refused(page: Any, live: LiveService) -> None:
    """A wrong key brings the key prompt back with an error."""
    sign_in(page, live, "dw_wrong")
    page.wait_for_function("document.getElementById('login-error').innerText.length > 0")
    assert "refused" in page.inner_text("#login-error")
    assert page.is_hidden("#app")


def test_alert_detail_and_acknowledge(page: Any, live: LiveService) -> None:
    """Opening an alert shows its evidence; Acknowledge records the admin key as who did it."""
    sign_in(page, live, live.admin_key)
    page.locator("#alerts tbody tr", has_text="www.skypixel.com").click()
    assert "www.skypixel.com" in page.inner_text("#detail-fields")
    page.click("#ack")
    page.wait_for_function(
        "document.getElementById('detail-fields').innerText.includes('acknowledged by test-admin')"
    )


def _png_size_and_colours(png: bytes) -> tuple[int, int, int]:
    """Width, height and the number of distinct colours in the first rows of an RGB(A) PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, ctype = struct.unpack(">IIBB", png[16:26])
    data = b""
    pos = 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind = png[pos + 4 : pos + 8]
        if kind == b"IDAT":
            data += png[pos + 8 : pos + 8 + length]
        pos += 12 + length
    raw = zlib.decompress(data)
    bpp = 4 if ctype == 6 else 3
    stride = width * bpp + 1
    colours: set[bytes] = set()
    prev = bytearray(width * bpp)
    for y in range(min(height, 400)):
        line = bytearray(raw[y * stride + 1 : (y + 1) * stride])
        f = raw[y * stride]
        for i in range(len(line)):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pred) & 255
        colours.update(bytes(line[i : i + 3]) for i in range(0, len(line), bpp * 7))
        prev = line
    assert depth == 8
    return width, height, len(colours)


def test_screenshot(page: Any, live: LiveService, tmp_path: Path) -> None:
    """A full rendering at 1280x800 is a real picture (many colours), saved for a look."""
    sign_in(page, live, live.admin_key)
    page.wait_for_function("document.querySelectorAll('#dots circle').length === 6")
    shot = tmp_path / "dronewatch-web.png"
    png = page.screenshot(path=str(shot))
    width, height, colours = _png_size_and_colours(png)
    assert (width, height) == (1280, 800) and colours > 30
