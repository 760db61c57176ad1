"""Fixtures of the system tests that drive the web page in a real headless Chromium."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.live import LiveService, run_service, sqlite_settings
from tests.pcaps import PCAPS, ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
"""Headless Chromium as root, making no connection of its own (this machine's network is closed:
without these flags it keeps trying Google's hosts)."""


@pytest.fixture(scope="session")
def artefacts() -> Path:
    """Where browser tests leave their screenshots for a person to look at:
    `$DRONEWATCH_ARTEFACTS`, else build/artefacts in the checkout (kept after the run)."""
    where = Path(os.environ.get("DRONEWATCH_ARTEFACTS") or ROOT / "build" / "artefacts")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium driven by Playwright; a missing one fails in CI, else skips."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") or os.environ.get("DRONEWATCH_REQUIRE_SERVERS"):
            pytest.fail("chromium is not installed (scripts/test installs it)")
        pytest.skip("chromium is not installed (Debian package chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def live_dji(tmp_path: Path) -> Iterator[LiveService]:
    """A service over HTTP holding the DJI Fly LDM-off session replayed with LDM on."""
    for service in run_service(sqlite_settings(tmp_path)):
        service.replay(PCAPS / "scenarios" / "dji_fly_ldm_off.pcap", ldm=True)
        yield service
