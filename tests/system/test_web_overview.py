"""The web page's device cards, timeline, filters and drawer, and a `dronewatch report` file, in a
real headless Chromium (Debian's) against a real service on loopback, under the service's CSP.

Waits use locators and `expect` (Playwright's own injected script): a string predicate would be
an eval, which the page's Content-Security-Policy refuses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from dronewatch.api.store import AlertFilter
from dronewatch.cli.app import main
from tests.live import LiveService
from tests.pcaps import PCAPS

SCENARIOS = PCAPS / "scenarios"
playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect


@pytest.fixture
def live(live_dji: LiveService) -> LiveService:
    return live_dji


def open_page(browser: Any, width: int, height: int = 900) -> tuple[Any, Any, dict[str, list[str]]]:
    """A page in a fresh context, with what it asked for and what it logged."""
    context = browser.new_context(
        viewport={"width": width, "height": height}, accept_downloads=True
    )
    page = context.new_page()
    seen: dict[str, list[str]] = {"hosts": [], "console": []}
    page.on("request", lambda r: seen["hosts"].append(urlparse(r.url).netloc))
    page.on("console", lambda m: seen["console"].append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: seen["console"].append(f"pageerror: {e}"))
    return context, page, seen


def sign_in(page: Any, live: LiveService, query: str = "") -> None:
    page.goto(live.url + "/" + query)
    page.fill("#key", live.admin_key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#devices li.card")).to_have_count(2)
    expect(page.locator("#alerts tbody tr")).to_have_count(6)


def csp_violations(seen: dict[str, list[str]]) -> list[str]:
    return [m for m in seen["console"] if "Content Security Policy" in m or "pageerror" in m]


def test_page_answers_per_device_and_fits_1280(
    browser: Any, live: LiveService, artefacts: Path
) -> None:
    """At 1280 px the page answers its headline, shows a card per device with its verdict,
    LDM state and who set it, draws the timeline, fits without sideways scrolling, asks
    nothing of another host and breaks no rule of the CSP (screenshot: page-1280.png)."""
    context, page, seen = open_page(browser, 1280)
    sign_in(page, live)
    expect(page.locator("#answer")).to_contain_text("Yes: 1 of 2 ground stations")
    phone = page.locator("#devices li.card", has_text="10.77.0.2")
    expect(phone).to_have_attribute("data-verdict", "violation")
    expect(phone.locator(".badge")).to_have_text("Violation")
    expect(phone).to_contain_text("On from the start (set by test-replay)")
    expect(phone).to_contain_text("www.skypixel.com")
    link = page.locator("#devices li.card", has_text="192.168.2.20")
    expect(link).to_have_attribute("data-verdict", "clean")
    expect(page.locator("#chart .uplot canvas").first).to_be_visible()
    expect(page.locator("#chart")).to_have_attribute(
        "aria-label",
        "Bytes leaving per category: media_sync 2.0 MB, livestream 53.0 KB, "
        "maps 3.5 KB, account 1.5 KB, geofence 1.4 KB, analytics 773 B.",
    )
    expect(page.locator("#status")).to_have_text("Live (server-sent events)")
    width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1] == 1280
    page.screenshot(path=str(artefacts / "page-1280.png"), full_page=True)
    assert set(seen["hosts"]) == {urlparse(live.url).netloc}
    assert csp_violations(seen) == []
    context.close()


def test_phone_width_shows_cards_not_a_cut_table(
    browser: Any, live: LiveService, artefacts: Path
) -> None:
    """At 390 px the device cards and every alert field are visible: each alert is a card of
    labelled lines, and nothing scrolls sideways (screenshot: page-390.png)."""
    context, page, seen = open_page(browser, 390, 844)
    sign_in(page, live)
    for card in page.locator("#devices li.card").all():
        expect(card).to_be_visible()
        box = card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
    row = page.locator("#alerts tbody tr", has_text="www.skypixel.com")
    assert row.evaluate("r => getComputedStyle(r).display") == "block"
    for label in ("Severity", "Device", "Destination", "Bytes out", "Status"):
        cell = row.locator(f'td[data-label="{label}"]')
        expect(cell).to_be_visible()
        box = cell.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 390
    width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1] == 390
    page.screenshot(path=str(artefacts / "page-390.png"), full_page=True)
    assert csp_violations(seen) == []
    context.close()


def test_filters_round_trip_through_the_url(browser: Any, live: LiveService) -> None:
    """Choosing filters puts them in the URL; opening that URL elsewhere gives the same view."""
    context, page, _ = open_page(browser, 1280)
    sign_in(page, live)
    page.select_option("#f-severity", "high")
    expect(page.locator("#alerts tbody tr")).to_have_count(2)
    page.select_option("#f-device", "10.77.0.2")
    page.select_option("#f-status", "open")
    expect(page.locator("#alerts tbody tr")).to_have_count(2)
    query = parse_qs(urlparse(page.url).query)
    assert query == {"severity": ["high"], "device": ["10.77.0.2"], "status": ["open"]}
    shared = page.url
    context.close()

    context, page, _ = open_page(browser, 1280)
    page.goto(shared)
    page.fill("#key", live.admin_key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#alerts tbody tr")).to_have_count(2)
    expect(page.locator("#f-severity")).to_have_value("high")
    expect(page.locator("#f-device")).to_have_value("10.77.0.2")
    texts = " ".join(page.locator("#alerts tbody tr").all_inner_texts())
    assert "www.skypixel.com" in texts and "live.example-user-stream.net" in texts
    expect(page.locator("#timeline-scope")).to_have_text(": 10.77.0.2")
    page.select_option("#f-category", "maps")
    expect(page.locator("#no-alerts")).to_be_visible()  # maps is low, not high
    page.click("#f-clear")
    expect(page.locator("#alerts tbody tr")).to_have_count(6)
    assert urlparse(page.url).query == ""
    context.close()


def test_time_range_filter_narrows_cards_and_alerts(browser: Any, live: LiveService) -> None:
    """A time range before the capture, given in the URL, leaves no alert and no device traffic,
    and the cards say so."""
    context, page, _ = open_page(browser, 1280)
    page.goto(live.url + "/?start=1000&end=2000")
    page.fill("#key", live.admin_key)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#no-alerts")).to_be_visible()
    phone = page.locator("#devices li.card", has_text="10.77.0.2")
    expect(phone).to_contain_text("no capture covers this time")
    expect(page.locator("#zoom-reset")).to_be_visible()
    page.click("#zoom-reset")
    expect(page.locator("#alerts tbody tr")).to_have_count(6)
    context.close()


def test_drawer_shows_evidence_packets_pcap_and_ack(
    browser: Any, live: LiveService, tmp_path: Path
) -> None:
    """Opening an alert shows its evidence, flows and dissected packets, downloads its pcap;
    Acknowledge records the admin key's name and time; Escape closes and gives focus back."""
    context, page, seen = open_page(browser, 1280)
    sign_in(page, live)
    row = page.locator("#alerts tbody tr", has_text="www.skypixel.com")
    row.focus()
    page.keyboard.press("Enter")
    drawer = page.locator("#detail")
    expect(drawer).to_be_visible()
    expect(page.locator("#detail-fields")).to_contain_text("www.skypixel.com")
    expect(page.locator("#detail-flows")).to_contain_text("10.77.0.2:41836")
    expect(page.locator("#detail-packets details.frame").first).to_be_visible()
    with page.expect_download() as info:
        page.click("#pcap")
    saved = tmp_path / "alert.pcap"
    info.value.save_as(saved)
    assert saved.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    page.fill("#detail-comment", "looking at it")
    page.click("#ack")
    expect(page.locator("#detail-fields")).to_contain_text("acknowledged by test-admin at")
    expect(page.locator("#detail-fields")).to_contain_text("last comment: looking at it")
    expect(row.locator("td.c-status")).to_have_text("acknowledged")
    page.click("#reopen")
    expect(row.locator("td.c-status")).to_have_text("open")
    page.keyboard.press("Escape")
    expect(drawer).to_be_hidden()
    expect(page.locator("#alerts tbody tr", has_text="www.skypixel.com")).to_be_focused()
    stored = live.service.store.list_alerts(AlertFilter(), since=None, cursor=None, limit=100)
    alert = next(a for a in stored if a.get("dest_name") == "www.skypixel.com")
    assert alert["acked_by"] == "test-admin" and alert["status"] == "open"
    assert csp_violations(seen) == []
    context.close()


