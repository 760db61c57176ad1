"""Where the test captures are, and the one way a test asks for one: a missing capture fails."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
THIRD_PARTY = PCAPS / "third_party"
GOLDEN = ROOT / "tests" / "golden"

CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".pcap.gz", ".pcapng.gz")


def shown(path: Path) -> str:
    """`path` relative to the checkout (as in failure messages), or as given outside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def capture(path: Path) -> Path:
    """`path` itself when the capture (or other test data file) is in the checkout; otherwise the
    test fails, naming the missing file. Never skip a test for a missing capture."""
    if not path.is_file():
        pytest.fail(
            f"{shown(path)} is missing: the captures under pcaps/ are part of the checkout "
            "(see pcaps/README.md)",
            pytrace=False,
        )
    return path


def all_captures(under: Path = PCAPS) -> list[Path]:
    """Every capture under `under` (pcaps/ by default), sorted; fails when there is none, so that
    a test parametrized over them cannot pass by having nothing to check."""
    found = sorted(p for p in under.rglob("*") if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES))
    if not found:
        pytest.fail(f"no capture under {shown(under)}: the captures are missing", pytrace=False)
    return found