@pytest.mark.parametrize("mode", ["sse", "poll"])
def test_new_alert_arrives_live(browser: Any, live: LiveService, mode: str) -> None:
    """A new alert shows up without a reload, by server-sent events or, where the stream is
    not used, by polling; the device card follows."""
    context, page, _ = open_page(browser, 1280)
    sign_in(page, live, "?live=poll" if mode == "poll" else "")
    status = "server-sent events" if mode == "sse" else "polling every 2 s"
    expect(page.locator("#status")).to_contain_text(status)
    live.replay(SCENARIOS / "dji_fly_ldm_on_violation.pcap", ldm=True)
    expect(page.locator("#alerts tbody tr", has_text="mydjiflight.dji.com")).to_have_count(
        1, timeout=15_000
    )
    expect(page.locator("#alerts tbody tr")).to_have_count(7)
    phone = page.locator("#devices li.card", has_text="10.77.0.2")
    expect(phone).to_contain_text("7 open of 7", timeout=15_000)
    context.close()


CHART_WARM_PIXELS = """() => {
  const c = document.querySelector("#chart .uplot canvas");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let warm = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && d[i] - d[i + 2] > 60) warm++;
  return warm;
}"""
"""How many pixels of the report's chart are warm (red well above blue): a category's fill,
not the grid, the text or the local-data-mode shade."""


def open_report(browser: Any, report: Path, width: int) -> tuple[Any, Any, list[str], list[str]]:
    """A report file opened with the network off, with what it asked for and what it logged."""
    context = browser.new_context(viewport={"width": width, "height": 900}, offline=True)
    page = context.new_page()
    requests: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
    page.goto(report.as_uri())
    return context, page, requests, console


def test_report_opens_offline_with_no_request(browser: Any, tmp_path: Path) -> None:
    """A report opens from a file with the network off, makes no request but for itself, draws
    its chart, breaks no rule of its own CSP, and shows the verdicts of its capture."""
    report = tmp_path / "report.html"
    capture = SCENARIOS / "dji_fly_ldm_on_violation.pcap"
    assert main(["report", "--no-progress", "--ldm", "on", "-o", str(report), str(capture)]) == 1
    context, page, requests, console = open_report(browser, report, 1280)
    expect(page.locator("#chart .uplot canvas").first).to_be_visible()
    phone = page.locator('article.card[data-device="10.77.0.2"]')
    expect(phone).to_have_attribute("data-verdict", "violation")
    expect(phone).to_contain_text("520,843 bytes")
    expect(page.locator('article.card[data-device="192.168.2.20"]')).to_have_attribute(
        "data-verdict", "clean"
    )
    expect(page.locator("#answer")).to_contain_text("Yes: 1 of 2")
    expect(page.locator("#evidence")).to_contain_text("mydjiflight.dji.com")
    assert page.locator("#timeline-view option").count() == 2  # all devices, and the phone
    # The chart draws the upload's bytes (telemetry, #E69F00 at 55 %: warm pixels): the capture
    # is six seconds, one bucket, which a stepped series drew as nothing on a range of years.
    warm = page.evaluate(CHART_WARM_PIXELS)
    assert warm > 10_000, warm
    expect(page.locator(".map circle").first).to_have_attribute("fill", "#E69F00")
    width = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert width[0] <= width[1]
    assert requests == [report.as_uri()]
    assert console == []
    context.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_report_of_every_bundled_scenario_matches_analyze(
    browser: Any, tmp_path: Path, artefacts: Path, width: int
) -> None:
    """A report of every bundled scenario, at 1280 and at 390 px: a card for every verdict
    `analyze --out` writes for the same captures, with the same verdict and bytes; the answer
    counts them; nothing scrolls sideways, nothing is requested, nothing is logged
    (screenshot: report-WIDTH.png)."""
    captures = sorted(str(p) for p in SCENARIOS.glob("*.pcap"))
    report, out = tmp_path / "report.html", tmp_path / "out"
    policy = ["--ldm", "on"]
    assert main(["report", "--no-progress", *policy, "-o", str(report), *captures]) == 1
    assert main(["analyze", "--no-progress", *policy, "--out", str(out), *captures]) == 1
    verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
    assert len(verdicts) >= len(captures)
    context, page, requests, console = open_report(browser, report, width)
    expect(page.locator("#chart .uplot canvas").first).to_be_visible()
    cards = page.locator("article.card[data-device]")
    expect(cards).to_have_count(len(verdicts))
    shown = sorted(
        (c.get_attribute("data-device"), c.get_attribute("data-verdict")) for c in cards.all()
    )
    assert shown == sorted((v["device_ip"], v["verdict"]) for v in verdicts)
    for v in verdicts:
        if v["bytes_out"]:
            card = page.locator(
                f'article.card[data-device="{v["device_ip"]}"][data-verdict="{v["verdict"]}"]',
                has_text=f"{v['bytes_out']:,} bytes",
            )
            expect(card.first).to_be_visible()
    violations = sum(v["verdict"] == "violation" for v in verdicts)
    expect(page.locator("#answer")).to_contain_text(f"Yes: {violations} of {len(verdicts)}")
    for card in cards.all()[:3]:
        box = card.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
    scroll = page.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert scroll[0] <= scroll[1] == width
    page.screenshot(path=str(artefacts / f"report-{width}.png"), full_page=True)
    assert requests == [report.as_uri()]
    assert console == []
    context.close()
